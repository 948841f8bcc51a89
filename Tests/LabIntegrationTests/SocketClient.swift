import Foundation
import Glibc
import LabCore
import LabServer
import LabSpec
import LabStorage

/// A blocking client on a real Unix socket, as `socat` or a script would be. Every wait is bounded by
/// `timeout`, so a server that never answers fails the test instead of hanging it.
final class SocketClient: @unchecked Sendable {  // one thread may send while another reads, as sockets allow
    let fd: Int32
    private var pending: [UInt8] = []

    init(_ path: String, timeout: Double = 30) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // deinit closes fd, even after this throw: closing it here too would close another's descriptor.
        guard connected == 0 else { throw LabError(.transport, "connect to \(path) failed") }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends every byte, or as many as the server takes before the timeout; returns how many.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return sent }
            sent += n
        }
        return sent
    }

    @discardableResult
    func send(_ text: String) -> Int { send(Array(text.utf8)) }

    /// Tells the server this client will send nothing more (a half-close, as `socat` does at end of input).
    func finishSending() { shutdown(fd, Int32(SHUT_WR)) }

    /// The next line, or nil at end of stream or after the timeout.
    func readLine() -> String? {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { return nil }
            pending += chunk[..<n]
        }
    }

    /// Every line until the server closes the connection.
    func readToEnd() -> [String] {
        var lines: [String] = []
        while let line = readLine() { lines.append(line) }
        return lines
    }

    func reply() throws -> [String: Any] {
        let line = try require(readLine(), "no reply")
        return try require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not an object: \(line)")
    }

    private func require<T>(_ value: T?, _ what: String) throws -> T {
        guard let value else { throw LabError(.transport, what) }
        return value
    }
}

/// The documented longest request line (docs/api.md), not counting its newline.
let mebibyte = 1 << 20

/// One request, one reply, on a fresh connection.
func exchange(_ path: String, _ request: String) throws -> [String: Any] {
    let client = try SocketClient(path)
    client.send(request + "\n")
    return try client.reply()
}

func errorCode(_ reply: [String: Any]) -> Int? { (reply["error"] as? [String: Any])?["code"] as? Int }
func errorMessage(_ reply: [String: Any]) -> String { (reply["error"] as? [String: Any])?["message"] as? String ?? "" }

/// A real SQLite file holding one finished run (parameters and outputs with units, `measurements`
/// stored readings), served on a real Unix socket beside it.
struct ServedDatabase {
    let database: LabDatabase
    let server: SocketServer
    let run: Int64
    var path: String { server.path }

    init(measurements: Int = 3) async throws {
        database = try LabDatabase(path: Repository.temporaryDatabase())
        let source = SourceText(path: "reactor-yield.yaml", text: "(not read by the API)", sha256: "0")
        let start = RunStart(campaignID: nil, protocolName: "reactor-yield", protocolSource: source,
                             parameters: [ParameterValue(name: "temperature", value: .quantity(Quantity(80, LabUnit.named("degC")!))),
                                          ParameterValue(name: "stirred", value: .bool(true)),
                                          ParameterValue(name: "solvent", value: .text("water"))],
                             chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "tester",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: 0)
        run = try await database.beginRun(start)
        let readings = (0..<measurements).map {
            MeasurementRecord(stepIndex: 1, channel: ChannelRef(instrument: "spectro", channel: "absorbance"),
                              instrument: "spectro", series: "absorbance", value: 0.5 + Double($0) * 1e-3, unit: "1",
                              wallTime: Date(), monotonicTime: Double($0))
        }
        try await database.record(readings, run: run)
        try await database.finishRun(run, outcome: .completed, outputs: ["yield": Quantity(20.6, LabUnit.named("%")!)], error: nil)
        server = try SocketServer(path: database.path + ".sock", dispatcher: RPCDispatcher(database: database, version: "test"))
    }
}
