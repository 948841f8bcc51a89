import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Testing

/// Our Modbus clients, codecs and simulators against pymodbus, an independent implementation, from
/// the virtualenv `make test` creates under the build folder (`make test-venv`).
@Suite(.serialized) struct PymodbusTests {
    /// One value of each type in each order, at consecutive addresses from 1 (address 0 holds the unit id).
    static let table: [Entry] = {
        var entries: [Entry] = []
        var address = 1
        let values: [(String, Double)] = [("int16", -12345), ("uint16", 54321), ("int32", -123456789), ("uint32", 3123456789),
                                          ("float32", -123.456), ("float64", 6.02214076e23)]
        for (type, value) in values {
            for order in ModbusFloat.Order.allCases {
                entries.append(Entry(type: type, order: order.rawValue, address: address, value: value))
                address += ModbusFloat.Number(rawValue: type)!.registerCount
            }
        }
        return entries
    }()

    struct Entry: Codable {
        var type: String
        var order: String
        var address: Int
        var value: Double

        var number: ModbusFloat.Number { ModbusFloat.Number(rawValue: type)! }
        var wordOrder: ModbusFloat.Order { ModbusFloat.Order(rawValue: order)! }
        /// What the register can hold of `value` (a float32 is rounded to one).
        var held: Double { number == .float32 ? Double(Float(value)) : value }
    }

    static let text = "SERENDIP-RTU"
    /// After the table: the string, in ABCD and in BADC (a string has a byte order, not a word order).
    static var stringAddress: Int { table.last!.address + table.last!.number.registerCount }

    static var tableJSON: String { String(decoding: try! JSONEncoder().encode(table), as: UTF8.self) }

    // MARK: pymodbus serves, we read

    @Test func ourRTUClientReadsAndWritesAPymodbusRTUServerOverASocatPtyPair() async throws {
        // Parity N: pyserial refuses to set parity on a pseudo-terminal (EINVAL).
        let pair = try await SocatPair.start()
        defer { pair.stop() }
        let server = try await PythonPeer.start(["rtu-server", pair.serverSide, "19200", "N", Self.tableJSON, Self.text])
        defer { server.stop() }
        let bus = try ModbusRTUBus.shared(ModbusRTULine(path: pair.clientSide, baud: 19200))
        let unit3 = ModbusRTUClient(bus: bus, unit: 3, timing: .init(response: 2, byte: 0.5))
        for entry in Self.table {
            let registers = try await unit3.readRegisters(.holding, address: UInt16(entry.address), count: entry.number.registerCount, retries: 0)
            #expect(ModbusFloat.decode(registers, as: entry.number, entry.wordOrder) == entry.held, "\(entry.type) \(entry.order)")
        }
        let textRegisters = try await unit3.readRegisters(.holding, address: UInt16(Self.stringAddress), count: 6, retries: 0)
        #expect(ModbusFloat.decodeString(textRegisters, .abcd) == Self.text)

        // Writes reach it (read back through pymodbus's own tables), a coil too.
        let written = ModbusFloat.encode(21.5, as: .float32, .cdab)
        try await unit3.writeRegisters(address: 200, values: written)
        #expect(try await unit3.readRegisters(.holding, address: 200, count: 2, retries: 0) == written)
        try await unit3.writeBit(address: 5, true)
        #expect(try await unit3.readBits(.coil, address: 0, count: 8, retries: 0) == [false, false, false, false, false, true, false, false])

        // pymodbus refuses an address outside its table with exception 2, which we put in words.
        let refused = await #expect(throws: LabError.self) { try await unit3.readRegisters(.holding, address: 999, count: 1, retries: 0) }
        #expect(refused?.code == .protocolViolation)
        #expect(refused?.message.contains("exception 2 (illegal data address)") == true)
    }

