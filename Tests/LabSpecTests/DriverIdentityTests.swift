import LabCore
import LabSpec
import Testing

/// A driver file's `identity` key: a query on a serial line, ASCII holding registers on Modbus.
struct DriverIdentityTests {
    static func driver(_ transport: String, _ identity: String) throws(ValidationError) -> DriverSpec {
        try DriverSpec.parse("""
            driver: d
            transport: \(transport)
            channels:
              x: { \(transport == "modbus" ? "input: 0" : #"query: "X?""#), unit: degC }
            identity: \(identity)
            """, path: "d.yaml")
    }

    @Test func aSerialDriverAsksAQueryAndAModbusDriverReadsHoldingRegisters() throws {
        #expect(try Self.driver("serial", #"{ query: "*IDN?" }"#).identity == .command("*IDN?"))
        #expect(try Self.driver("modbus", "{ holding: 900, count: 20 }").identity == .holding(address: 900, count: 20))
    }

    @Test(arguments: [
        ("serial", "{ holding: 900, count: 20 }", 5, 13, "a serial driver's identity is a query"),
        ("modbus", #"{ query: "*IDN?" }"#, 5, 13, "a Modbus driver's identity is read from holding registers"),
        ("modbus", "{ holding: 900, count: 126 }", 5, 34, "count"),
        ("modbus", "{ holding: 65530, count: 8 }", 5, 29, "runs past register 65535"),
        ("modbus", "{ holding: 900 }", 5, 11, "'count'"),
        ("serial", "{ ask: x }", 5, 13, "'ask'"),
    ])
    func aWrongIdentityIsRefusedAtItsPlace(transport: String, identity: String, line: Int, column: Int, message: String) {
        do {
            _ = try Self.driver(transport, identity)
            Issue.record("accepted identity \(identity) on \(transport)")
        } catch {
            let d = error.diagnostics.first
            #expect(d?.location.line == line && d?.location.column == column, "\(error.diagnostics)")
            #expect(d?.message.contains(message) == true, "\(error.diagnostics)")
        }
    }
}
