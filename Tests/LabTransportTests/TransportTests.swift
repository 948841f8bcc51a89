import Foundation
import Glibc
import LabCore
import LabTransport
import Synchronization
import Testing

@Suite struct ModbusTransportTests {
    @Test func readsAndWritesRegistersAndCoilsOverARealSocket() async throws {
        let server = try ModbusServer(sizes: .init(coils: 8, holding: 4, input: 4)) { bank, _ in
            // The "device" mirrors holding register 0 into input register 1, plus one.
            bank.setInput(1, bank.holding(0) &+ 1)
        }
        defer { server.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        try await client.writeRegisters(address: 0, values: [41])
        #expect(try await client.readRegisters(.holding, address: 0, count: 1) == [41])
        #expect(try await client.readRegisters(.input, address: 1, count: 1) == [42])
        try await client.writeBit(address: 5, true)
        #expect(try await client.readBits(.coil, address: 0, count: 8) == [false, false, false, false, false, true, false, false])
    }

    @Test func aDeviceAtAnIPv6AddressIsReached() async throws {
        let server = try ModbusServer(sizes: .init(holding: 4)) { _, _ in }
        defer { server.stop() }
        try await client(server.port).writeRegisters(address: 2, values: [77])
        // socat stands in for a device on ::1, forwarding to the server (which listens on IPv4).
        let ipv6Port = try freeIPv6Port()
        let socat = Process()
        socat.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        socat.arguments = ["TCP6-LISTEN:\(ipv6Port),bind=[::1],reuseaddr,fork", "TCP4:127.0.0.1:\(server.port)"]
        try socat.run()
        // SIGKILL: a child spawned from a Swift concurrency thread inherits its blocked signals, SIGTERM among them.
        defer { kill(socat.processIdentifier, SIGKILL); socat.waitUntilExit() }
        let client = ModbusTCPClient(.init(host: "::1", port: ipv6Port, connectAttempts: 8))
        #expect(client.address == "modbus-tcp://[::1]:\(ipv6Port)/1")
        #expect(try await client.readRegisters(.holding, address: 2, count: 1) == [77])
    }

    private func client(_ port: Int) -> ModbusTCPClient { ModbusTCPClient(.init(host: "127.0.0.1", port: port)) }

    private func freeIPv6Port() throws -> Int {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw LabError(.transport, "no IPv6 loopback here") }
        return Int(UInt16(bigEndian: address.sin6_port))
    }