    @Test func twoUnitsOnOneLineEachGetTheirOwnAnswersWhenAskedAtOnce() async throws {
        // Parity N: pyserial refuses to set parity on a pseudo-terminal (EINVAL).
        let pair = try await SocatPair.start()
        defer { pair.stop() }
        let server = try await PythonPeer.start(["rtu-server", pair.serverSide, "19200", "N", Self.tableJSON, Self.text])
        defer { server.stop() }
        let line = ModbusRTULine(path: pair.clientSide, baud: 19200)
        // Two instruments on one port share one owner, which puts their requests on the line one at a time.
        let bus = try ModbusRTUBus.shared(line)
        #expect(try ModbusRTUBus.shared(line) === bus)
        #expect(throws: LabError.self) { try ModbusRTUBus.shared(ModbusRTULine(path: pair.clientSide, baud: 9600)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for unit in [3, 4] {
                group.addTask {
                    let client = ModbusRTUClient(bus: bus, unit: unit, timing: .init(response: 2, byte: 0.5))
                    for _ in 0..<40 {
                        let answer = try await client.readRegisters(.holding, address: 0, count: 1, retries: 0)
                        #expect(answer == [UInt16(unit)])
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func ourTCPClientReadsEveryTypeInEveryOrderAsPymodbusEncodedIt() async throws {
        let port = try LoopbackListener.freePort()
        let server = try await PythonPeer.start(["tcp-server", String(port), Self.tableJSON, Self.text])
        defer { server.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: port, unit: 3, responseTimeout: 2))
        for entry in Self.table {
            let registers = try await client.readRegisters(.holding, address: UInt16(entry.address), count: entry.number.registerCount)
            #expect(ModbusFloat.decode(registers, as: entry.number, entry.wordOrder) == entry.held, "\(entry.type) \(entry.order)")
            #expect(registers == ModbusFloat.encode(entry.value, as: entry.number, entry.wordOrder), "\(entry.type) \(entry.order)")
        }
        for (offset, order) in [(0, ModbusFloat.Order.abcd), (6, .badc)] {
            let registers = try await client.readRegisters(.holding, address: UInt16(Self.stringAddress + offset), count: 6)
            #expect(ModbusFloat.decodeString(registers, order) == Self.text)
            #expect(registers == ModbusFloat.encode(string: Self.text, registers: 6, order))
        }
    }

    // MARK: we serve, pymodbus reads

    /// A driver file with one input channel per entry of the table, served by our simulator.
    static func driver(transport: String) throws -> DriverSpec {
        var lines = ["driver: every-type", "transport: \(transport)", "channels:"]
        for entry in table {
            lines.append("  v\(entry.address): { input: \(entry.address), type: \(entry.type), word_order: \(entry.order) }")
        }
        return try DriverSpec.parse(lines.joined(separator: "\n") + "\n", path: "every-type.yaml")
    }

    struct TableModel: DeviceModel {
        func value(of channel: String) throws -> Double {
            PymodbusTests.table.first { "v\($0.address)" == channel }!.value
        }
        func didWrite(_ channel: String, _ value: Double) {}
    }

    @Test(arguments: ["modbus", "modbus-rtu"])
    func pymodbusReadsOurSimulatorAsWeEncodedIt(transport: String) async throws {
        let simulator = try ModbusSimulator(spec: Self.driver(transport: transport), model: TableModel())
        defer { simulator.stop() }
        let arguments = if let path = simulator.rtuPath { ["read-rtu", path, "9600", "N"] } else { ["read-tcp", String(simulator.port)] }
        let output = try await PythonPeer.run(arguments + [Self.tableJSON])
        let decoded = try JSONDecoder().decode([Double].self, from: Data(output.utf8))
        #expect(decoded.count == Self.table.count)
        for (entry, value) in zip(Self.table, decoded) {
            #expect(value == entry.held, "\(entry.type) \(entry.order) over \(transport)")
        }
    }
}

/// pymodbus from the test virtualenv; a missing virtualenv fails the test, never skips it.
struct PythonPeer {
    static let python = Repository.path(".build/test-venv/bin/python")
    let process: Process
    /// Where its output goes; removed when it stops.
    let output: String

    static func process(_ arguments: [String], output: String) throws -> Process {
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "no test virtualenv at \(python): run `make test` (or `make test-venv`) to create it with pymodbus")
        FileManager.default.createFile(atPath: output, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-W", "ignore", "-c", script] + arguments
        // A file, not a pipe: waiting on it never holds a thread of the test's pool.
        let out = FileHandle(forWritingAtPath: output)
        FileManager.default.createFile(atPath: output + ".err", contents: nil)
        let err = FileHandle(forWritingAtPath: output + ".err")
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // The child has its own copies (see Child).
        try? out?.close()
        try? err?.close()
        return process
    }

    static func outputFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("serendip-pymodbus-\(UUID().uuidString)").path
    }

    static func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Starts a server and returns once it says it is ready.
    static func start(_ arguments: [String]) async throws -> PythonPeer {
        let output = outputFile()
        let peer = PythonPeer(process: try process(arguments, output: output), output: output)
        let deadline = Date().addingTimeInterval(60)
        while !text(output).contains("ready\n") {
            guard Date() < deadline, peer.process.isRunning else {
                peer.stop()
                throw LabError(.transport, "pymodbus \(arguments[0]) did not start: \(text(output + ".err"))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return peer
    }

    /// Runs a client to its end and returns what it printed.
    static func run(_ arguments: [String]) async throws -> String {
        let output = outputFile()
        let peer = PythonPeer(process: try process(arguments, output: output), output: output)
        defer { peer.stop() }
        while peer.process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        try #require(peer.process.terminationStatus == 0, "pymodbus \(arguments[0]) failed: \(text(output + ".err"))")
        return text(output)
    }

    /// SIGKILL: pymodbus's server outlives a SIGTERM.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: output)
        try? FileManager.default.removeItem(atPath: output + ".err")
    }

    /// Servers hold the table for units 3 and 4 (holding register 0 is the unit id), the string in
    /// ABCD and BADC after it, and room to write at 200 and coils 0-7; clients read the table's
    /// input registers from unit 1 and print the decoded values as JSON. Encoding is pymodbus's
    /// own (`convert_to_registers`); the byte-swapped orders swap the bytes of each register.
    static let script = """
        import json, sys, threading
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        from pymodbus.framer import FramerType

        C = ModbusTcpClient
        TYPES = {"int16": C.DATATYPE.INT16, "uint16": C.DATATYPE.UINT16, "int32": C.DATATYPE.INT32,
                 "uint32": C.DATATYPE.UINT32, "float32": C.DATATYPE.FLOAT32, "float64": C.DATATYPE.FLOAT64}

        def swap(regs, order):
            return [((r & 0xFF) << 8) | (r >> 8) for r in regs] if order in ("BADC", "DCBA") else regs

        def word_order(order):
            return "little" if order in ("CDAB", "DCBA") else "big"

        def encode(e):
            value = int(e["value"]) if e["type"] not in ("float32", "float64") else e["value"]
            return swap(C.convert_to_registers(value, TYPES[e["type"]], word_order=word_order(e["order"])), e["order"])

        def decode(regs, e):
            return float(C.convert_from_registers(swap(regs, e["order"]), TYPES[e["type"]], word_order=word_order(e["order"])))

        def context(table, text):
            from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
            devices = {}
            for unit in (3, 4):
                hr = [0] * 300
                hr[0] = unit
                for e in table:
                    regs = encode(e)
                    hr[e["address"]:e["address"] + len(regs)] = regs
                at = table[-1]["address"] + TYPES[table[-1]["type"]].value[1]
                regs = C.convert_to_registers(text, C.DATATYPE.STRING)
                hr[at:at + 6] = regs
                hr[at + 6:at + 12] = swap(regs, "BADC")
                devices[unit] = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, hr), co=ModbusSequentialDataBlock(1, [0] * 8))
            return ModbusServerContext(devices=devices, single=False)

        def ready():
            print("ready", flush=True)

        mode = sys.argv[1]
        if mode == "rtu-server":
            from pymodbus.server import StartSerialServer
            path, baud, parity, table, text = sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5]), sys.argv[6]
            threading.Timer(1.0, ready).start()
            StartSerialServer(context=context(table, text), framer=FramerType.RTU, port=path, baudrate=baud, parity=parity)
        elif mode == "tcp-server":
            from pymodbus.server import StartTcpServer
            port, table, text = int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
            threading.Timer(1.0, ready).start()
            StartTcpServer(context=context(table, text), address=("127.0.0.1", port))
        else:
            if mode == "read-rtu":
                client = ModbusSerialClient(sys.argv[2], framer=FramerType.RTU, baudrate=int(sys.argv[3]), parity=sys.argv[4], timeout=2)
                table = json.loads(sys.argv[5])
            else:
                client = ModbusTcpClient("127.0.0.1", port=int(sys.argv[2]), timeout=2)
                table = json.loads(sys.argv[3])
            assert client.connect(), "cannot connect"
            out = []
            for e in table:
                reply = client.read_input_registers(e["address"], count=TYPES[e["type"]].value[1], device_id=1)
                assert not reply.isError(), f"{e}: {reply}"
                out.append(decode(reply.registers, e))
            print(json.dumps(out))
        """
}
