import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Synchronization
import Testing

/// Writes files into a fresh directory, as a person would lay out a lab.
struct Scratch {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-drivers-\(UUID().uuidString)")

    init() { try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let path = directory.appendingPathComponent(name).path
        try! text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Records what a DeviceModel was told.
final class RecordingModel: DeviceModel {
    let writes = Mutex<[String]>([])
    func value(of channel: String) throws -> Double { 0 }
    func didWrite(_ channel: String, _ value: Double) { writes.withLock { $0.append("\(channel)=\(value)") } }
}

@Suite struct BooleanCommandTests {
    static let pump = """
        driver: dosing-pump
        transport: serial
        channels:
          run: { on: "RUN", off: "STOP", type: bool }
        safe_state: { run: false }
        """

    @Test func aBooleanWithOneFixedCommandIsRefusedWhereItsWriteIs() throws {
        let text = """
            driver: dosing-pump
            transport: serial
            channels:
              run: { write: "RUN", type: bool }
            """
        let error = #expect(throws: ValidationError.self) { try DriverSpec.parse(text, path: "pump.yaml") }
        let diagnostic = try #require(error?.diagnostics.first)
        #expect("\(diagnostic.location)" == "pump.yaml:4:17")
        #expect(diagnostic.message.contains("sends the same text whatever the value"))
        #expect(diagnostic.hint?.contains("on: \"RUN\"") == true)
    }

    @Test func onAndOffSendTheirOwnCommandOverARealSerialLine() async throws {
        let spec = try DriverSpec.parse(Self.pump, path: "pump.yaml")
        let heard = Mutex<[String]>([])
        let device = try LineServer { line in heard.withLock { $0.append(line) }; return "OK" }
        defer { device.stop() }
        let pump = SerialInstrument(name: "pump", spec: spec, line: SerialLine(path: device.path, timeout: 5))
        try await pump.write("run", .bool(true))
        try await pump.write("run", .bool(false))
        try await pump.goToSafeState()
        #expect(heard.withLock { $0 } == ["RUN", "STOP", "STOP"])
    }

    @Test func theSimulatorBuiltFromTheDriverFileUnderstandsOnAndOff() async throws {
        let spec = try DriverSpec.parse(Self.pump, path: "pump.yaml")
        let model = RecordingModel()
        let simulator = try SerialSimulator(spec: spec, model: model)
        defer { simulator.stop() }
        let pump = SerialInstrument(name: "pump", spec: spec, line: SerialLine(path: simulator.path, timeout: 5))
        try await pump.write("run", .bool(true))
        try await pump.write("run", .bool(false))
        #expect(model.writes.withLock { $0 } == ["run=1.0", "run=0.0"])
    }
}

@Suite struct BaudRateTests {
    static func driver(baud: some CustomStringConvertible) -> String {
        """
        driver: fast-meter
        transport: serial
        serial: { baud: \(baud) }
        channels:
          x: { query: "X?" }
        """
    }

    @Test func aRateTermiosCannotSetIsRefusedAtItsPosition() throws {
        let error = #expect(throws: ValidationError.self) { try DriverSpec.parse(Self.driver(baud: 14400), path: "meter.yaml") }
        let diagnostic = try #require(error?.diagnostics.first)
        #expect("\(diagnostic.location)" == "meter.yaml:3:17")
        #expect(diagnostic.message.contains("14400"))
        #expect(diagnostic.hint?.contains("115200, 230400, 460800") == true)
    }

    @Test(arguments: ["0", "-9600", "fast"])
    func aValueThatIsNoRateAtAllIsAnsweredWithTheSupportedRates(baud: String) throws {
        let error = #expect(throws: ValidationError.self) { try DriverSpec.parse(Self.driver(baud: baud), path: "meter.yaml") }
        let diagnostic = try #require(error?.diagnostics.first)
        #expect(diagnostic.message == "baud \(baud) is not a rate a serial line can be set to")
        #expect(diagnostic.hint?.contains("9600, 19200") == true)
        #expect(!diagnostic.message.contains("9223372036854775807"))
    }

    @Test(arguments: [230400, 460800, 921600, 19200])
    func theLineOpensAtTheRateTheDriverFileAsksFor(baud: Int) async throws {
        let spec = try DriverSpec.parse(Self.driver(baud: baud), path: "meter.yaml")
        let device = try LineServer { _ in "1.5" }
        defer { device.stop() }
        let line = SerialLine(path: device.path, baud: spec.serial.baud, timeout: 5)
        #expect(try await line.query("X?") == "1.5")
        // The speed is the tty's, whichever descriptor asks.
        var tio = termios()
        #expect(tcgetattr(device.terminal!.secondary, &tio) == 0)
        #expect(cfgetospeed(&tio) == SerialLine.speeds[baud])
        #expect(cfgetispeed(&tio) == SerialLine.speeds[baud])
    }

    @Test func everyRateADriverFileMayNameHasATermiosSpeed() {
        #expect(SerialSettings.supportedBauds.allSatisfy { SerialLine.speeds[$0] != nil })
        #expect(Set(SerialLine.speeds.keys) == Set(SerialSettings.supportedBauds))
    }
}

@Suite struct LabConfigConnectionTests {
    @Test func aModbusDriverOnASerialPortIsRefusedAtTheConnection() throws {
        let scratch = Scratch()
        let line = "  oven: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), serial: /dev/ttyUSB0 }"
        let lab = scratch.write("lab.yaml", "lab: bench\ninstruments:\n\(line)\n")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: lab) }
        let diagnostic = try #require(error?.diagnostics.first)
        let column = line.distance(from: line.startIndex, to: line.range(of: "serial:")!.lowerBound) + 1
        #expect("\(diagnostic.location)" == "\(lab):3:\(column)")
        #expect(diagnostic.message.contains("Modbus driver 'thermo-reactor'"))
        #expect(diagnostic.hint?.contains("modbus-rtu: { port: /dev/ttyUSB0") == true)
    }

