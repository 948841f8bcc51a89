import Foundation
import Glibc
import LabAPI
import LabCore
import LabDrivers
import LabServer
import LabStorage
import LabSpec
import Testing

/// A minimal client: one line out, one line back, over a Unix domain socket.
func exchange(_ path: String, _ request: String) throws -> [String: Any] {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { throw LabError(.transport, "connect failed") }
    let line = Array((request + "\n").utf8)
    _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var reply: [UInt8] = [], byte: UInt8 = 0
    while read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { reply.append(byte) }
    return try JSONSerialization.jsonObject(with: Data(reply)) as! [String: Any]
}

@Suite struct SocketAPITests {
    @Test func answersTheDocumentedRequestsOverAUnixSocket() async throws {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        let run = try await fixture.database.beginRun(fixture.start(
            try LabSpec.ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml")), [:]))
        let path = fixture.database.path + ".sock"
        let server = try SocketServer(path: path, dispatcher: RPCDispatcher(database: fixture.database, version: "test"))
        defer { server.stop() }

        let list = try exchange(path, #"{"jsonrpc":"2.0","id":1,"method":"runs.list"}"#)
        #expect(list["id"] as? Int == 1)
        let runs = try #require(list["result"] as? [[String: Any]])
        #expect(runs.count == 1 && runs[0]["id"] as? Int64 == run && runs[0]["state"] as? String == "running")

        let detail = try exchange(path, #"{"jsonrpc":"2.0","id":"a","method":"runs.get","params":{"run":\#(run)}}"#)
        #expect((detail["result"] as? [String: Any])?["measurements"] as? [Any] != nil)

        let missing = try exchange(path, #"{"jsonrpc":"2.0","id":2,"method":"runs.get","params":{"run":999}}"#)
        #expect((missing["error"] as? [String: Any])?["code"] as? Int == -32004)
        let unknown = try exchange(path, #"{"jsonrpc":"2.0","id":3,"method":"runs.delete"}"#)
        #expect((unknown["error"] as? [String: Any])?["code"] as? Int == -32601)
        let garbage = try exchange(path, "{not json")
        #expect((garbage["error"] as? [String: Any])?["code"] as? Int == -32700)
    }
}
