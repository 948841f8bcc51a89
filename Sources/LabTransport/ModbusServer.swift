import CModbus
import Dispatch
import Foundation
import Glibc
public import LabCore
import Synchronization

/// The register tables of a running Modbus server, as a simulator sees them while one request is
/// handled. Only valid inside the handler call; the C mapping never leaves this module.
public struct ModbusRegisterBank: ~Copyable {
    fileprivate let mapping: UnsafeMutablePointer<modbus_mapping_t>

    init(_ mapping: UnsafeMutablePointer<modbus_mapping_t>) { self.mapping = mapping }

    public func holding(_ address: UInt16) -> UInt16 { mapping.pointee.tab_registers[Int(address)] }
    public func setHolding(_ address: UInt16, _ value: UInt16) { mapping.pointee.tab_registers[Int(address)] = value }
    public func input(_ address: UInt16) -> UInt16 { mapping.pointee.tab_input_registers[Int(address)] }
    public func setInput(_ address: UInt16, _ value: UInt16) { mapping.pointee.tab_input_registers[Int(address)] = value }
    public func coil(_ address: UInt16) -> Bool { mapping.pointee.tab_bits[Int(address)] != 0 }
    public func setCoil(_ address: UInt16, _ value: Bool) { mapping.pointee.tab_bits[Int(address)] = value ? 1 : 0 }
    public func discrete(_ address: UInt16) -> Bool { mapping.pointee.tab_input_bits[Int(address)] != 0 }
    public func setDiscrete(_ address: UInt16, _ value: Bool) { mapping.pointee.tab_input_bits[Int(address)] = value ? 1 : 0 }
}

/// A Modbus TCP server on 127.0.0.1 built on libmodbus's own server API (modbus_receive /
/// modbus_reply), serving several clients from one thread. A handler sees each request, with the
/// values it writes, before the reply goes out: a device reacts to a write before acknowledging it,
/// so a client can never act on an acknowledgement the device has not yet seen.
public final class ModbusServer: Sendable {
    /// What a client asked for: the function code, the address range it touches, and for writes
    /// the values written (registers, or 0/1 for coils).
    public struct Request: Sendable, Hashable {
        public var function: UInt8
        public var address: UInt16
        public var count: UInt16
        public var written: [UInt16] = []

        /// The value this request writes at `address`, if it writes there.
        public func writtenValue(at target: UInt16) -> UInt16? {
            let offset = Int(target) - Int(address)
            return offset >= 0 && offset < written.count ? written[offset] : nil
        }

        public var touchesInputRegisters: Bool { function == 0x04 }
        public var touchesHoldingRegisters: Bool { [0x03, 0x06, 0x10, 0x17].contains(function) }
        public var touchesCoils: Bool { [0x01, 0x05, 0x0F].contains(function) }
        public var touchesDiscreteInputs: Bool { function == 0x02 }

        public func covers(_ first: UInt16, count span: Int) -> Bool {
            let end = Int(address) + Int(function == 0x05 || function == 0x06 ? 1 : count)
            return Int(first) < end && Int(first) + span > Int(address)
        }
    }

    public typealias Handler = @Sendable (borrowing ModbusRegisterBank, Request) -> Void

    public struct TableSizes: Sendable {
        public var coils = 1, discreteInputs = 1, holding = 1, input = 1
        public init(coils: Int = 1, discreteInputs: Int = 1, holding: Int = 1, input: Int = 1) {
            self.coils = coils; self.discreteInputs = discreteInputs; self.holding = holding; self.input = input
        }
    }

    public let port: Int
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let control = PlugControl()
    /// Raw addresses of libmodbus objects owned by the server thread; Int so the class stays Sendable.
    private let contextAddress: Int
    private let mappingAddress: Int

    /// Serves on 127.0.0.1:`port` (0: a free port the system picks).
    public init(sizes: TableSizes, port requested: Int = 0, handler: @escaping Handler) throws(LabError) {
        guard let ctx = modbus_new_tcp("127.0.0.1", 0) else { throw LabError(.transport, "cannot create a Modbus server") }
        let fd: Int32
        do { fd = try Self.listen(port: requested) } catch {
            modbus_free(ctx)
            throw error
        }
        guard let mapping = modbus_mapping_new(Int32(sizes.coils), Int32(sizes.discreteInputs),
                                               Int32(sizes.holding), Int32(sizes.input)) else {
            Glibc.close(fd)
            modbus_free(ctx)
            throw LabError(.transport, "cannot allocate Modbus tables")
        }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        contextAddress = Int(bitPattern: UnsafeRawPointer(ctx))
        mappingAddress = Int(bitPattern: mapping)
        let thread = Thread { [self] in serve(listening: fd, handler) }
        thread.name = "serendip.modbus-server.\(port)"
        thread.start()
    }

