import Foundation
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Synchronization
import Testing

/// A machine's port listing that a test changes, as plugging an adapter in elsewhere would; its
/// paths are real pseudo-terminals, so the serial I/O behind a USB binding runs for real.
final class PortListing: Sendable {
    private let ports = Mutex<[SerialPortInfo]>([])
    func set(_ list: [SerialPortInfo]) { ports.withLock { $0 = list } }
    var lister: SerialPortLister { { self.ports.withLock { $0 } } }

    static func adapter(_ serial: String, at path: String, vendor: String = "0403", product: String = "6001") -> SerialPortInfo {
        SerialPortInfo(path: path, description: "FT232R USB UART", transport: "usb", usbVendorID: vendor,
                       usbProductID: product, usbSerial: serial, manufacturer: "FTDI", product: "FT232R USB UART")
    }
}

/// A device that reports one fixed value on every channel.
struct FixedModel: DeviceModel {
    let value: Double
    func value(of channel: String) throws -> Double { value }
    func didWrite(_ channel: String, _ value: Double) {}
}

@Suite struct USBBindingTests {
    static let listing = [
        PortListing.adapter("FT4XYZ12", at: "/dev/ttyUSB1"),
        PortListing.adapter("A10K3PQR", at: "/dev/ttyUSB0"),
        SerialPortInfo(path: "/dev/ttyS0", transport: "native"),
    ]

    @Test func anAdapterIsFoundByItsSerialNumber() throws {
        #expect(try USBAdapter(serial: "FT4XYZ12").devicePath(in: Self.listing) == "/dev/ttyUSB1")
        #expect(try USBAdapter(serial: "FT4XYZ12", vendorID: "0x403", productID: "6001").devicePath(in: Self.listing) == "/dev/ttyUSB1")
    }

    @Test func aMissingAdapterIsALostInstrumentNamingTheSerialNumbersThatArePresent() {
        let error = #expect(throws: LabError.self) { try USBAdapter(serial: "FT9NOPE").devicePath(in: Self.listing) }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("FT9NOPE") == true)
        #expect(error?.message.contains("FT4XYZ12 at /dev/ttyUSB1, A10K3PQR at /dev/ttyUSB0") == true, "\(String(describing: error))")
        #expect(error?.message.contains("serendip ports") == true)
        // Another vendor's adapter of that serial number is not the one meant.
        #expect(throws: LabError.self) { try USBAdapter(serial: "FT4XYZ12", vendorID: "1a86").devicePath(in: Self.listing) }
    }

    @Test func twoAdaptersOfOneSerialNumberAreRefusedNamingBothPaths() throws {
        let twins = Self.listing + [PortListing.adapter("FT4XYZ12", at: "/dev/ttyUSB7", product: "6015")]
        let error = #expect(throws: LabError.self) { try USBAdapter(serial: "FT4XYZ12").devicePath(in: twins) }
        #expect(error?.code == .invalidFile)
        #expect(error?.message.contains("/dev/ttyUSB1, /dev/ttyUSB7") == true, "\(String(describing: error))")
        // The product id tells them apart.
        #expect(try USBAdapter(serial: "FT4XYZ12", productID: "6015").devicePath(in: twins) == "/dev/ttyUSB7")
    }

