import Foundation
import LabCore
import LabSpec
import Testing

/// Serial line settings in driver files and lab configs, USB serial-number bindings, and the one
/// address form (`scheme://where?key=value`) of every transport.
@Suite struct SerialAddressTests {
    static let meter = """
        driver: meter
        transport: serial
        serial: { baud: 4800, data_bits: 7, parity: E, stop_bits: 2, flow_control: xonxoff, terminator: "\\r\\n" }
        channels:
          reading: { query: "R?", unit: V }
        """

    static let controller = """
        driver: pid
        transport: modbus-rtu
        serial: { baud: 19200, parity: E }
        channels:
          temperature: { input: 0, type: int16, unit: degC }
        """

    static let reactor = """
        driver: reactor
        transport: modbus
        channels:
          temperature: { input: 0, type: float32, unit: degC }
        """

    /// A lab config of one instrument `a` on `driver`, connected as `connection` says.
    static func lab(_ driver: String, _ connection: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serial-address-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try driver.write(to: dir.appendingPathComponent("d.yaml"), atomically: true, encoding: .utf8)
        let lab = dir.appendingPathComponent("lab.yaml")
        try "lab: bench\ninstruments:\n  a: { driver: d.yaml, \(connection) }\n".write(to: lab, atomically: true, encoding: .utf8)
        return lab.path
    }

    static func connection(_ driver: String, _ connection: String) throws -> LabConfig.Connection? {
        try LabConfig.load(path: lab(driver, connection)).instruments["a"]?.connection
    }

