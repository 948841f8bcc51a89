import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import LabTransport
import Logging
import Synchronization
import Testing

/// Pausing, resuming, rewinding and losing an instrument, on the toy lab over its real transports.
@Suite(.serialized) struct RunControlTests {
    static let header = """
        serendip: 1
        name: t
        instruments: { reactor: thermo-reactor, spectro: uv-vis, pump: syringe-pump }

        """

    struct Started {
        var fixture: LabFixture
        var control: RunControl
        var run: Task<RunResult, any Error>
        var events: [(kind: String, message: String)] { (try? fixture.database.events(run: 1)) ?? [] }
        func series(_ name: String) throws -> [Double] { try fixture.database.measurements(run: 1, series: name).map(\.value) }
    }

    func start(_ body: String, speed: Double = 60) throws -> Started {
        let fixture = try LabFixture(speed: speed)
        let definition = try ProtocolParser.parse(Self.header + body, path: "t.yaml", drivers: fixture.lab.drivers)
        let control = RunControl()
        var executor = fixture.executor(definition)
        executor.control = control
        let start = fixture.start(definition, [:])
        return Started(fixture: fixture, control: control, run: Task { try await executor.run(parameters: [:], start: start) })
    }

    @Test func anImmediatePauseRewindsToTheLastCheckpointAndTheStoredDataShowTheRepeatedSegment() async throws {
        let run = try start("""
            steps:
              - set: reactor.setpoint
                to: 40 degC
              - measure: { channel: reactor.temperature, as: before, repeat: 2 }
              - checkpoint: heated
              - repeat: 40
                steps:
                  - measure: { channel: reactor.temperature, as: t }
                  - hold: 1 s
            outputs:
              readings: count(t)
            """)
        defer { run.fixture.simulators.stop() }
        try await waitFor { try run.series("t").count >= 5 }
        try run.control.send(.pause(now: true, .requested(by: "the test")))
        try await waitFor { run.control.isParked }
        try await run.fixture.database.flush()
        let beforeResume = try run.series("t").count
        // Paused: every instrument in its safe state.
        #expect(try await run.fixture.instruments["reactor"]!.read("setpoint") == .real(25))
        #expect(run.events.filter { $0.kind == "safeState" && $0.message.hasSuffix("(paused)") }.count == run.fixture.instruments.count)
        try run.control.send(.resume(by: "the test"))
        let result = try await run.run.value
        #expect(result.outcome == .completed)
        // The rewound segment is stored twice over: what was read before the pause, then all 40 again.
        #expect(try run.series("t").count == beforeResume + 40)
        #expect(try run.series("before").count == 2)
        // The run's own outputs come from the repeated segment alone.
        #expect(result.outputs["readings"] == .quantity(Quantity(40)))
        let events = run.events
        #expect(events.contains { $0.kind == "command" && $0.message == "reactor.setpoint = 40.0 degC (restored on resume)" })
        #expect(events.contains { $0.kind == "transition" && $0.message.hasPrefix("running → paused(requested): paused by the test") })
        #expect(events.contains { $0.kind == "transition" && $0.message.hasPrefix("paused(requested) → running: resumed by the test") })
    }

    @Test func aDeferredPauseStopsAtTheNextCheckpointInsideALoopAndGoesOnFromThere() async throws {
        let run = try start("""
            steps:
              - repeat: 6
                steps:
                  - measure: { channel: reactor.temperature, as: t }
                  - hold: 20 s
                  - checkpoint: round
            """)
        defer { run.fixture.simulators.stop() }
        try await waitFor { try run.series("t").count >= 2 }
        try run.control.send(.pause(now: false, .requested(by: "the test")))
        try await waitFor { run.control.isParked }
        try await run.fixture.database.flush()
        let atPause = try run.series("t").count
        #expect(atPause < 6)
        #expect(run.events.last { $0.kind == "transition" }?.message.contains("paused at checkpoint 'round'") == true)
        try run.control.send(.resume(by: "the test"))
        #expect(try await run.run.value.outcome == .completed)
        // Nothing repeated: the loop went on with the iteration after the checkpoint.
        #expect(try run.series("t").count == 6)
    }

    @Test func anImmediatePauseAfterANonRepeatableStepWaitsForTheNextCheckpoint() async throws {
        let run = try start("""
            steps:
              - set: pump.dispense
                to: 2 mL
                repeatable: false
              - hold: 1 min
              - checkpoint: dispensed
              - hold: 2 min
            """)
        defer { run.fixture.simulators.stop() }
        try await waitFor { run.events.contains { $0.message == "pump.dispense = 2.0 mL" } }
        try run.control.send(.pause(now: true, .requested(by: "the test")))
        #expect(run.control.lifecycle.state.name == "pausing")
        try await waitFor { run.control.isParked }
        try await run.fixture.database.flush()
        #expect(run.events.contains { $0.kind == "checkpoint" && $0.message == "dispensed" })
        try run.control.send(.resume(by: "the test"))
        #expect(try await run.run.value.outcome == .completed)
        #expect(run.events.filter { $0.message.hasPrefix("pump.dispense") }.count == 1)
    }

    @Test func aNonRepeatableStepThatSaysAbortTurnsAPauseIntoAnAbortWithFinally() async throws {
        let run = try start("""
            steps:
              - set: pump.dispense
                to: 2 mL
                repeatable: false
                on_pause: abort
              - hold: 10 min
            finally:
              - log: cleaned up
            """)
        defer { run.fixture.simulators.stop() }
        try await waitFor { run.events.contains { $0.message == "pump.dispense = 2.0 mL" } }
        try run.control.send(.pause(now: true, .requested(by: "the test")))
        let result = try await run.run.value
        #expect(result.outcome == .aborted)
        #expect(run.events.contains { $0.kind == "log" && $0.message == "cleaned up" })
    }

