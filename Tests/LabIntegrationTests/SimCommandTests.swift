import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Testing

/// `serendip sim` as a real process: it prints where its simulators answer, they answer there, and
/// SIGTERM ends it with status 0.
@Suite(.serialized) struct SimCommandTests {
    /// Starts `serendip sim` and waits (up to a minute) for a line of output that `ready` accepts.
    static func start(_ arguments: [String], until ready: (String) -> Bool) async throws -> (Child, String) {
        let output = URL(fileURLWithPath: Repository.temporaryDatabase() + ".out")
        let child = try Child(["sim"] + arguments, output: output)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let line = try child.output().split(separator: "\n").map(String.init).first(where: ready) { return (child, line) }
            guard child.process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        child.signal(SIGKILL)
        _ = try await child.exitStatus()
        throw LabError(.timeout, "serendip sim printed no address; output:\n\(try child.output())")
    }

    @Test func simPrintsEachAddressWritesALabThatReachesThemAndStopsCleanlyOnSIGTERM() async throws {
        let written = Repository.temporaryDatabase() + ".lab.yaml"
        let (child, line) = try await Self.start([Repository.path("examples/instrument-lab/lab.yaml"), "--json", "--write-lab", written],
                                                 until: { $0.hasPrefix("{") })
        defer { if child.process.isRunning { child.signal(SIGKILL) } }
        let printed = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: [String: String]]]
        let addresses = try #require(printed?["instruments"]).mapValues { $0["address"] ?? "" }
        #expect(addresses.keys.sorted() == ["balance", "mfc", "oven", "syringe"])
        #expect(addresses["mfc"]?.hasPrefix("modbus-tcp://127.0.0.1:") == true, "\(addresses)")
        #expect(addresses["oven"]?.hasPrefix("modbus-rtu:///dev/pts/") == true, "\(addresses)")
        #expect(addresses["syringe"]?.hasPrefix("serial:///") == true && addresses["syringe"]?.contains("?baud=9600") == true, "\(addresses)")

        // Our own Modbus TCP client at the printed address: the flow (float32 CDAB at input 0) of a closed MFC.
        let port = try #require(addresses["mfc"].flatMap { Int($0.split(separator: ":").last!.split(separator: "?").first!) })
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: port, unit: 1, responseTimeout: 2))
        let registers = try await client.readRegisters(.input, address: 0, count: 2, retries: 0)
        #expect(abs(ModbusFloat.decode(registers, as: .float32, .cdab)) < 1, "\(registers)")

        // The written lab config connects every instrument to its simulator.
        let config = try LabConfig.load(path: written)
        let instruments = try InstrumentConnector.connect(config)
        #expect(try await instruments["oven"]!.read("temperature").asDouble > 20)
        #expect(try await instruments["syringe"]!.read("status").asDouble == 0)
        #expect(try await instruments["balance"]!.identifyDevice().deviceAnswer == "Serendip,SIM-SCPI-BALANCE,0001,1.0")
        try await instruments["mfc"]!.write("setpoint", .real(50))

        child.signal(SIGTERM)
        #expect(try await child.exitStatus() == 0, "\((try? child.output()) ?? "")")
        #expect(try child.output().contains("stopping on SIGTERM"))
    }

    @Test func pymodbusReadsTheFlowControllerThatSimServes() async throws {
        let (child, line) = try await Self.start([Repository.path("examples/instrument-lab/lab.yaml")], until: { $0.hasPrefix("mfc ") })
        defer { if child.process.isRunning { child.signal(SIGKILL) } }
        let port = try #require(line.split(separator: ":").last?.split(separator: "?").first.flatMap { Int($0) }, "\(line)")
        // The flow (float32) and the totaliser (float64), both low word first, of a closed MFC.
        let registers = [PymodbusTests.Entry(type: "float32", order: "CDAB", address: 0, value: 0),
                         PymodbusTests.Entry(type: "float64", order: "CDAB", address: 4, value: 0)]
        let output = try await PythonPeer.run(["read-tcp", String(port), String(decoding: try JSONEncoder().encode(registers), as: UTF8.self)])
        let values = try JSONDecoder().decode([Double].self, from: Data(output.utf8))
        #expect(values.count == 2 && abs(values[0]) < 1 && values[1] >= 0 && values[1] < 1, "\(values)")
        child.signal(SIGTERM)
        #expect(try await child.exitStatus() == 0)
    }

    @Test func simServesModbusTCPFromTheGivenPortBaseAndPrintsOneLinePerInstrument() async throws {
        // A free port from the system, handed back to be asked for again.
        let probe = try ModbusServer(sizes: .init(), handler: { _, _ in })
        let base = probe.port
        probe.stop()
        let (child, line) = try await Self.start([Repository.path("examples/instrument-lab/lab.yaml"), "--port-base", String(base)],
                                                 until: { $0.hasPrefix("mfc ") })
        defer { if child.process.isRunning { child.signal(SIGKILL) } }
        #expect(line.hasSuffix("modbus-tcp://127.0.0.1:\(base)?unit=1"), "\(line)")
        child.signal(SIGINT)
        #expect(try await child.exitStatus() == 0, "\((try? child.output()) ?? "")")
    }

    @Test func simRefusesALabWithNothingToSimulate() throws {
        let scratch = Scratch()
        let lab = scratch.write("lab.yaml", """
            lab: real
            instruments:
              mfc: { driver: \(Repository.path("drivers/mass-flow-controller.yaml")), modbus: { host: 10.0.0.5, port: 502 } }
            """)
        let run = try runToEnd(Child.executable.path, ["sim", lab], withStandardError: true)
        #expect(run.status != 0)
        #expect(run.output.contains("no instrument to serve") && run.output.contains("--all"), "\(run.output)")
    }
}
