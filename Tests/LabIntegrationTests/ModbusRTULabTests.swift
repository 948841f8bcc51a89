import Foundation
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Testing

/// RTU drivers in a lab config, data types and scaling, end to end through the simulators.
@Suite struct ModbusRTULabTests {
    static let controller = """
        driver: pid-controller
        vendor: Serendip example instruments
        transport: modbus-rtu
        serial: { baud: 19200, parity: E }
        timeout: 500 ms
        byte_timeout: 50 ms
        channels:
          setpoint:    { holding: 10, type: int16, scale: 0.1, unit: degC, access: rw, limits: [-50, 300] }
          temperature: { input: 0, type: int16, scale: 0.1, unit: degC }
          flow:        { holding: 20, type: uint32, word_order: CDAB, scale: 0.001, offset: -5, unit: mL/min, access: rw, limits: [-5, 1000] }
          total:       { input: 4, type: float64, word_order: DCBA, unit: mL }
          running:     { coil: 1, access: rw }
        safe_state: { setpoint: 20 degC, running: false }
        """

    @Test func aLabConfigTakesTheRTUPortAsAMappingOrAsAnAddress() throws {
        let scratch = Scratch()
        scratch.write("pid.yaml", Self.controller)
        let lab = scratch.write("lab.yaml", """
            lab: bench
            instruments:
              a: { driver: pid.yaml, modbus-rtu: { port: /dev/ttyUSB0, baud: 9600, parity: O, unit: 3 } }
              b: { driver: pid.yaml, modbus-rtu: "modbus-rtu:///dev/ttyUSB0?baud=9600&parity=O&unit=4" }
              c: { driver: pid.yaml, modbus-rtu: { port: /dev/ttyUSB1 } }
            """)
        let config = try LabConfig.load(path: lab)
        #expect(config.instruments["a"]?.connection == .modbusRTU(.init(port: .path("/dev/ttyUSB0"), line: .init(baud: 9600, parity: .init(rawValue: "O")!), unit: 3)))
        #expect(config.instruments["b"]?.connection == .modbusRTU(.init(port: .path("/dev/ttyUSB0"), line: .init(baud: 9600, parity: .init(rawValue: "O")!), unit: 4)))
        // What the lab config leaves out comes from the driver file's serial settings.
        #expect(config.instruments["c"]?.connection == .modbusRTU(.init(port: .path("/dev/ttyUSB1"), line: .init(baud: 19200, parity: .init(rawValue: "E")!), unit: 1)))
        #expect(config.instruments["a"]?.driver.byteTimeout == 0.05)
    }

