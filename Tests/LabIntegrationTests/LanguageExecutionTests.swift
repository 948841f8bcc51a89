import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Testing

/// The protocol language's steps, run over the real simulated lab (Modbus socket and pty).
@Suite(.serialized) struct LanguageExecutionTests {
    static let header = """
        serendip: 1
        name: t
        instruments: { reactor: thermo-reactor, spectro: uv-vis }

        """

    func run(_ body: String, parameters: [String: ExprValue] = [:]) async throws -> (RunResult, LabFixture) {
        let (result, fixture, _) = try await timedRun(body, parameters: parameters)
        return (result, fixture)
    }

    /// Also returns the simulated seconds the run took.
    func timedRun(speed: Double = 3000, _ body: String, parameters: [String: ExprValue] = [:]) async throws
        -> (RunResult, LabFixture, Double) {
        let fixture = try LabFixture(speed: speed)
        let definition = try ProtocolParser.parse(Self.header + body, path: "t.yaml", drivers: fixture.lab.drivers)
        let started = fixture.clock.now
        let result = try await fixture.executor(definition).run(parameters: parameters, start: fixture.start(definition, parameters))
        return (result, fixture, fixture.clock.now - started)
    }

    @Test func forEachSetsEveryValueAndMeasuresEachTime() async throws {
        let (result, fixture) = try await run("""
            steps:
              - for_each: [30 degC, 40 degC, 50 degC]
                as: t
                steps:
                  - set: reactor.setpoint
                    to: $t
                  - measure: { channel: reactor.setpoint, as: sp }
            outputs:
              n: count(sp)
              top: max(sp)
            """)
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        #expect(result.outputs["n"] == .quantity(Quantity(3)))
        #expect(try fixture.database.measurements(run: result.runID, series: "sp").map(\.value) == [30, 40, 50])
    }

    @Test func rampsASetpointInStepsAtTheGivenRate() async throws {
        let (result, fixture) = try await run("""
            steps:
              - set: reactor.setpoint
                to: 25 degC
              - ramp: { channel: reactor.setpoint, to: 35 degC, rate: 2 degC/min, every: 1 min }
            """)
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        let commands = try fixture.database.events(run: result.runID).filter { $0.kind == "command" && $0.message.hasPrefix("reactor.setpoint") }
        #expect(commands.map(\.message) == ["reactor.setpoint = 25.0 degC"] + [27, 29, 31, 33, 35].map { "reactor.setpoint = \(Double($0)) degC" })
    }

    @Test func measureUntilStopsAsSoonAsTheConditionHolds() async throws {
        let (result, fixture) = try await run("""
            steps:
              - set: reactor.setpoint
                to: 80 degC
              - measure: { channel: reactor.temperature, as: t, repeat: 500, every: 10 s, until: last(t) > 50 degC }
            outputs:
              n: count(t)
              final: last(t)
            """)
        defer { fixture.simulators.stop() }
        guard case .quantity(let n)? = result.outputs["n"], case .quantity(let final)? = result.outputs["final"] else {
            Issue.record("missing outputs: \(result.error ?? "")"); return
        }
        // Stopped at the first reading above 50 °C: every earlier one was at or below it. (How many
        // readings that takes depends on how fast the simulated reactor heats under load.)
        let readings = try fixture.database.measurements(run: result.runID, series: "t").map(\.value)
        #expect(n.value < 500 && readings.count == Int(n.value))
        #expect(final.value > 50 && readings.last == final.value)
        #expect(readings.dropLast().allSatisfy { $0 <= 50 })
    }

