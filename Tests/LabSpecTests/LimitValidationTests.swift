import LabCore
import LabSpec
import Testing

/// What validation refuses about a channel's limits and max_rate, each at its place in the file.
@Suite struct LimitValidationTests {
    static let driverText = """
        driver: thermo-reactor
        transport: modbus
        channels:
          setpoint: { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150], max_rate: 10 degC/min }
          jacket:   { holding: 102, type: float32, unit: degC, access: rw, limits: [0, 150] }
          temperature: { input: 0, type: float32, unit: degC }
        safe_state: { setpoint: 25 degC }
        """
    static let drivers = ["thermo-reactor": try! DriverSpec.parse(driverText, path: "reactor.yaml")]

    func diagnostics(_ steps: String, parameters: String = "") -> [String] {
        let text = """
            serendip: 1
            name: t
            instruments: { reactor: thermo-reactor }
            \(parameters)
            steps:
            \(steps)
            """
        do {
            _ = try ProtocolParser.parse(text, path: "t.yaml", drivers: Self.drivers)
            return []
        } catch {
            return error.diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
        }
    }

    @Test func maxRateIsReadPerSecondInTheChannelsUnit() throws {
        let rate = try #require(Self.drivers["thermo-reactor"]?.channel("setpoint")?.maxRate)
        #expect(abs(rate - 10.0 / 60) < 1e-15)
    }

    @Test func aMaxRateInAnotherUnitIsRefusedAtItsPlace() {
        do {
            _ = try DriverSpec.parse("""
                driver: d
                transport: modbus
                channels:
                  sp: { holding: 1, type: float32, unit: degC, access: rw, max_rate: 10 mL/min }
                """, path: "d.yaml")
            Issue.record("accepted a max_rate in mL/min on a degC channel")
        } catch {
            let d = error.diagnostics.first
            #expect(d?.location.line == 4 && d?.location.column == 70, "\(error.diagnostics)")
            #expect(d?.message.contains("not a rate of degC") == true)
            #expect(d?.hint?.contains("max_rate: 10 degC/min") == true)
        }
    }

    @Test func aSetOfARateLimitedChannelIsRefusedWithAHintToRamp() {
        let found = diagnostics("""
              - set: reactor.setpoint
                to: 30 degC
            """)
        #expect(found.count == 1 && found[0].contains("max_rate of 10 degC/min"), "\(found)")
    }

    @Test func aRampFasterThanTheMaxRateIsRefusedSayingTheMax() {
        let found = diagnostics("""
              - ramp: { channel: reactor.setpoint, to: 80 degC, rate: 0.5 degC/s }
            """)
        #expect(found == ["6:59: ramp rate '0.5 degC/s' is 30 degC/min, faster than the max_rate 10 degC/min of 'reactor.setpoint'"], "\(found)")
        #expect(diagnostics("  - ramp: { channel: reactor.setpoint, to: 80 degC, rate: 10 degC/min }").isEmpty)
        #expect(diagnostics("  - ramp: { channel: reactor.setpoint, to: 80 degC, rate: 600 K/h }").isEmpty)
    }

    @Test func aConstantOutsideTheLimitsIsAnErrorAtItsValue() {
        #expect(diagnostics("""
              - set: reactor.jacket
                to: 423.16 K
            """).count == 1)
        #expect(diagnostics("""
              - set: reactor.jacket
                to: 423.15 K
            """).isEmpty)
        #expect(diagnostics("""
              - set: reactor.jacket
                to: 151 degC
            """) == ["7:9: '151.0 degC' is outside the limits 0…150 degC of 'reactor.jacket'"])
    }

    @Test func aParameterWhoseRangeExceedsTheLimitsIsAnError() {
        let found = diagnostics("""
              - set: reactor.jacket
                to: $t
            """, parameters: "parameters: { t: { type: real, unit: degC, range: [0, 500] } }")
        #expect(found.count == 1 && found[0].hasPrefix("7:9: '$t' reaches 500 degC"), "\(found)")
    }

    /// The first diagnostic of a driver file with one channel, as "line:column: message".
    static func driverRefusal(_ channel: String) -> String? {
        let text = "driver: d\ntransport: modbus\nchannels:\n  x: \(channel)\n"
        do {
            _ = try DriverSpec.parse(text, path: "d.yaml")
            return nil
        } catch {
            return error.diagnostics.first.map { "\($0.location.line):\($0.location.column): \($0.message)" }
        }
    }

    @Test func aChannelRunningPastTheLastRegisterIsRefusedAtItsAddress() {
        // A float32 at 65535 needs 65536 too: it used to pass, then crash the process on its first write.
        #expect(Self.driverRefusal("{ holding: 65535, type: float32, unit: degC, access: rw }")
                == "4:8: 'x' at register 65535 takes 2 registers and runs past register 65535")
        #expect(Self.driverRefusal("{ input: 65533, type: float64, unit: degC }")
                == "4:8: 'x' at register 65533 takes 4 registers and runs past register 65535")
        #expect(Self.driverRefusal("{ holding: 65534, type: float32, unit: degC, access: rw }") == nil)
    }

    @Test func anInputRegisterOrDiscreteInputCannotBeDeclaredWritable() {
        #expect(Self.driverRefusal("{ input: 3, type: uint16, access: rw }") == "4:32: 'x' is an input register, which a device never lets anyone write")
        #expect(Self.driverRefusal("{ discrete: 3, access: w }") == "4:21: 'x' is a discrete input, which a device never lets anyone write")
        #expect(Self.driverRefusal("{ coil: 3, access: w }") == nil)
    }

    @Test func aChannelWithTwoRegistersIsRefusedNamingBoth() {
        #expect(Self.driverRefusal("{ coil: 1, holding: 2 }") == "4:8: channel 'x' has both 'holding' and 'coil': a channel is one register")
    }
}