    /// The address examples of docs/drivers.md load, each to the connection it says.
    @Test func theDocumentedAddressesAreReadAsTheySay() throws {
        let block = try #require(try DocumentationTests.blocks("drivers.md", language: "yaml").first {
            $0.hasPrefix("instruments:") && $0.contains("modbus-tcp://")
        })
        let scratch = Scratch()
        for name in ["thermo-reactor", "syringe-pump", "uv-vis"] {
            scratch.write("\(name).yaml", try String(contentsOfFile: Repository.path("drivers/\(name).yaml"), encoding: .utf8))
        }
        scratch.write("pid-controller.yaml", ModbusRTULabTests.controller)
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", "lab: docs\n" + block))
        #expect(lab.instruments["reactor"]?.connection == .modbusTCP(host: "192.168.1.20", port: 502, unit: 1))
        #expect(lab.instruments["oven"]?.connection == .modbusRTU(ModbusRTUAddress(
            port: .usb(USBAdapter(serial: "FT4XYZ12")), line: .init(baud: 19200, parity: .even), unit: 3)))
        #expect(lab.instruments["pump"]?.connection == .serial(SerialAddress(
            port: .usb(USBAdapter(serial: "A10K3PQR")), line: .init(baud: 9600))))
        #expect(lab.instruments["spectro"]?.connection == .serial(SerialAddress(
            port: .path("/dev/ttyACM0"), line: .init(baud: 115200, flowControl: .rtscts))))
    }

    /// `serendip ports` prints, for each adapter, the binding a lab config takes for it.
    @Test(arguments: ["FT4XYZ12", "00012345", "A-B 7"])
    func theBindingThatPortsPrintsIsTheOneTheLabConfigReads(serial: String) throws {
        let snippet = try #require(PortListing.adapter(serial, at: "/dev/ttyUSB0").usbBinding)
        let scratch = Scratch()
        scratch.write("m.yaml", "driver: m\ntransport: serial\nchannels: { r: { query: \"R?\" } }\n")
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", "lab: l\ninstruments:\n  m: { driver: m.yaml, serial: { \(snippet) } }\n"))
        guard case .serial(let address)? = lab.instruments["m"]?.connection else { Issue.record("\(snippet)"); return }
        #expect(address.port == .usb(USBAdapter(serial: serial)), "\(snippet)")
    }

    /// The adapter is looked up when the line opens and again when it opens after a loss: a
    /// replugged adapter that came back under another name is found there.
    @Test func aSerialInstrumentBoundBySerialNumberFollowsItsAdapterToItsNewPath() async throws {
        let scratch = Scratch()
        let driver = """
            driver: meter
            transport: serial
            serial: { timeout: 10 s }
            channels:
              reading: { query: "R?" }
            """
        scratch.write("meter.yaml", driver)
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", """
            lab: bench
            instruments:
              meter: { driver: meter.yaml, serial: { usb: { serial: FT4XYZ12 }, baud: 19200 } }
            """))
        let spec = try DriverSpec.parse(driver, path: "meter.yaml")
        let first = try SerialSimulator(spec: spec, model: FixedModel(value: 1))
        let second = try SerialSimulator(spec: spec, model: FixedModel(value: 2))
        defer { first.stop(); second.stop() }
        let ports = PortListing()
        ports.set([PortListing.adapter("FT4XYZ12", at: first.path), PortListing.adapter("OTHER1", at: second.path)])

        let meter = try #require(try InstrumentConnector.connect(lab, ports: ports.lister)["meter"])
        #expect(meter.identity.address == "usb/FT4XYZ12")
        #expect(try await meter.read("reading") == .real(1))

        // Pulled out, and back in under the other name.
        first.unplug()
        ports.set([PortListing.adapter("FT4XYZ12", at: second.path)])
        #expect(try await meter.read("reading") == .real(2))

        // Gone from the listing: lost, with what is there instead.
        second.unplug()
        ports.set([PortListing.adapter("OTHER1", at: "/dev/ttyUSB4")])
        let error = await #expect(throws: LabError.self) { try await meter.read("reading") }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("no USB serial adapter FT4XYZ12 is plugged in; present: OTHER1 at /dev/ttyUSB4") == true,
                "\(String(describing: error))")
    }

    @Test func anRTUInstrumentBoundBySerialNumberFollowsItsAdapterToItsNewPath() async throws {
        let scratch = Scratch()
        let driver = """
            driver: pid
            transport: modbus-rtu
            serial: { baud: 19200, parity: E }
            timeout: 5 s
            channels:
              temperature: { input: 0, type: int16, unit: degC }
            """
        scratch.write("pid.yaml", driver)
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", """
            lab: bench
            instruments:
              pid: { driver: pid.yaml, modbus-rtu: "modbus-rtu://usb/FT4XYZ12?unit=1" }
            """))
        let spec = try DriverSpec.parse(driver, path: "pid.yaml")
        let first = try ModbusSimulator(spec: spec, model: FixedModel(value: 11))
        let second = try ModbusSimulator(spec: spec, model: FixedModel(value: 22))
        defer { first.stop(); second.stop() }
        let ports = PortListing()
        ports.set([PortListing.adapter("FT4XYZ12", at: try #require(first.rtuPath))])

        let pid = try #require(try InstrumentConnector.connect(lab, ports: ports.lister)["pid"])
        #expect(try await pid.read("temperature") == .real(11))

        first.stop()
        ports.set([PortListing.adapter("FT4XYZ12", at: try #require(second.rtuPath))])
        // The read that finds the line gone may fail as a lost instrument (reads are not repeated
        // unless the driver file says so); the next one opens the port under its new name.
        do {
            #expect(try await pid.read("temperature") == .real(22))
        } catch let error as LabError {
            #expect(error.code == .instrumentLost || error.code == .timeout, "\(error)")
            #expect(try await pid.read("temperature") == .real(22))
        }
    }
}