    @Test(arguments: [
        ("\"modbus-rtu://dev/ttyUSB0\"", "names no port"),
        ("\"modbus-rtu:///dev/ttyUSB0?baud=12345\"", "baud 12345 is not a rate"),
        ("{ port: /dev/ttyUSB0, parity: X }", "unknown parity 'X'"),
        ("{ port: /dev/ttyUSB0, unit: 0 }", "unit must be 1 to 247"),
        ("\"modbus-rtu:///dev/ttyUSB0?speed=9600\"", "unknown setting 'speed'"),
    ])
    func aBadRTUAddressIsRefusedAtItsPlace(value: String, problem: String) throws {
        let scratch = Scratch()
        scratch.write("pid.yaml", Self.controller)
        let lab = scratch.write("lab.yaml", "lab: bench\ninstruments:\n  a: { driver: pid.yaml, modbus-rtu: \(value) }\n")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: lab) }
        #expect(error?.diagnostics.first?.message.contains(problem) == true, "\(String(describing: error?.diagnostics))")
        #expect(error?.diagnostics.first?.location.line == 3)
    }

    /// `simulate: true` serves an RTU driver on a pseudo-terminal, read and written in engineering
    /// units through the scaling, in every type the driver file names.
    @Test func aSimulatedRTUInstrumentIsReadAndWrittenInEngineeringUnits() async throws {
        let scratch = Scratch()
        scratch.write("pid.yaml", Self.controller)
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", "lab: bench\ninstruments:\n  pid: { driver: pid.yaml, simulate: true }\n"))
        let simulators = try SimulatedLab(config: lab, clock: ScaledClock())
        defer { simulators.stop() }
        let simulator = try #require(simulators.modbus["pid"])
        #expect(simulator.rtuPath != nil)
        let pid = try #require(try InstrumentConnector.connect(lab, simulators: simulators)["pid"])
        #expect(pid.identity.address.hasPrefix("modbus-rtu:///dev/pts/"))

        try await pid.write("setpoint", .real(87.3))
        #expect(simulator.written["setpoint"] == [87.3])
        #expect(try await pid.read("setpoint") == .real(87.3))
        try await pid.write("flow", .real(12.345))
        #expect(try await pid.read("flow").asDouble.isApproximatelyEqual(12.345))
        try await pid.write("running", .bool(true))
        #expect(try await pid.read("running") == .bool(true))
        #expect(try await pid.read("temperature") == .real(0))
    }

    @Test func theWriteGuardJudgesLimitsInEngineeringUnitsAndTheRawValueAgainstTheRegister() throws {
        let spec = try DriverSpec.parse("""
            driver: scaled
            transport: modbus
            channels:
              wide:   { holding: 0, type: int16, scale: 0.01, unit: degC, access: rw, limits: [-300, 300] }
              open:   { holding: 3, type: int16, scale: 0.01, unit: degC, access: rw }
              narrow: { holding: 1, type: uint16, scale: 0.1, offset: -100, unit: degC, access: rw, limits: [-100, 50.05] }
              big:    { holding: 2, type: uint32, access: rw }
            """, path: "scaled.yaml")
        func check(_ channel: String, _ x: Double) throws -> Value {
            try WriteGuard.check(.real(x), for: spec.channel(channel)!, instrument: "oven")
        }
        // Without limits, 400 degC is 40000 counts: more than an int16 holds.
        let tooBig = #expect(throws: LabError.self) { try check("open", 400) }
        #expect(tooBig?.code == .outOfLimits)
        #expect(tooBig?.message.contains("does not fit oven.open: its int16 register holds -32768…32767 (400.0 degC is 40000 counts at scale 0.01, offset 0)") == true)
        #expect(try check("open", 327.67) == .real(327.67))
        #expect(#expect(throws: LabError.self) { try check("wide", 300.5) }?.message.contains("outside -300.0…300.0") == true)
        // 50.05 degC is 1500.5 counts: the nearest count, 1501 (50.1 degC), is past the limit, so 1500 goes out.
        #expect(try check("narrow", 50.05).asDouble.isApproximatelyEqual(50))
        #expect(try check("narrow", -100) == .real(-100))
        #expect(try check("big", 4294967295) == .real(4294967295))
        #expect(throws: LabError.self) { try check("big", 4294967296) }
        #expect(throws: LabError.self) { try check("big", -1) }
    }

    /// Limits or a safe state the register cannot hold are refused when the file is read, not at
    /// the first write past them.
    @Test func limitsAndASafeStateBeyondTheRegisterAreRefusedWhenTheFileIsRead() throws {
        let error = #expect(throws: ValidationError.self) {
            try DriverSpec.parse("""
                driver: scaled
                transport: modbus
                channels:
                  wide: { holding: 0, type: int16, scale: 0.01, unit: degC, access: rw, limits: [-500, 500] }
                  heat: { holding: 1, type: int16, scale: 0.1, unit: degC, access: rw }
                safe_state: { heat: 3500 degC }
                """, path: "scaled.yaml")
        }
        let text = error?.description ?? ""
        #expect(text.contains("scaled.yaml:4:") && text.contains("the limit -500.0 degC of 'wide' does not fit its int16 register"), "\(text)")
        #expect(text.contains("scaled.yaml:6:") && text.contains("3500.0 degC does not fit the int16 register of 'heat'"), "\(text)")
    }

    @Test func scaleAndOffsetAreOnlyForNumericRegisters() throws {
        let error = #expect(throws: ValidationError.self) {
            try DriverSpec.parse("""
                driver: bad
                transport: modbus
                channels:
                  run: { coil: 0, scale: 2 }
                """, path: "bad.yaml")
        }
        #expect(error?.diagnostics.first?.message == "scale and offset are for a numeric register (holding or input)")
        #expect(error?.diagnostics.first?.location.line == 4)
    }
}

extension Double {
    func isApproximatelyEqual(_ other: Double) -> Bool { abs(self - other) <= 1e-9 * max(1, abs(other)) }
}
