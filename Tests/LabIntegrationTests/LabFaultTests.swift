import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabScheduler
import LabStorage
import LabSpec
import Synchronization
import Testing

/// Faults in a lab the daemon serves, over the real transports: a Modbus reactor and a serial pump
/// that live outside the daemon (so that they can be unplugged), an interlock on the reactor.
@Suite(.serialized) struct LabFaultTests {
    /// A device whose read-only channels a test sets.
    final class Dials: DeviceModel {
        let values = Mutex<[String: Double]>(["temperature": 25])
        func set(_ channel: String, _ value: Double) { values.withLock { $0[channel] = value } }
        func value(of channel: String) throws -> Double { values.withLock { $0[channel] ?? 0 } }
        func didWrite(_ channel: String, _ value: Double) {}
    }

    /// The first time something happened, on the wire logs' clock.
    final class Moment: Sendable {
        private let time = Mutex<Double?>(nil)
        func mark() { time.withLock { $0 = $0 ?? WireLog.now() } }
        var value: Double? { time.withLock { $0 } }
    }

    struct Lab {
        let reactor: ModbusSimulator
        let pump: SerialSimulator
        let dials: Dials
        let daemon: Daemon

        func stop() async {
            await daemon.shutDown(by: "the test", checkpointWait: 0)
            reactor.stop()
            pump.stop()
        }

        /// Queues the watched protocol; returns its run number.
        func submit(_ text: String = LabFaultTests.watched) async throws -> Int64 {
            let definition = try ProtocolParser.parse(text, path: "watched.yaml", drivers: daemon.lab.drivers)
            let entry = try await daemon.scheduler.submit([Submission(protocolSource: definition.source, protocolName: definition.name,
                                                                      parameters: [:], owner: "tester")])
            return entry[0].id
        }

        func state(_ run: Int64) async throws -> QueueState? { try await daemon.scheduler.entry(run)?.state }

        /// When the run paused, on the wire logs' clock.
        func pauseTime(_ run: Int64) async throws -> Moment {
            let pausedAt = Moment()
            try await waitFor { await daemon.scheduler.runControl(run) != nil }
            await daemon.scheduler.runControl(run)!.onTransition { transition in
                if case .paused = transition.to { pausedAt.mark() }
            }
            return pausedAt
        }
    }

    /// Polls both instruments ten times a second, as a long measurement would (shared with `serendip bench`).
    static let watched = try! String(contentsOfFile: Repository.path("examples/fault-lab/watched.yaml"), encoding: .utf8)