    @Test func aLostInstrumentPausesTheRunAndSendsTheOthersToTheirSafeState() async throws {
        let run = try start("""
            steps:
              - set: spectro.lamp
                to: true
              - repeat: 100
                steps:
                  - measure: { channel: reactor.temperature, as: t }
                  - hold: 1 s
            finally:
              - log: finally ran
            """)
        defer { run.fixture.simulators.stop() }
        try await waitFor { try run.series("t").count >= 2 }
        run.fixture.simulators.modbus["reactor"]!.stop()
        try await waitFor { run.control.isParked }
        try await run.fixture.database.flush()
        #expect(run.control.lifecycle.state.name == "paused(instrument_lost)")
        #expect(try await run.fixture.instruments["spectro"]!.read("lamp") == .bool(false))
        let safe = run.events.filter { $0.kind == "safeState" }.map(\.message)
        #expect(safe.contains("spectro in safe state (paused)") && safe.contains("pump in safe state (paused)"))
        #expect(!safe.contains { $0.hasPrefix("reactor ") })
        // A person gives up on it: abort runs `finally` and the safe states.
        try run.control.send(.stop(.abort, by: "the test"))
        let result = try await run.run.value
        #expect(result.outcome == .aborted)
        #expect(run.events.contains { $0.message == "finally ran" })
    }

    /// An instrument that does something (once) while it is being sent to its safe state.
    final class DuringSafeState: Instrument {
        let wrapped: any Instrument
        let once: Mutex<(@Sendable () -> Void)?>
        init(wrapped: any Instrument, once: @escaping @Sendable () -> Void) { self.wrapped = wrapped; self.once = Mutex(once) }
        var identity: InstrumentIdentity { wrapped.identity }
        func channelInfo(_ channel: String) -> ChannelInfo? { wrapped.channelInfo(channel) }
        func read(_ channel: String) async throws -> Value { try await wrapped.read(channel) }
        func write(_ channel: String, _ value: Value) async throws { try await wrapped.write(channel, value) }
        func goToSafeState() async throws {
            once.withLock { action in defer { action = nil }; return action }?()
            try await wrapped.goToSafeState()
        }
    }

    @Test func aResumeThatComesWhileThePauseIsStillMakingTheLabSafeIsNotLost() async throws {
        let fixture = try LabFixture(speed: 60)
        defer { fixture.simulators.stop() }
        let definition = try ProtocolParser.parse(Self.header + """
            steps:
              - checkpoint: start
              - repeat: 20
                steps:
                  - measure: { channel: reactor.temperature, as: t }
                  - hold: 1 s
            """, path: "t.yaml", drivers: fixture.lab.drivers)
        let control = RunControl()
        var instruments = fixture.instruments
        instruments["pump"] = DuringSafeState(wrapped: fixture.instruments["pump"]!,
                                              once: { _ = try? control.send(.resume(by: "the test")) })
        var executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: fixture.clock,
                                        recorder: fixture.database, logger: Logger(label: "test"), control: control)
        executor.control = control
        let run = Task { try await executor.run(parameters: [:], start: fixture.start(definition, [:])) }
        try await waitFor { try fixture.database.measurements(run: 1, series: "t").count >= 2 }
        try control.send(.pause(now: true, .requested(by: "the test")))
        let result = try await run.value
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        #expect(try fixture.database.events(run: 1).contains { $0.message.hasPrefix("paused(requested) → running") })
    }

    @Test func aDeviceThatDoesNotHoldWhatWasWrittenPausesTheRunAsAReadBackFault() async throws {
        // A pump whose rate query reports 0 mL/min whatever was written: it ignores the command.
        let spec = try DriverSpec.parse("""
            driver: stubborn-pump
            transport: serial
            channels:
              rate: { query: "RATE?", write: "RATE {value}", unit: mL/min, limits: [0, 50], read_back: true }
            safe_state: { rate: 0 mL/min }
            """, path: "stubborn-pump.yaml")
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let pump = SerialInstrument(name: "pump", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        let definition = try ProtocolParser.parse("""
            serendip: 1
            name: stubborn
            instruments: { pump: stubborn-pump }
            steps:
              - set: pump.rate
                to: 5 mL/min
            """, path: "s.yaml", drivers: ["stubborn-pump": spec])
        let control = RunControl()
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let executor = ProtocolExecutor(definition: definition, instruments: ["pump": pump], clock: ScaledClock(rate: 1),
                                        recorder: database, logger: Logger(label: "test"), control: control)
        let start = RunStart(campaignID: nil, protocolName: "stubborn", protocolSource: definition.source, parameters: [],
                             chosenBy: "test", proposalID: nil, instruments: ["pump": pump.identity], operatorName: "tester",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: 0)
        let run = Task { try await executor.run(parameters: [:], start: start) }
        try await waitFor { control.isParked }
        #expect(control.lifecycle.state.name == "paused(read_back)")
        control.stop(.abort, by: "the test")
        #expect(try await run.value.outcome == .aborted)
    }

    @Test func aStepTimeoutFailsTheStepAtItsPlace() async throws {
        let run = try start("""
            steps:
              - hold: 1 h
                timeout: 1 min
            """, speed: 600)
        defer { run.fixture.simulators.stop() }
        let result = try await run.run.value
        #expect(result.outcome == .failed)
        #expect(result.error?.contains("t.yaml:5:5: the step took longer than its timeout of 60 s") == true)
    }
}