    /// Stops serving, closes every connection and frees the libmodbus objects. Idempotent.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        control.wake()
        finished.wait()
    }

    /// As if the device's cable were pulled: every connection is closed and connects are refused
    /// until `plugIn()`. Returns once that is so.
    public func unplug() {
        guard !stopping.load(ordering: .acquiring) else { return }
        control.request(plugged: false)
    }

    /// Listens again on the same port (the register tables kept what they held).
    public func plugIn() {
        guard !stopping.load(ordering: .acquiring) else { return }
        control.request(plugged: true)
    }

    deinit { stop() }

    /// A listening socket on 127.0.0.1; port 0 picks a free one. SO_REUSEADDR so that plugging in
    /// again can take the same port while the closed connections linger in TIME_WAIT. Not listening,
    /// the socket only holds the port: a connect is refused, and no other server (another test's
    /// simulator asking for any free port) can take it while the device is unplugged.
    private static func listen(port: Int, listening: Bool = true) throws(LabError) -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LabError(.transport, "cannot listen: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, !listening || Glibc.listen(fd, 8) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw LabError(.transport, "cannot listen on 127.0.0.1:\(port): \(reason)")
        }
        return fd
    }

    /// Takes the port back after an unplug. Between closing the placeholder and binding, a client's
    /// connect can take the port for a moment (as its own source port, connected to itself); a
    /// device that stayed unplugged for that would hang whoever waits for it, so try for a while.
    private static func listenAgain(port: Int) -> Int32 {
        for _ in 0..<200 {
            if let fd = try? listen(port: port) { return fd }
            usleep(10_000)
        }
        FileHandle.standardError.write(Data("serendip: the simulated Modbus device cannot listen on port \(port) again\n".utf8))
        return -1
    }

    private func serve(listening: Int32, _ handler: Handler) {
        let ctx = OpaquePointer(bitPattern: contextAddress)!
        let mapping = UnsafeMutablePointer<modbus_mapping_t>(bitPattern: mappingAddress)!
        var listenFD = listening
        var placeholder: Int32 = -1
        var clients: [Int32] = []
        // Bytes received from each client and not yet a whole request.
        var received: [Int32: [UInt8]] = [:]
        var chunk = [UInt8](repeating: 0, count: Int(MODBUS_TCP_MAX_ADU_LENGTH))
        func drop(_ fd: Int32) {
            Glibc.close(fd)
            clients.removeAll { $0 == fd }
            received[fd] = nil
        }
        while !stopping.load(ordering: .acquiring) {
            var fds = [pollfd(fd: control.wakeFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
                + clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 20) > 0 else { continue }
            if fds[0].revents != 0, let plugged = control.take() {
                if plugged, listenFD < 0 {
                    if placeholder >= 0 { Glibc.close(placeholder) }
                    placeholder = -1
                    listenFD = Self.listenAgain(port: port)
                } else if !plugged {
                    clients.forEach { Glibc.close($0) }
                    clients = []
                    received = [:]
                    if listenFD >= 0 { Glibc.close(listenFD) }
                    listenFD = -1
                    placeholder = (try? Self.listen(port: port, listening: false)) ?? -1
                }
                control.done()
                continue
            }
            if listenFD >= 0, fds[1].revents & Int16(POLLIN) != 0 {
                let client = accept(listenFD, nil, nil)
                if client >= 0 {
                    _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                    clients.append(client)
                }
            }
            // Requests are framed here (MBAP: the length is in the header) rather than by
            // modbus_receive, which waits with select() and aborts the process on a descriptor above
            // 1023, as a test process with many devices has; libmodbus still answers them.
            for entry in fds.dropFirst(2) where entry.revents != 0 {
                let n = chunk.withUnsafeMutableBytes { recv(entry.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { drop(entry.fd); continue }
                guard n > 0 else { continue }
                var bytes = received[entry.fd, default: []] + chunk[..<n]
                while bytes.count >= 7 {
                    let length = Int(bytes[4]) << 8 | Int(bytes[5])
                    guard (2...254).contains(length) else { bytes = []; drop(entry.fd); break }
                    guard bytes.count >= 6 + length else { break }
                    let query = Array(bytes[..<(6 + length)])
                    bytes.removeFirst(6 + length)
                    // A frame too short for its function would have libmodbus read past it: a
                    // device that cannot parse a request drops the connection.
                    guard let request = Self.request(in: query, headerLength: 7) else { bytes = []; drop(entry.fd); break }
                    handler(ModbusRegisterBank(mapping), request)
                    modbus_set_socket(ctx, entry.fd)
                    _ = query.withUnsafeBufferPointer { modbus_reply(ctx, $0.baseAddress, Int32(query.count), mapping) }
                }
                if clients.contains(entry.fd) { received[entry.fd] = bytes }
            }
        }
        if control.take() != nil { control.done() }
        clients.forEach { Glibc.close($0) }
        if listenFD >= 0 { Glibc.close(listenFD) }
        if placeholder >= 0 { Glibc.close(placeholder) }
        modbus_set_socket(ctx, -1)
        modbus_mapping_free(mapping)
        modbus_free(ctx)
        finished.signal()
    }

    /// Function code, then big-endian address and count (or value), right after the MBAP header;
    /// for writes, the values that follow. Nil when the frame is too short for what it says it is.
    static func request(in query: [UInt8], headerLength: Int) -> Request? {
        let h = headerLength
        guard query.count >= h + 5 else { return nil }
        let word = { (i: Int) in UInt16(query[i]) << 8 | UInt16(query[i + 1]) }
        var request = Request(function: query[h], address: word(h + 1), count: word(h + 3))
        let count = Int(request.count)
        switch request.function {
        case 0x05: request.written = [word(h + 3) == 0xFF00 ? 1 : 0]
        case 0x06: request.written = [word(h + 3)]
        case 0x0F:
            guard query.count >= h + 6 + (count + 7) / 8 else { return nil }
            request.written = (0..<count).map { UInt16(query[h + 6 + $0 / 8] >> ($0 % 8) & 1) }
        case 0x10:
            guard query.count >= h + 6 + 2 * count else { return nil }
            request.written = (0..<count).map { word(h + 6 + 2 * $0) }
        default: break
        }
        return request
    }
}
