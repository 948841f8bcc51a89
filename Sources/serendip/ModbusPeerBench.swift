import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport

/// Issue 13's Modbus figure, side by side against one server: a read of 10 holding registers over
/// TCP loopback through our driver stack (a driver file's channel, the instrument, the client), by the raw libmodbus loop in C (`modbus_c.c` from the peers folder,
/// the floor), and by pymodbus's synchronous client. The server is the C one from the same file.
/// The three alternate over `rounds` rounds, each taking `reads` reads one at a time.
struct ModbusPeerBench {
    var reads: Int
    var rounds: Int
    var directory: String
    var peers: String

    struct Figures {
        /// Per round: median and 99th percentile, in seconds.
        var ours: [(p50: Double, p99: Double)] = []
        var c: [(p50: Double, p99: Double)] = []
        var pymodbus: [(p50: Double, p99: Double)] = []
        var pymodbusAsync: [(p50: Double, p99: Double)] = []
        var pythonNote: String?
    }

    func measure() async throws -> Figures {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let peer = try buildPeer()
        let port = try Self.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: peer)
        server.arguments = ["server-tcp", "127.0.0.1", String(port)]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL: a child spawned from a Swift concurrency thread inherits its blocked signals, SIGTERM among them.
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        try await Self.waitUntilListening(port)
        let python = pythonWithPymodbus()
        var figures = Figures()
        if python == nil { figures.pythonNote = "pymodbus not installed (make test installs it under the build folder)" }
        for _ in 0..<rounds {
            figures.ours.append(try await ours(port))
            figures.c.append(try c(peer, port))
            if let python {
                figures.pymodbus.append(try pymodbus(python, port, script: Self.syncClient))
                figures.pymodbusAsync.append(try pymodbus(python, port, script: Self.asyncClient))
            }
        }
        return figures
    }

    /// The RTU figure: our client and the C client in turn against the C RTU server, over a socat
    /// pty pair (a pseudo-terminal has no baud rate, so this is software time, not line time).
    func measureRTU() async throws -> (ours: [(p50: Double, p99: Double)], c: [(p50: Double, p99: Double)]) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let peer = try buildPeer()
        let pair = try await SocatPair.start()
        defer { pair.stop() }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: peer)
        server.arguments = ["server-rtu", pair.serverSide, "115200", "N"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        var figures: (ours: [(p50: Double, p99: Double)], c: [(p50: Double, p99: Double)]) = ([], [])
        for _ in 0..<rounds {
            figures.ours.append(try await oursRTU(pair.clientSide))
            let fields = try PeerProcess.fields(peer, ["client-rtu", pair.clientSide, "115200", "N", String(reads)])
            guard let p50 = fields["p50_us"], let p99 = fields["p99_us"] else { throw LabError(.internalError, "the C RTU client printed \(fields)") }
            figures.c.append((p50 * 1e-6, p99 * 1e-6))
        }
        return figures
    }

    private func oursRTU(_ path: String) async throws -> (p50: Double, p99: Double) {
        let client = ModbusRTUClient(bus: ModbusRTUBus(ModbusRTULine(path: path, baud: 115200)), unit: 1)
        defer { Task { await client.bus.disconnect() } }
        // The C server may still be opening its side: the first reads may go unanswered.
        for attempt in 0..<50 {
            if (try? await client.readRegisters(.holding, address: 0, count: 10, retries: 0)) != nil { break }
            guard attempt < 49 else { throw LabError(.transport, "the C RTU server did not answer") }
        }
        var samples: [Double] = []
        samples.reserveCapacity(reads)
        for _ in 0..<reads {
            let began = ContinuousClock.now
            let registers = try await client.readRegisters(.holding, address: 0, count: 10, retries: 0)
            samples.append(DaemonBench.seconds(ContinuousClock.now - began))
            guard registers.first == 1234 else { throw LabError(.internalError, "the C RTU server answered \(registers)") }
        }
        await client.bus.disconnect()
        return Self.percentiles(samples)
    }

    /// A driver file whose one channel is the C server's first 10 holding registers, read as text:
    /// the request the C client sends, through the instrument a protocol step reads.
    static let driver = """
        driver: bench-block
        transport: modbus
        channels:
          block: { holding: 0, type: string, count: 10 }
        """

    private func ours(_ port: Int) async throws -> (p50: Double, p99: Double) {
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: port))
        let instrument = ModbusInstrument(name: "bench", spec: try DriverSpec.parse(Self.driver, path: "bench-block.yaml"), client: client)
        defer { Task { await client.disconnect() } }
        let expected = try await instrument.readText("block")
        var samples: [Double] = []
        samples.reserveCapacity(reads)
        for _ in 0..<reads {
            let began = ContinuousClock.now
            let text = try await instrument.readText("block")
            samples.append(DaemonBench.seconds(ContinuousClock.now - began))
            guard text == expected, !text.isEmpty else { throw LabError(.internalError, "the C server answered '\(text)'") }
        }
        await client.disconnect()
        return Self.percentiles(samples)
    }

    private func c(_ peer: String, _ port: Int) throws -> (p50: Double, p99: Double) {
        let fields = try PeerProcess.fields(peer, ["client-tcp", "127.0.0.1", String(port), String(reads)])
        guard let p50 = fields["p50_us"], let p99 = fields["p99_us"] else { throw LabError(.internalError, "the C client printed \(fields)") }
        return (p50 * 1e-6, p99 * 1e-6)
    }

    /// pymodbus's synchronous client, timed around each call as the C client is.
    static let syncClient = """
        import sys, time
        from pymodbus.client import ModbusTcpClient
        c = ModbusTcpClient("127.0.0.1", port=int(sys.argv[1])); c.connect()
        def read():
            try: return c.read_holding_registers(0, count=10, device_id=1)
            except TypeError: return c.read_holding_registers(0, count=10, slave=1)
        read(); t = []
        for _ in range(int(sys.argv[2])):
            a = time.perf_counter(); r = read(); t.append(time.perf_counter() - a)
            assert r.registers[0] == 1234
        t.sort(); print(f"p50_us={t[len(t)//2]*1e6} p99_us={t[int(len(t)*0.99)]*1e6}")
        """

    /// pymodbus's asyncio client, the one an asyncio application (Bluesky's world) uses.
    static let asyncClient = """
        import asyncio, sys, time
        from pymodbus.client import AsyncModbusTcpClient
        async def main():
            c = AsyncModbusTcpClient("127.0.0.1", port=int(sys.argv[1])); await c.connect()
            async def read():
                try: return await c.read_holding_registers(0, count=10, device_id=1)
                except TypeError: return await c.read_holding_registers(0, count=10, slave=1)
            await read(); t = []
            for _ in range(int(sys.argv[2])):
                a = time.perf_counter(); r = await read(); t.append(time.perf_counter() - a)
                assert r.registers[0] == 1234
            c.close(); t.sort(); print(f"p50_us={t[len(t)//2]*1e6} p99_us={t[int(len(t)*0.99)]*1e6}")
        asyncio.run(main())
        """

    private func pymodbus(_ python: String, _ port: Int, script: String) throws -> (p50: Double, p99: Double) {
        let fields = try PeerProcess.fields(python, ["-c", script, String(port), String(reads)])
        guard let p50 = fields["p50_us"], let p99 = fields["p99_us"] else { throw LabError(.internalError, "pymodbus printed \(fields)") }
        return (p50 * 1e-6, p99 * 1e-6)
    }

    private func pythonWithPymodbus() -> String? {
        for candidate in [".build/test-venv/bin/python", ".build/peers-venv/bin/python"] where FileManager.default.isExecutableFile(atPath: candidate) {
            if (try? PeerProcess.fields(candidate, ["-c", "import pymodbus; print('ok=1')"]))?["ok"] == 1 { return candidate }
        }
        return nil
    }

    private func buildPeer() throws -> String {
        let executable = directory + "/modbus_c"
        guard !FileManager.default.isExecutableFile(atPath: executable) else { return executable }
        let source = peers + "/modbus_c.c"
        guard FileManager.default.fileExists(atPath: source) else { throw LabError(.invalidFile, "no \(source): pass --peers DIR") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "cc -O2 -o '\(executable)' '\(source)' $(pkg-config --cflags --libs libmodbus)"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw LabError(.internalError, "cannot compile \(source)") }
        return executable
    }

    static func percentiles(_ samples: [Double]) -> (p50: Double, p99: Double) {
        let sorted = samples.sorted()
        return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw LabError(.transport, "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func waitUntilListening(_ port: Int) async throws {
        for _ in 0..<200 {
            let client = ModbusTCPClient(.init(host: "127.0.0.1", port: port, connectAttempts: 1))
            if (try? await client.connect()) != nil { await client.disconnect(); return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw LabError(.transport, "the C Modbus server did not listen on \(port)")
    }
}
