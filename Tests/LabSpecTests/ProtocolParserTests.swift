import Foundation
import LabCore
import LabSpec
import Testing

@Suite struct ProtocolParserTests {
    static let drivers: [String: DriverSpec] = {
        let reactor = try! DriverSpec.parse("""
            driver: thermo-reactor
            transport: modbus
            channels:
              setpoint:    { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
              temperature: { input: 0, type: float32, unit: degC }
            safe_state: { setpoint: 25 degC }
            """, path: "reactor.yaml")
        return ["thermo-reactor": reactor]
    }()

    static let valid = """
        serendip: 1
        name: heat
        instruments:
          reactor: thermo-reactor
        parameters:
          temperature: { type: real, unit: degC, range: [25, 120] }
        steps:
          - set: reactor.setpoint
            to: $temperature
          - measure: { channel: reactor.temperature, as: t, repeat: 2, every: 1 s }
        outputs:
          final: last(t)
        """

    @Test func compilesAValidProtocolIntoSteps() throws {
        let p = try ProtocolParser.parse(Self.valid, path: "p.yaml", drivers: Self.drivers)
        #expect(p.name == "heat")
        #expect(p.steps.count == 2)
        #expect(p.steps[1].location.line == 10)
        guard case .set(let ref, .parameter("temperature")) = p.steps[0].action else {
            Issue.record("first step should set the setpoint to $temperature"); return
        }
        #expect(ref == ChannelRef(instrument: "reactor", channel: "setpoint"))
    }

    /// Each case: a line to replace in the valid protocol, and the expected line, column and message.
    @Test(arguments: [
        ("  - set: reactor.setpoint", "  - set: reactor.setpiont", 8, 10, "unknown channel 'reactor.setpiont'"),
        ("    to: $temperature", "    to: $temprature", 9, 9, "unknown parameter '$temprature'"),
        ("    to: $temperature", "    to: 40 mL", 9, 9, "expected a temperature"),
        ("    to: $temperature", "    to: 200 degC", 9, 9, "outside the limits"),
        ("    to: $temperature", "    to: 3 +", 9, 12, "expected a number"),
        ("  final: last(t)", "  final: last(tt)", 12, 10, "'tt' is not measured"),
        ("  - measure: { channel: reactor.temperature, as: t, repeat: 2, every: 1 s }",
         "  - measure: { channel: reactor.temperature, as: t, repeat: 2, every: 1 degC }", 10, 71, "expected a time"),
        ("serendip: 1", "serendip: 2", 1, 11, "language version 2"),
        ("steps:", "stepz:", 7, 1, "unknown key 'stepz'"),
        ("  reactor: thermo-reactor", "  reactor: [thermo", 5, 11, "YAML syntax"),
        ("    to: $temperature", "    to: $temperature\n    on_pause: abort", 10, 15, "on_pause applies to a step marked 'repeatable: false'"),
        ("    to: $temperature", "    to: $temperature\n    repeatable: false\n    on_pause: later", 11, 15, "unknown on_pause 'later'"),
        ("    to: $temperature", "    to: $temperature\n    timeout: 5 degC", 10, 14, "expected a time"),
        ("    to: $temperature", "    to: $temperature\n    timeout: -5 s", 10, 14, "timeout must be longer than zero"),
        ("outputs:", "  - checkpoint: \"\"\noutputs:", 11, 17, "a checkpoint needs a name"),
        ("outputs:", "  - checkpoint: a\n  - checkpoint: a\noutputs:", 12, 17, "checkpoint 'a' is already at bad.yaml:11:17"),
        ("outputs:", "  - checkpoint: a\n    repeatable: false\noutputs:", 12, 17, "a checkpoint is where a paused run goes on from"),
    ])
    func reportsAMalformedProtocolAtItsLineAndColumn(original: String, replacement: String, line: Int, column: Int, message: String) {
        let text = Self.valid.replacingOccurrences(of: original, with: replacement)
        #expect(text != Self.valid)
        do {
            _ = try ProtocolParser.parse(text, path: "bad.yaml", drivers: Self.drivers)
            Issue.record("expected a validation error")
        } catch {
            let match = error.diagnostics.first { $0.message.contains(message) }
            #expect(match != nil, "diagnostics were: \(error.diagnostics)")
            #expect(match?.location == SourceLocation(file: "bad.yaml", line: line, column: column))
        }
    }

    @Test func aCheckpointInsideAParallelBranchIsRefusedBecauseNoRunCouldResumeFromIt() {
        let text = Self.valid.replacingOccurrences(of: "outputs:", with: """
              - parallel:
                  - [ { log: a }, { checkpoint: half } ]
                  - [ { log: b } ]
            outputs:
            """)
        #expect(throws: ValidationError.self) { try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers) }
        do { _ = try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers) } catch {
            #expect(error.diagnostics.map(\.message) == ["a checkpoint inside a parallel branch (p.yaml:12:23) cannot be resumed from"])
            #expect(error.diagnostics.first?.location.line == 12)
        }
    }

    @Test func aStepMarkedNotRepeatableCarriesWhatAPauseMustDo() throws {
        let text = Self.valid.replacingOccurrences(of: "    to: $temperature", with: "    to: $temperature\n    repeatable: false\n    on_pause: abort\n    timeout: 2 min")
        let step = try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers).steps[0]
        #expect(!step.repeatable)
        #expect(step.abortsOnPause)
        #expect(step.timeout != nil)
    }

    @Test func suggestsTheChannelThatWasMeant() {
        let text = Self.valid.replacingOccurrences(of: "reactor.setpoint", with: "reactor.setpiont")
        do {
            _ = try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers)
            Issue.record("expected a validation error")
        } catch {
            #expect(error.diagnostics.first?.hint == "did you mean 'setpoint'?")
            #expect(error.description.contains("    ^"))
        }
    }

    @Test func reportsEveryProblemAtOnce() {
        let text = Self.valid.replacingOccurrences(of: "$temperature", with: "$t2")
            .replacingOccurrences(of: "last(t)", with: "last(q)")
        do {
            _ = try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers)
            Issue.record("expected a validation error")
        } catch {
            #expect(error.diagnostics.count == 2)
        }
    }

    @Test func aMisspeltChannelInAWaitDoesNotHideOrInventOtherErrors() {
        let text = Self.valid.replacingOccurrences(of: "  - measure: { channel: reactor.temperature, as: t, repeat: 2, every: 1 s }",
            with: "  - wait_until: { channel: reactor.temprature, within: 0.5 degC, of: 3 mL, timeout: 1 min }\n  - measure: { channel: reactor.temperature, as: t }")
        do {
            _ = try ProtocolParser.parse(text, path: "p.yaml", drivers: Self.drivers)
            Issue.record("expected a validation error")
        } catch {
            #expect(error.diagnostics.map(\.message) == ["unknown channel 'reactor.temprature'"])
        }
    }

    @Test func refusesALiteralNaNInADriverFile() {
        #expect(throws: ValidationError.self) {
            try DriverSpec.parse("""
                driver: d
                transport: modbus
                channels:
                  sp: { holding: 1, type: float32, access: rw }
                safe_state: { sp: .nan }
                """, path: "d.yaml")
        }
    }
}