    @Test func aSerialDriverOnModbusIsRefusedAtTheConnection() throws {
        let scratch = Scratch()
        let lab = scratch.write("lab.yaml", """
            lab: bench
            instruments:
              spectro:
                driver: \(Repository.path("drivers/uv-vis.yaml"))
                modbus: { host: 127.0.0.1, port: 502 }
            """)
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: lab) }
        let diagnostic = try #require(error?.diagnostics.first)
        #expect("\(diagnostic.location)" == "\(lab):5:5")
        #expect(diagnostic.hint?.contains("serial: /dev/ttyUSB0") == true)
    }
}

@Suite struct DriverErrorsInALabTests {
    static func lab(channel: String) -> (lab: String, driver: String) {
        let scratch = Scratch()
        let driver = scratch.write("oven.yaml", """
            driver: oven
            transport: modbus
            channels:
              \(channel)
            """)
        let lab = scratch.write("lab.yaml", """
            lab: bench
            instruments:
              oven: { driver: oven.yaml, simulate: true }
            """)
        return (lab, driver)
    }

    @Test func aMisspeltChannelKeyIsNamedWithWhatWasMeant() throws {
        let (lab, driver) = Self.lab(channel: "temperature: { inptu: 1, type: float32 }")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: lab) }
        #expect(error?.diagnostics.map(\.message) == ["unknown key 'inptu' in channel 'temperature'"])
        #expect(error?.diagnostics.first?.hint == "did you mean 'input'?")
        #expect(error?.diagnostics.first?.location.file == driver)
    }

    @Test func theCaretShowsTheDriverFilesLineNotTheLabConfigs() throws {
        let (lab, driver) = Self.lab(channel: "temperature: { input: 1, type: float33 }")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: lab) }
        #expect(error?.description == """
            \(driver):4:34: unknown type 'float33' — use bool, int16, uint16, int32, uint32, float32, float64, float, array or string
                  temperature: { input: 1, type: float33 }
                                                 ^
            """)
    }

    @Test func validateExitsOneForAnInvalidDriverFileAndTwoForAMissingLab() throws {
        let serendip = Repository.path(".build/debug/serendip")
        try #require(FileManager.default.isExecutableFile(atPath: serendip), "build the serendip executable first")
        let (lab, _) = Self.lab(channel: "temperature: { inptu: 1 }")
        let run = { (labPath: String) throws -> Int32 in
            try runToEnd(serendip, ["validate", "--lab", labPath, Repository.path("protocols/reactor-yield.yaml")]).status
        }
        #expect(try run(lab) == 1)
        #expect(try run(lab + ".missing") == 2)
    }
}
