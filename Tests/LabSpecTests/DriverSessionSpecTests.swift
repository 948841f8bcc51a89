import LabCore
import LabSpec
import Testing

/// The driver file keys that describe a session with a real device: `init:`, `min_interval:`,
/// `errors:`, `scpi:` and `type: string`, each mistake shown at its file:line:column.
struct DriverSessionSpecTests {
    static func driver(_ transport: String, _ lines: String, channel: String? = nil) throws(ValidationError) -> DriverSpec {
        try DriverSpec.parse("""
            driver: d
            transport: \(transport)
            channels:
              x: \(channel ?? (transport == "serial" ? #"{ query: "X?", unit: degC }"# : "{ input: 0, unit: degC }"))
            \(lines)
            """, path: "d.yaml")
    }

    @Test func initStepsKeepTheirOrderAndTheirLines() throws {
        let serial = try Self.driver("serial", "init:\n  - REM\n  - { send: \"UNIT C\", expect: OK }")
        #expect(serial.initSteps.map(\.action) == [.command(send: "REM", expect: nil), .command(send: "UNIT C", expect: "OK")])
        #expect(serial.initSteps.map(\.description) == ["init step 1 'REM' (d.yaml:6:5)", "init step 2 'UNIT C' (d.yaml:7:5)"])
        let modbus = try Self.driver("modbus", "init: [{ holding: 300, value: -1 }, { coil: 2, value: true }]")
        #expect(modbus.initSteps.map(\.action) == [.holding(300, 0xFFFF), .coil(2, true)])
    }

    @Test func aSCPIDriverAsksStarIDNUnlessItSaysOtherwiseAndUsesERRByDefault() throws {
        let scpi = try Self.driver("serial", "scpi: true")
        #expect(scpi.scpi && scpi.identity == .command("*IDN?"))
        #expect(try Self.driver("serial", "scpi: true\nidentity: { query: \"ID?\" }").identity == .command("ID?"))
        #expect(scpi.errorReplies == .prefixes(["ERR"]))
        #expect(try Self.driver("serial", #"errors: { prefix: ["ERR", "?"] }"#).errorReplies == .prefixes(["ERR", "?"]))
        #expect(try Self.driver("serial", #"errors: { match: "^E[0-9]+" }"#).errorReplies == .pattern("^E[0-9]+"))
    }

