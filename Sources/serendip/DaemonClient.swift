import Foundation
import Glibc

/// One JSON-RPC call to the daemon of a data directory: connect to DIR/serendip.sock, send one
/// request line, read one reply line. Blocking on purpose: a command makes one call and exits.
struct DaemonClient {
    let directory: String
    /// Generous: `queue.add` simulates the protocol to estimate its duration before it answers.
    var timeout: Duration = .seconds(60)

    var socketPath: String { directory + "/serendip.sock" }

    /// The reply's `result` as JSON, or a failure that says what to do.
    func call(_ method: String, _ params: some Encodable) throws(ClientFailure) -> Data {
        let request: Data
        do { request = try JSONEncoder().encode(Request(method: method, params: params)) } catch {
            throw ClientFailure("could not encode the \(method) request: \(error)", status: 1)
        }
        let fd = try connected()
        defer { close(fd) }
        try send(request + Data("\n".utf8), to: fd)
        return try Self.result(of: try replyLine(from: fd), method: method)
    }

    private struct Request<Params: Encodable>: Encodable {
        var jsonrpc = "2.0"
        var id = 1
        var method: String
        var params: Params
    }

    private func connected() throws(ClientFailure) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ClientFailure("the socket path \(socketPath) is longer than a Unix socket allows (\(MemoryLayout.size(ofValue: address.sun_path) - 1) bytes); use a shorter --data directory", status: 2)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientFailure("could not create a socket: \(String(cString: strerror(errno)))", status: 1) }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard status == 0 else {
            let code = errno
            close(fd)
            switch code {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .noDaemon(in: directory)
            case EACCES, EPERM:
                throw ClientFailure("not allowed to connect to \(socketPath): the daemon's socket is owner-only; run this as the user who started `serendip serve`", status: 3)
            default: throw ClientFailure("could not connect to \(socketPath): \(String(cString: strerror(code)))", status: 3)
            }
        }
        return fd
    }

    private func send(_ data: Data, to fd: Int32) throws(ClientFailure) {
        var sent = 0
        while sent < data.count {
            // MSG_NOSIGNAL: a daemon that closes early is an error to report, not a SIGPIPE that kills us.
            let n = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, data.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .noAnswer(from: directory, why: "the connection closed while sending (\(String(cString: strerror(errno))))") }
            sent += n
        }
    }

    private func replyLine(from fd: Int32) throws(ClientFailure) -> Data {
        let deadline = ContinuousClock.now + timeout
        var reply = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !reply.contains(UInt8(ascii: "\n")) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .noAnswer(from: directory, why: "no reply within \(timeout.components.seconds) s") }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .noAnswer(from: directory, why: "the daemon closed the connection without a reply") }
            reply.append(contentsOf: buffer[..<n])
        }
        return reply.prefix { $0 != UInt8(ascii: "\n") }
    }

    /// The `result` of a reply, or its `error` as a failure. For an invalid file (-32010) the
    /// message is already the positioned diagnostics `serendip validate` prints.
    static func result(of line: Data, method: String) throws(ClientFailure) -> Data {
        guard let reply = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
            throw ClientFailure("the daemon's reply to \(method) is not a JSON object: \(String(decoding: line.prefix(200), as: UTF8.self))", status: 1)
        }
        if let error = reply["error"] as? [String: Any] {
            let code = error["code"] as? Int ?? 0
            let message = error["message"] as? String ?? "(no message)"
            throw ClientFailure(code == -32010 ? message : "\(method): \(message) (error \(code))", status: code == -32013 ? 3 : 1)
        }
        guard let result = reply["result"],
              let data = try? JSONSerialization.data(withJSONObject: result, options: [.fragmentsAllowed]) else {
            throw ClientFailure("the daemon's reply to \(method) has neither a result nor an error", status: 1)
        }
        return data
    }
}

/// Why a client command could not do what it was asked, and the exit status that says so:
/// 1 the daemon refused (invalid file, no such run, a state that does not allow it) or an argument
/// is wrong, 2 a local file could not be read, 3 no daemon answered.
struct ClientFailure: Error, CustomStringConvertible {
    var description: String
    var status: Int32

    init(_ description: String, status: Int32) { self.description = description; self.status = status }

    static func noDaemon(in directory: String) -> ClientFailure {
        ClientFailure("no Serendip daemon is running in \(directory) (start one with: serendip serve --lab LAB --data \(directory))", status: 3)
    }

    static func noAnswer(from directory: String, why: String) -> ClientFailure {
        ClientFailure("the Serendip daemon in \(directory) did not answer: \(why)", status: 3)
    }
}