    static func lab(interlocks: String = "", probeInterval: Double = 1, backoff: ClosedRange<Double> = 0.05...5) async throws -> Lab {
        let dials = Dials()
        let reactor = try ModbusSimulator(spec: DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml")), model: dials)
        let pump = try SerialSimulator(spec: DriverSpec.load(path: Repository.path("drivers/syringe-pump.yaml")), model: dials)
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
        let config = directory.appendingPathComponent("lab.yaml")
        try """
            lab: faults
            instruments:
              reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), modbus: { host: 127.0.0.1, port: \(reactor.port) } }
              pump: { driver: \(Repository.path("drivers/syringe-pump.yaml")), serial: \(pump.path) }
            \(interlocks)
            """.write(to: config, atomically: true, encoding: .utf8)
        var options = Daemon.Options(labPath: config.path, dataDirectory: directory.appendingPathComponent("data").path)
        options.probeInterval = probeInterval
        options.reconnectBackoff = backoff
        let daemon = try await Daemon(options)
        return Lab(reactor: reactor, pump: pump, dials: dials, daemon: daemon)
    }

    @Test func aClosedModbusConnectionPausesTheRunAndSendsThePumpToItsSafeStateAtOnce() async throws {
        let lab = try await Self.lab()
        let run = try await lab.submit()
        let pausedAt = try await lab.pauseTime(run)
        try await waitFor { lab.pump.wireLog.entries(for: "rate").contains { $0.value == 5 } }
        try await Task.sleep(for: .milliseconds(300))
        let unplugged = WireLog.now()
        lab.reactor.unplug()
        try await waitFor { pausedAt.value != nil }
        let paused = try #require(pausedAt.value)
        #expect(paused - unplugged < 1, "paused \(paused - unplugged) s after the cable was pulled")
        try await waitFor { lab.pump.wireLog.entries(for: "rate").contains { $0.value == 0 && $0.time > unplugged } }
        let safe = try #require(lab.pump.wireLog.entries(for: "rate").first { $0.value == 0 && $0.time > unplugged })
        // 0.3 ms median on an idle machine (make bench); a loaded test machine gets generous room.
        #expect(safe.time - paused < 0.5, "the pump was safe \(safe.time - paused) s after the pause")
        try await waitFor { try await lab.state(run) == .paused }
        let control = try #require(await lab.daemon.scheduler.runControl(run))
        #expect(control.lifecycle.state.name == "paused(instrument_lost)")
        // A latched alert; the reactor comes back, the alert clears, but the run waits for a person.
        try await waitFor { try await lab.daemon.database.alerts().first?.runIDs == [run] }
        let alert = try #require(try await lab.daemon.database.alerts().first)
        #expect(alert.kind == .instrumentLost && alert.subject == "reactor" && alert.runIDs == [run])
        lab.reactor.plugIn()
        try await waitFor(seconds: 30) { try await lab.daemon.database.alert(alert.id)?.isCleared == true }
        #expect(control.lifecycle.state.name == "paused(instrument_lost)")
        await #expect(throws: LabError.self) { try await lab.daemon.scheduler.control(run, .resume(by: "tester")) }
        _ = try await lab.daemon.acknowledgeAlert(alert.id, by: "tester")
        try await waitFor { (try? await lab.daemon.scheduler.control(run, .resume(by: "tester"))) != nil }
        try await waitFor { try await lab.state(run) == .running }
        // Resumed from its checkpoint: the setpoint and the rate written again.
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").filter { $0.value == 40 }.count >= 2 }
        await lab.stop()
    }

    @Test func aDeviceThatRestartsUnderARunPausesIt() async throws {
        let lab = try await Self.lab()
        let run = try await lab.submit()
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 40 } }
        // Away and back between two of the run's reads: it may have lost its setpoint.
        lab.reactor.unplug()
        lab.reactor.plugIn()
        try await waitFor { try await lab.state(run) == .paused }
        #expect(await lab.daemon.scheduler.runControl(run)?.lifecycle.state.name == "paused(instrument_lost)")
        await lab.stop()
    }

    @Test func anUnpluggedSerialAdapterPausesTheRunAndSendsTheReactorToItsSafeState() async throws {
        let lab = try await Self.lab()
        let run = try await lab.submit()
        let pausedAt = try await lab.pauseTime(run)
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 40 } }
        try await Task.sleep(for: .milliseconds(300))
        let unplugged = WireLog.now()
        lab.pump.unplug()
        try await waitFor { pausedAt.value != nil }
        let paused = try #require(pausedAt.value)
        #expect(paused - unplugged < 1, "paused \(paused - unplugged) s after the adapter was pulled")
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 25 && $0.time > unplugged } }
        let safe = try #require(lab.reactor.wireLog.entries(for: "setpoint").first { $0.value == 25 && $0.time > unplugged })
        #expect(safe.time - paused < 0.5, "the reactor was safe \(safe.time - paused) s after the pause")
        #expect(await lab.daemon.scheduler.runControl(run)?.lifecycle.state.name == "paused(instrument_lost)")
        // A cancel of a paused run aborts it, as it does a running one.
        _ = try await lab.daemon.scheduler.apply(.cancel, to: run, by: "tester")
        try await waitFor { try await lab.state(run) == .aborted }
        await lab.stop()
    }

    @Test func anInterlockPausesTheRunCommandsSafeStatesAndLatchesUntilAcknowledged() async throws {
        let lab = try await Self.lab(interlocks: """
            interlocks:
              reactor-hot: { channel: reactor.temperature, above: 100 degC, stops: [reactor, pump], every: 50 ms }
            """)
        // Asserted before anything starts: nothing starts.
        lab.dials.set("temperature", 150)
        try await waitFor { try await lab.daemon.database.alerts().contains { $0.subject == "reactor-hot" } }
        let run = try await lab.submit()
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await lab.state(run) == .queued, "an asserted interlock blocks a start")
        let note = try await lab.daemon.scheduler.entry(run)?.note ?? ""
        #expect(note.hasPrefix("waiting: pump is blocked, interlock reactor-hot holds"), "\(note)")
        // Cleared, but latched: still nothing starts until a person acknowledges.
        lab.dials.set("temperature", 25)
        let first = try #require(try await lab.daemon.database.alerts().first)
        try await waitFor { try await lab.daemon.database.alert(first.id)?.isCleared == true }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await lab.state(run) == .queued, "a latched alert blocks a start")
        _ = try await lab.daemon.acknowledgeAlert(first.id, by: "tester")
        try await waitFor { try await lab.state(run) == .running }
        try await waitFor { lab.pump.wireLog.entries(for: "rate").contains { $0.value == 5 } }

        // It fires while the run runs: the run pauses, its instruments go to their safe state.
        let fired = WireLog.now()
        lab.dials.set("temperature", 120)
        try await waitFor { try await lab.state(run) == .paused }
        let control = try #require(await lab.daemon.scheduler.runControl(run))
        #expect(control.lifecycle.state.name == "paused(interlock)")
        try await waitFor { lab.pump.wireLog.entries(for: "rate").contains { $0.value == 0 && $0.time > fired } }
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 25 && $0.time > fired } }
        try await waitFor { try await lab.daemon.database.alerts().first { $0.subject == "reactor-hot" }?.runIDs == [run] }
        let alert = try #require(try await lab.daemon.database.alerts().first { $0.subject == "reactor-hot" })
        // The condition clears; the latch holds: no resume, and no acknowledgement before it cleared.
        await #expect(throws: LabError.self) { try await lab.daemon.acknowledgeAlert(alert.id, by: "tester") }
        lab.dials.set("temperature", 30)
        try await waitFor { try await lab.daemon.database.alert(alert.id)?.isCleared == true }
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await lab.state(run) == .paused)
        do {
            _ = try await lab.daemon.scheduler.control(run, .resume(by: "tester"))
            Issue.record("a resume before the acknowledgement must be refused")
        } catch let error as LabError {
            #expect(error.message.contains("alert \(alert.id)") && error.message.contains("serendip ack \(alert.id)"), "\(error.message)")
        }
        // Only the acknowledgement lets it be resumed.
        _ = try await lab.daemon.acknowledgeAlert(alert.id, by: "tester")
        try await waitFor { (try? await lab.daemon.scheduler.control(run, .resume(by: "tester"))) != nil }
        try await waitFor { try await lab.state(run) == .running }
        await lab.stop()
    }

    /// SERENDIP_LOSS_CYCLES sets the number of cycles: 200 in `make test` (it keeps both cores busy,
    /// and the rest of the suite runs beside it), 1,000 in `make soak`. OpenFileTests does 200 per
    /// transport in `make test` (1,000 in `make soak`), with the instrument hub alone.
    @Test func theDaemonHoldsNoMoreDescriptorsAfterAThousandLossesAndReturnsThanAfterTheFirst() async throws {
        let cycles = ProcessInfo.processInfo.environment["SERENDIP_LOSS_CYCLES"].flatMap(Int.init) ?? 200
        let lab = try await Self.lab(probeInterval: 0.002, backoff: 0.001...0.004)
        let run = try await lab.submit()
        try await waitFor { lab.pump.wireLog.entries(for: "rate").contains { $0.value == 5 } }
        var terminals: Set<Int> = []
        var afterFirst = (sockets: 0, terminals: 0)
        for cycle in 1...cycles {
            lab.reactor.unplug()
            lab.pump.unplug()
            try await waitFor {
                let lost = try await lab.daemon.database.alerts().filter { $0.kind == .instrumentLost && !$0.isCleared }
                return Set(lost.map(\.subject)) == ["reactor", "pump"]
            }
            lab.reactor.plugIn()
            lab.pump.plugIn()
            terminals.formUnion(DeviceDescriptors.index(of: lab.pump.path).map { [$0] } ?? [])
            do {
                try await waitFor { try await lab.daemon.database.alerts().allSatisfy(\.isCleared) }
            } catch {
                // Say what was still lost, and whether the devices were there to be found.
                let open = try await lab.daemon.database.alerts().filter { !$0.isCleared }.map { "\($0.subject): \($0.message)" }
                Issue.record("cycle \(cycle): still lost \(open); pump at \(lab.pump.path) exists: \(FileManager.default.fileExists(atPath: lab.pump.path))")
                throw error
            }
            if cycle == 1 {
                #expect(await lab.daemon.scheduler.runControl(run)?.lifecycle.state.name == "paused(instrument_lost)")
                afterFirst = (DeviceDescriptors.sockets(port: lab.reactor.port), DeviceDescriptors.terminals(terminals))
            }
        }
        // The reactor: its listening socket, the daemon's connection and the device's end of it.
        #expect(afterFirst.sockets == 3)
        #expect(DeviceDescriptors.sockets(port: lab.reactor.port) == afterFirst.sockets)
        // The pump: the device's two ends and the daemon's line (other suites may be handed an index this
        // device gave back, so a few of theirs are allowed; a leak is one per cycle).
        #expect(DeviceDescriptors.terminals(terminals) - afterFirst.terminals < 30)
        await lab.stop()
    }

    @Test func anInterlockThatFiresDuringFinallyMakesTheLabSafeAndFinallyCannotUndoIt() async throws {
        let lab = try await Self.lab(interlocks: """
            interlocks:
              reactor-hot: { channel: reactor.temperature, above: 100 degC, stops: [reactor, pump], every: 50 ms }
            """)
        let run = try await lab.submit(Self.watched + """

            finally:
              - hold: 1 s
              - set: reactor.setpoint
                to: 90 degC
            """)
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 40 } }
        _ = try await lab.daemon.scheduler.control(run, .stop(.abort, by: "tester"))
        // While `finally` holds, the reactor overheats.
        let fired = WireLog.now()
        lab.dials.set("temperature", 150)
        try await waitFor { lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 25 && $0.time > fired } }
        try await waitFor { try await lab.state(run) == .aborted }
        #expect(!lab.reactor.wireLog.entries(for: "setpoint").contains { $0.value == 90 }, "finally wrote to a held instrument")
        let events = try lab.daemon.database.events(run: run)
        #expect(events.contains { $0.kind == "fault" && $0.message.contains("reactor.setpoint = 90.0 degC not sent") })
        await lab.stop()
    }

    @Test func aResumeRefusalSaysEverythingThatStandsInTheWay() async throws {
        let lab = try await Self.lab()
        let run = try await lab.submit("""
            serendip: 1
            name: dosed
            instruments: { reactor: thermo-reactor, pump: syringe-pump }
            steps:
              - set: pump.dispense
                to: 1 mL
                repeatable: false
              - repeat: 10000
                steps:
                  - measure: { channel: reactor.temperature, as: t }
                  - hold: 0.1 s
            """)
        try await waitFor { lab.pump.wireLog.entries(for: "dispense").count == 1 }
        lab.reactor.unplug()
        try await waitFor { try await lab.state(run) == .paused }
        try await waitFor { !(try await lab.daemon.database.alerts().isEmpty) }
        do {
            _ = try await lab.daemon.scheduler.control(run, .resume(by: "tester"))
            Issue.record("a resume with the reactor lost must be refused")
        } catch let error as LabError {
            #expect(error.message.contains("reactor: lost") && error.message.contains("--repeat-step"), "\(error.message)")
        }
        await lab.stop()
    }
}