    @Test func aStringChannelIsReadOnlyText() throws {
        let modbus = try Self.driver("modbus", "", channel: "{ holding: 10, type: string, count: 8, word_order: BADC }")
        #expect(modbus.channels["x"]?.isText == true && modbus.channels["x"]?.textRegisters == 8)
        let serial = try Self.driver("serial", "", channel: #"{ query: "SN?", type: string }"#)
        #expect(serial.channels["x"]?.isText == true)
    }

    @Test(arguments: [
        ("modbus", "init: [REM]", 5, 8, "a Modbus init step must be a mapping"),
        ("modbus", "init: [{ holding: 300 }]", 5, 8, "'value'"),
        ("modbus", "init: [{ holding: 300, value: 70000 }]", 5, 31, "value must be a whole number"),
        ("modbus", "init: [{ value: 1 }]", 5, 8, "needs 'holding' or 'coil'"),
        ("serial", "init: [{ sned: REM }]", 5, 10, "'sned'"),
        ("serial", "init: REM", 5, 7, "init must be a list of steps"),
        ("serial", "min_interval: fast", 5, 15, "min_interval must be a positive duration"),
        ("serial", "min_interval: -5 ms", 5, 15, "min_interval must be a positive duration"),
        ("modbus", #"errors: { prefix: ERR }"#, 5, 9, "errors: is for a serial driver"),
        ("serial", #"errors: { match: "E[0-9" }"#, 5, 18, "is not a regular expression"),
        ("serial", #"errors: { match: "E*" }"#, 5, 18, "matches an empty reply"),
        ("serial", #"errors: { prefix: [""] }"#, 5, 19, "an empty prefix"),
        ("serial", "errors: {}", 5, 9, "errors needs 'prefix' or 'match'"),
        ("modbus", "scpi: true", 5, 1, "scpi is for a serial driver"),
    ])
    func aWrongSessionKeyIsRefusedAtItsPlace(transport: String, lines: String, line: Int, column: Int, message: String) {
        Self.expectRefused(transport, lines, nil, at: line, column, message)
    }

    @Test(arguments: [
        ("modbus", "{ holding: 10, type: string }", 4, 6, "'count'"),
        ("modbus", "{ holding: 10, type: string, count: 8, access: rw }", 4, 53, "a string channel is read-only"),
        ("modbus", "{ coil: 1, type: string, count: 8 }", 4, 8, "a string is kept in holding or input registers"),
        ("serial", #"{ query: "SN?", write: "SN {value}", type: string }"#, 4, 22, "a string channel is read-only"),
        ("serial", #"{ query: "SN?", type: string, count: 4 }"#, 4, 36, "remove count"),
        ("modbus", "{ holding: 10, count: 4 }", 4, 21, "count is for a string channel"),
        ("modbus", #"{ query: "T?", unit: degC }"#, 4, 8, "a Modbus driver's channel is a register, not a command"),
        ("modbus-rtu", #"{ on: "RUN", off: "STOP", type: bool }"#, 4, 8, "a Modbus driver's channel is a register, not a command"),
        ("serial", "{ holding: 10, unit: degC }", 4, 8, "a serial driver's channel is a command, not a register"),
        ("serial", #"{ input: 3, query: "T?" }"#, 4, 8, "a serial driver's channel is a command, not a register"),
    ])
    func aWrongStringChannelIsRefusedAtItsPlace(transport: String, channel: String, line: Int, column: Int, message: String) {
        Self.expectRefused(transport, "", channel, at: line, column, message)
    }

    static func expectRefused(_ transport: String, _ lines: String, _ channel: String?, at line: Int, _ column: Int, _ message: String) {
        do {
            _ = try driver(transport, lines, channel: channel)
            Issue.record("accepted \(lines) \(channel ?? "")")
        } catch {
            let found = error.diagnostics.first { $0.message.contains(message) }
            #expect(!error.diagnostics.contains { $0.message.contains("unknown key") && !$0.message.contains(message) }, "one mistake, one message")
            #expect(found?.location.line == line && found?.location.column == column, "\(error.diagnostics.map { "\($0.location) \($0.message)" })")
        }
    }

    /// What a user trial found accepted and never workable: each refused at its place.
    @Test func emptyCommandsTerminatorsAndPrefixesAndAVeryLongPaceAreRefused() {
        let cases: [(String, String)] = [
            ("init: [\"\"]", "d.yaml:5:8: an init command is empty"),
            ("init: [{ send: \"\" }]", "d.yaml:5:10: an init command is empty"),
            ("init: [{ holding: 3, value: 1 }]", "'holding:' is a Modbus init step"),
            ("errors: { prefix: [] }", "d.yaml:5:19: prefix lists no error reply"),
            ("min_interval: 1000", "d.yaml:5:15: min_interval is at most 10 s"),
            ("serial: { terminator: \"\" }", "d.yaml:5:23: an empty terminator would never end a reply"),
        ]
        for (lines, expected) in cases {
            do throws(ValidationError) {
                _ = try DriverSessionSpecTests.driver("serial", lines)
                Issue.record("accepted: \(lines)")
            } catch {
                #expect(error.description.contains(expected), "\(lines): \(error.description)")
            }
        }
    }
}

/// A register map means the same over TCP and over RTU: the defaults do not depend on the wire.
struct ModbusRTUDefaultTests {
    @Test func anRTURegisterWithoutATypeIsOneUint16ReadAgainOnceLikeOverTCP() throws {
        for transport in ["modbus", "modbus-rtu"] {
            let spec = try DriverSessionSpecTests.driver(transport, "", channel: "{ holding: 10 }")
            #expect(spec.channels["x"]?.type == .uint16, "\(transport)")
            #expect(spec.channels["x"]?.retries == 1, "\(transport)")
        }
    }
}