    /// Run alone (`make soak`): it takes and then closes every free descriptor below 1030, which in a
    /// process running other tests at once would turn any stray double close there into a closed socket.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SERENDIP_HIGH_DESCRIPTORS"] != nil))
    func aConnectionOnADescriptorAbove1023IsServed() async throws {
        // A process with many devices open (a test run, a big lab) hands out descriptors past 1023,
        // where select() — and libmodbus's receive with it — aborts the process.
        let server = try ModbusServer(sizes: .init(holding: 4)) { _, _ in }
        defer { server.stop() }
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_cur > 1100, "the descriptor limit is too low to test this")
        let filler = open("/dev/null", O_RDONLY)
        var held: [Int32] = []
        // Fill every free descriptor below 1030, so that the next ones (the connection's) are above it.
        while true {
            let fd = dup(filler)
            guard fd >= 0 else { break }
            held.append(fd)
            if fd >= 1030 { break }
        }
        defer { (held + [filler]).forEach { close($0) } }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        try await client.writeRegisters(address: 0, values: [7])
        #expect(try await client.readRegisters(.holding, address: 0, count: 1) == [7])
    }

    @Test func handsTheHandlerTheValuesAWriteCarriesBeforeReplying() async throws {
        let seen = Mutex<[ModbusServer.Request]>([])
        let server = try ModbusServer(sizes: .init(coils: 16, holding: 8)) { _, request in
            if !request.written.isEmpty { seen.withLock { $0.append(request) } }
        }
        defer { server.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        try await client.writeRegisters(address: 2, values: [7, 0xBEEF])
        try await client.writeBit(address: 9, true)
        let requests = seen.withLock { $0 }
        #expect(requests.map(\.written) == [[7, 0xBEEF], [1]])
        #expect(requests[0].writtenValue(at: 3) == 0xBEEF && requests[0].writtenValue(at: 4) == nil)
        #expect(requests[1].writtenValue(at: 9) == 1)
    }

    @Test func reportsADeviceExceptionForAnAddressOutsideTheMap() async throws {
        let server = try ModbusServer(sizes: .init(holding: 2)) { _, _ in }
        defer { server.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        await #expect(throws: LabError.self) { try await client.readRegisters(.holding, address: 10, count: 1) }
        // The link survives a device exception.
        #expect(try await client.readRegisters(.holding, address: 0, count: 2) == [0, 0])
    }

    /// Frames that say what they are but are too short for it (a buggy or hostile client): the
    /// device drops that connection and goes on serving; before, it read past the frame and
    /// brought the whole process down.
    @Test(arguments: [
        [0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x03] as [UInt8],             // a read with no address or count
        [0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x01, 0x10, 0x00, 0x00, 0x00, 0x40, 0x80, 0x00], // 64 registers, one value
        [0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x01, 0x0F, 0x00, 0x00, 0x00, 0x40, 0x08],       // 64 coils, no bytes
    ])
    func aFrameTooShortForItsFunctionIsDroppedAndTheDeviceServesOn(frame: [UInt8]) async throws {
        let server = try ModbusServer(sizes: .init(coils: 8, holding: 4)) { _, _ in }
        defer { server.stop() }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(server.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        #expect(send(fd, frame, frame.count, Int32(MSG_NOSIGNAL)) == frame.count)
        // The device closes this connection without an answer…
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        #expect(recv(fd, &byte, 1, 0) == 0)
        // …and answers the next client.
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        try await client.writeRegisters(address: 1, values: [9])
        #expect(try await client.readRegisters(.holding, address: 0, count: 2) == [0, 9])
    }

    @Test func reportsTheInstrumentLostWhenNothingListens() async throws {
        let server = try ModbusServer(sizes: .init()) { _, _ in }
        let port = server.port
        server.stop()
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: port, responseTimeout: 0.2))
        await #expect { try await client.readRegisters(.holding, address: 0, count: 1) } throws: { error in
            (error as? LabError)?.code == .instrumentLost
        }
    }
}

@Suite struct SerialTransportTests {
    /// A child spawned by another thread (the daemon tests spawn many) would otherwise hold the
    /// simulated device's side open, and pulling the device would not hang the line up.
    @Test func aSimulatedDevicesPseudoTerminalIsNotInheritedByChildProcesses() throws {
        let terminal = try PseudoTerminal.open()
        defer { terminal.close() }
        #expect(fcntl(terminal.primary, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(terminal.secondary, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func queriesALineDeviceOnAPseudoTerminal() async throws {
        let device = try LineServer { line in line == "IDN?" ? "Serendip,pty-echo,1" : "ERR \(line)" }
        defer { device.stop() }
        let line = SerialLine(path: device.path, timeout: 1)
        #expect(try await line.query("IDN?") == "Serendip,pty-echo,1")
        #expect(try await line.query("FOO") == "ERR FOO")
    }

    @Test func takesTheFirstLineOfAChattyReplyWithoutWaitingForTheTimeout() async throws {
        let device = try LineServer { _ in "0.42\nSTATUS OK" }
        defer { device.stop() }
        // A timeout far above any scheduling delay on a busy machine (seconds, when other suites
        // keep both cooperative threads computing), so only waiting for it can fail the test.
        let line = SerialLine(path: device.path, timeout: 20)
        let started = ContinuousClock.now
        #expect(try await line.query("ABS?") == "0.42")
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(try await line.query("ABS?") == "0.42")
    }

    @Test func timesOutOnASilentDeviceAndRecoversOnTheNextQuery() async throws {
        let answered = Mutex(0)
        let late = Atomic<Bool>(false)
        let device = try LineServer { line in
            // The first query is answered far too late: as a stale line the next query must drop.
            if answered.withLock({ $0 += 1; return $0 }) == 1 {
                Thread.sleep(forTimeInterval: 2)
                late.store(true, ordering: .releasing)
                return "LATE"
            }
            return "FRESH \(line)"
        }
        defer { device.stop() }
        // Seconds, not milliseconds: a busy machine must not make the second query time out too.
        let line = SerialLine(path: device.path, timeout: 1)
        await #expect { try await line.query("A") } throws: { ($0 as? LabError)?.code == .timeout }
        while !late.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await line.query("B") == "FRESH B")
    }
}