    @Test func aWaitThatTimesOutCanContinue() async throws {
        let (result, fixture) = try await run("""
            steps:
              - wait_until: { channel: reactor.temperature, of: 140 degC, within: 0.1 degC, timeout: 30 s, poll: 10 s, on_timeout: continue }
              - log: after the wait
            """)
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .completed)
        let events = try fixture.database.events(run: result.runID)
        #expect(events.contains { $0.kind == "fault" && $0.message.contains("continuing") })
        #expect(events.contains { $0.kind == "log" && $0.message == "after the wait" })
    }

    @Test func aWaitThatTimesOutSaysItsNumbersWithUnitsToFourDigits() async throws {
        let (result, fixture) = try await run("""
            steps:
              - wait_until: { channel: reactor.temperature, of: 140 degC, within: 0.125 degC, timeout: 30 s, poll: 10 s }
            """)
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .failed)
        let error = try #require(result.error)
        let pattern = /reactor\.temperature did not come within 0\.125 degC of 140 degC in time \(last (\d+(?:\.\d+)?) degC\)/
        let last = try #require(error.firstMatch(of: pattern), "\(error)").1
        #expect(last.filter(\.isNumber).count <= 4, "\(error)")
    }

    @Test func parallelBranchesRunAtTheSameTime() async throws {
        let (result, fixture, elapsed) = try await timedRun(speed: 600, """
            steps:
              - parallel:
                  - - set: reactor.setpoint
                      to: 60 degC
                    - hold: 10 min
                  - - set: spectro.lamp
                      to: true
                    - hold: 10 min
                    - measure: { channel: spectro.lamp, as: lamp }
            outputs:
              lamp_on: last(lamp)
            """)
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        #expect(result.outputs["lamp_on"] == .quantity(Quantity(1)))
        // The two 10-minute holds overlap: one after the other they would take 20 simulated minutes.
        // (At 600× a busy machine's delays of up to 0.9 s still fit.)
        #expect(elapsed >= 600 && elapsed < 19 * 60, "took \(elapsed) simulated seconds")
        #expect(try await fixture.instruments["reactor"]!.read("setpoint") == .real(25))
    }

    @Test func branchesOnAChoiceParameterAndRepeatsWithACounter() async throws {
        let (result, fixture) = try await run("""
            parameters:
              catalyst: { type: choice, values: [Pd1, Ni1], default: Pd1 }
              cycles: { type: integer, range: [1, 5], default: 2 }
            steps:
              - if: $catalyst == "Ni1"
                then:
                  - log: nickel
                else:
                  - repeat: 3
                    as: i
                    steps:
                      - annotate: { cycle: started }
                      - set: reactor.setpoint
                        to: 20 degC + $i * 10 degC
            """, parameters: ["catalyst": .text("Pd1")])
        defer { fixture.simulators.stop() }
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        let events = try fixture.database.events(run: result.runID)
        #expect(events.filter { $0.kind == "annotation" }.count == 3)
        #expect(events.contains { $0.message == "reactor.setpoint = 50.0 degC" })
        #expect(!events.contains { $0.message == "nickel" })
        // Provenance holds the given value and the default that was applied.
        let stored = try fixture.database.parameters(run: result.runID)
        #expect(stored["catalyst"] == .text("Pd1"))
        #expect(stored["cycles"] == .quantity(Quantity(2)))
    }

    @Test func anIncludedSubProtocolRunsWithItsBoundParameters() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-include-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try """
            serendip: 1
            name: heat-to
            instruments: { reactor: thermo-reactor }
            parameters:
              target: { type: real, unit: degC, range: [20, 100] }
            steps:
              - set: reactor.setpoint
                to: $target
              - measure: { channel: reactor.setpoint, as: sp }
            """.write(to: dir.appendingPathComponent("heat-to.yaml"), atomically: true, encoding: .utf8)
        let main = dir.appendingPathComponent("main.yaml").path
        try (Self.header + """
            parameters:
              t: { type: real, unit: degC, range: [20, 60], default: 40 degC }
            steps:
              - include: heat-to.yaml
                with: { target: $t + 5 degC }
            outputs:
              reached: last(sp)
            """).write(toFile: main, atomically: true, encoding: .utf8)
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        let definition = try ProtocolParser.load(path: main, drivers: fixture.lab.drivers)
        #expect(definition.includes.map(\.path).first?.hasSuffix("heat-to.yaml") == true)
        let result = try await fixture.executor(definition).run(parameters: [:], start: fixture.start(definition, [:]))
        #expect(result.outputs["reached"] == .quantity(Quantity(45, LabUnit.named("degC")!)), "\(result.error ?? "")")
    }
}