    /// The first diagnostic of a lab config that does not load.
    static func refusal(_ driver: String, _ connection: String) throws -> Diagnostic? {
        let path = try lab(driver, connection)
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: path) }
        return error?.diagnostics.first
    }

    // MARK: line settings

    @Test func aDriverFileGivesEveryLineSetting() throws {
        let spec = try DriverSpec.parse(Self.meter, path: "meter.yaml")
        #expect(spec.serial.line == SerialLineSettings(baud: 4800, dataBits: 7, parity: .even, stopBits: 2, flowControl: .xonxoff))
        #expect(spec.serial.terminator == "\r\n")
    }

    @Test func aDriverFileWithoutLineSettingsIsEightNoneOneWithoutFlowControl() throws {
        let spec = try DriverSpec.parse("driver: m\ntransport: serial\nchannels: { r: { query: \"R?\" } }\n", path: "m.yaml")
        #expect(spec.serial.line == SerialLineSettings(baud: 9600, dataBits: 8, parity: .none, stopBits: 1, flowControl: .none))
    }

    @Test(arguments: [
        ("data_bits: 9", "data_bits 9 is not 5, 6, 7 or 8", 22),
        ("parity: M", "unknown parity 'M'", 19),
        ("stop_bits: 1.5", "stop_bits 1.5 is not 1 or 2", 22),
        ("flow_control: dtrdsr", "unknown flow_control 'dtrdsr'", 25),
    ])
    func aBadLineSettingInADriverFileIsRefusedAtItsValueWithTheChoices(setting: String, message: String, column: Int) throws {
        let text = "driver: m\ntransport: serial\nserial: { \(setting) }\nchannels: { r: { query: \"R?\" } }\n"
        let error = #expect(throws: ValidationError.self) { try DriverSpec.parse(text, path: "m.yaml") }
        let diagnostic = try #require(error?.diagnostics.first)
        #expect(diagnostic.message == message)
        #expect(diagnostic.hint?.isEmpty == false)
        #expect(diagnostic.location.line == 3)
        #expect(diagnostic.location.column == column)
    }

    @Test func anRTUDriverFileRefusesFlowControlAndOtherThanEightDataBits() throws {
        for setting in ["flow_control: rtscts", "data_bits: 7"] {
            let text = "driver: m\ntransport: modbus-rtu\nserial: { \(setting) }\nchannels: { t: { input: 0 } }\n"
            let error = #expect(throws: ValidationError.self) { try DriverSpec.parse(text, path: "m.yaml") }
            #expect(error?.diagnostics.first?.message.hasPrefix("a Modbus RTU line has") == true)
            #expect(error?.diagnostics.first?.location.line == 3)
        }
    }

    @Test func aLabConfigOverridesSomeLineSettingsAndKeepsTheDriverFilesOthers() throws {
        let connection = try Self.connection(Self.meter, "serial: { port: /dev/ttyUSB3, baud: 9600, flow_control: none }")
        #expect(connection == .serial(SerialAddress(port: .path("/dev/ttyUSB3"),
                                                   line: .init(baud: 9600, dataBits: 7, parity: .even, stopBits: 2, flowControl: .none))))
    }

    @Test func aBarePathStillConnectsAtTheDriverFilesSettings() throws {
        let connection = try Self.connection(Self.meter, "serial: /dev/ttyUSB0")
        #expect(connection == .serial(SerialAddress(port: .path("/dev/ttyUSB0"), line: try DriverSpec.parse(Self.meter, path: "m").serial.line)))
    }

    // MARK: USB serial numbers

    @Test func aSerialInstrumentIsBoundByItsAdaptersSerialNumber() throws {
        let mapping = try Self.connection(Self.meter, "serial: { usb: { serial: FT4XYZ12 }, baud: 9600 }")
        let address = try Self.connection(Self.meter, "serial: \"serial://usb/FT4XYZ12?baud=9600\"")
        guard case .serial(let serial)? = mapping else { Issue.record("not a serial connection: \(String(describing: mapping))"); return }
        #expect(serial.port == .usb(USBAdapter(serial: "FT4XYZ12")))
        #expect(serial.line.baud == 9600 && serial.line.dataBits == 7)
        #expect(address == mapping)
    }

    @Test func anRTUInstrumentIsBoundByItsAdaptersSerialNumberNarrowedByVendorAndProduct() throws {
        let mapping = try Self.connection(Self.controller, "modbus-rtu: { usb: { serial: FT4XYZ12, vendor: \"0403\", product: \"6001\" }, unit: 3 }")
        let address = try Self.connection(Self.controller, "modbus-rtu: \"modbus-rtu://usb/FT4XYZ12?unit=3&vendor=0403&product=6001\"")
        let adapter = USBAdapter(serial: "FT4XYZ12", vendorID: "0403", productID: "6001")
        #expect(mapping == .modbusRTU(ModbusRTUAddress(port: .usb(adapter), line: .init(baud: 19200, parity: .even), unit: 3)))
        #expect(address == mapping)
    }

    @Test func aUSBIdIsComparedInTheFormTheListingPrints() {
        #expect(USBAdapter(serial: "X", vendorID: "0x0403", productID: "6001").vendorID == "0403")
        #expect(USBAdapter.usbID("403") == "0403")
        #expect(USBAdapter.usbID("1A86") == "1a86")
        #expect(USBAdapter.usbID("12345") == nil)
        #expect(USBAdapter.usbID("xyz") == nil)
    }

    // MARK: the address form

    @Test func modbusTCPTakesTheAddressFormBesideItsMapping() throws {
        #expect(try Self.connection(Self.reactor, "modbus: \"modbus-tcp://10.0.0.7:1502?unit=4\"") == .modbusTCP(host: "10.0.0.7", port: 1502, unit: 4))
        #expect(try Self.connection(Self.reactor, "modbus: \"modbus-tcp://plc.lab\"") == .modbusTCP(host: "plc.lab", port: 502, unit: 1))
        #expect(try Self.connection(Self.reactor, "modbus: \"modbus-tcp://[::1]:5020\"") == .modbusTCP(host: "::1", port: 5020, unit: 1))
        #expect(try Self.connection(Self.reactor, "modbus: { host: 10.0.0.7, port: 502, unit: 2 }") == .modbusTCP(host: "10.0.0.7", port: 502, unit: 2))
    }

    @Test func aSerialAddressCarriesEveryLineSettingAsAQueryKey() throws {
        let connection = try Self.connection(Self.meter, "serial: \"serial:///dev/ttyACM0?baud=115200&data_bits=8&parity=N&stop_bits=1&flow_control=rtscts\"")
        #expect(connection == .serial(SerialAddress(port: .path("/dev/ttyACM0"),
                                                   line: .init(baud: 115200, dataBits: 8, parity: .none, stopBits: 1, flowControl: .rtscts))))
    }

    @Test func anIPv6HostIsReadFromBracketsAndPrintedInThem() throws {
        let connection = try Self.connection(Self.reactor, "modbus: \"modbus-tcp://[::1]:1502?unit=2\"")
        #expect(connection == .modbusTCP(host: "::1", port: 1502, unit: 2))
        #expect(connection?.address == "modbus-tcp://[::1]:1502?unit=2")
    }

    @Test func anAddressPrintsAsTheFormItIsReadFrom() throws {
        let serial = SerialAddress(port: .usb(USBAdapter(serial: "FT4XYZ12", vendorID: "0403")), line: .init(baud: 4800, dataBits: 7, parity: .odd))
        #expect(try Self.connection(Self.meter, "serial: \"\(serial)\"") == .serial(serial))
        let rtu = ModbusRTUAddress(port: .path("/dev/ttyUSB1"), line: .init(baud: 38400, parity: .odd, stopBits: 2), unit: 9)
        #expect(try Self.connection(Self.controller, "modbus-rtu: \"\(rtu)\"") == .modbusRTU(rtu))
    }

    @Test(arguments: [
        // (driver, connection, what the message says, where the column is)
        ("meter", "serial: \"serial:///dev/ttyACM0?speed=9600\"", "unknown setting 'speed'", 32),
        ("meter", "serial: \"serial://dev/ttyACM0\"", "names no port", 32),
        ("meter", "serial: \"modbus-rtu:///dev/ttyACM0\"", "not a serial:// one", 32),
        ("meter", "serial: ttyACM0", "is not a device path or an address", 32),
        ("meter", "serial: \"serial://usb/FT1?vendor=xyz\"", "USB vendor id 'xyz' is not four hex digits", 32),
        ("meter", "serial: { port: /dev/ttyUSB0, usb: { serial: FT1 } }", "has both 'port' and 'usb'", 54),
        ("meter", "serial: { baud: 9600 }", "missing 'port' or 'usb'", 32),
        ("meter", "serial: { usb: { serial: FT1, vendr: \"0403\" } }", "unknown key 'vendr'", 54),
        ("meter", "serial: { usb: { serial: FT1, product: \"60Z1\" } }", "USB product id '60Z1' is not four hex digits", 63),
        ("controller", "modbus-rtu: \"modbus-rtu://usb/FT1?unit=3&data_bits=7\"", "unknown setting 'data_bits'", 36),
        ("reactor", "modbus: \"modbus-tcp://10.0.0.7:99999\"", "port '99999'", 32),
        ("reactor", "modbus: \"modbus-tcp://10.0.0.7?slave=3\"", "unknown setting 'slave'", 32),
        ("reactor", "modbus: \"tcp://10.0.0.7\"", "not a modbus-tcp:// one", 32),
        ("reactor", "modbus: \"modbus-tcp://::1:502\"", "an IPv6 host without brackets; write it as modbus-tcp://[::1]:502", 32),
        ("reactor", "modbus: \"modbus-tcp://my host:502\"", "'my host' is not a host name or address", 32),
    ])
    func aBadAddressIsRefusedAtItsPlaceNamingTheAcceptedForm(driver: String, connection: String, message: String, column: Int) throws {
        let text = ["meter": Self.meter, "controller": Self.controller, "reactor": Self.reactor][driver]!
        let diagnostic = try #require(try Self.refusal(text, connection))
        #expect(diagnostic.message.contains(message), "\(diagnostic.message)")
        #expect(diagnostic.location.line == 3)
        #expect(diagnostic.location.column == column, "\(diagnostic)")
        if message.hasPrefix("unknown setting") {
            // The refusal lists the keys that are known.
            #expect(diagnostic.hint?.contains("baud") == true || diagnostic.message.contains("unit"), "\(diagnostic)")
        }
    }

    @Test func anInstrumentBothSimulatedAndAddressedIsRefusedRatherThanDrivenAtItsAddress() throws {
        for address in ["modbus: \"modbus-tcp://127.0.0.1:1\"", "modbus: { host: 10.0.0.5 }"] {
            let refusal = try #require(try Self.refusal(Self.reactor, "\(address), simulate: true"))
            #expect(refusal.message == "'a' has both 'simulate: true' and 'modbus:'", "\(refusal)")
            #expect(refusal.hint?.contains("remove 'modbus:' to simulate it") == true)
        }
        let serial = try #require(try Self.refusal(Self.meter, "simulate: true, serial: /dev/ttyUSB0"))
        #expect(serial.message == "'a' has both 'simulate: true' and 'serial:'")
        #expect(try Self.connection(Self.reactor, "simulate: true") == .simulated)
    }
}
