import Foundation
import Glibc
import LabCore
import Synchronization

/// A TCP socket bound to 127.0.0.1 at a port the system chose, for the tests' scripted devices.
enum LoopbackListener {
    /// Listening with `backlog`; the caller closes it.
    static func open(backlog: Int32) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard let port = bind(fd), listen(fd, backlog) == 0 else {
            close(fd)
            throw LabError(.transport, "test device cannot listen")
        }
        return (fd, port)
    }

    /// A port nothing listens on now (bound, then released: another process may take it meanwhile).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        guard let port = bind(fd) else { throw LabError(.transport, "no free port") }
        return port
    }

    private static func bind(_ fd: Int32) -> Int? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }
}

/// A scripted device's listening side: it accepts connections on a loopback port until stopped and
/// serves each on a thread of its own.
final class LoopbackAcceptor: Sendable {
    let port: Int
    private let listener: Int32
    private let stopping = Atomic<Bool>(false)

    init(backlog: Int32) throws { (listener, port) = try LoopbackListener.open(backlog: backlog) }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Accepts until `stop()`, handing each connection to `serve` (which closes it).
    func start(_ serve: @escaping @Sendable (Int32) -> Void) {
        Thread { [self] in
            defer { close(listener) }
            while !isStopping {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                Thread { serve(client) }.start()
            }
        }.start()
    }

    /// Wakes the accepting thread, which closes the listener itself: closed here, its number could
    /// be another test's socket by the time that thread calls accept() on it again.
    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    /// Exactly `count` bytes from a connection, or nil when it ends first (or nothing is asked).
    static func receive(_ fd: Int32, _ count: Int) -> [UInt8]? {
        guard count > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: count), got = 0
        while got < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { return nil }
            got += n
        }
        return bytes
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}
