import Foundation
import LabCore
import LabDrivers
import LabServer
import LabStorage
import LabSpec
import Testing

// Serialized: the clients block on their sockets, and the tests are not about clients competing.
@Suite(.serialized) struct SocketAPITests {
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
        let runs = try #require((list["result"] as? [String: Any])?["runs"] as? [[String: Any]])
        #expect(runs.count == 1 && runs[0]["id"] as? Int64 == run && runs[0]["state"] as? String == "running")
        #expect((list["result"] as? [String: Any])?["next"] is NSNull)

        let detail = try exchange(path, #"{"jsonrpc":"2.0","id":"a","method":"runs.get","params":{"run":\#(run)}}"#)
        #expect((detail["result"] as? [String: Any])?["measurements"] as? [Any] != nil)

        let missing = try exchange(path, #"{"jsonrpc":"2.0","id":2,"method":"runs.get","params":{"run":999}}"#)
        #expect(errorCode(missing) == -32004)
        let unknown = try exchange(path, #"{"jsonrpc":"2.0","id":3,"method":"runs.delete"}"#)
        #expect(errorCode(unknown) == -32601)
        let garbage = try exchange(path, "{not json")
        #expect(errorCode(garbage) == -32700)
    }

    @Test func aConnectionOverTheLimitIsToldToRetryAndClosedAndAFreedPlaceIsServedAgain() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let server = try SocketServer(path: database.path + ".sock", dispatcher: RPCDispatcher(database: database, version: "test"),
                                      maximumConnections: 2)
        defer { server.stop() }
        let info = #"{"jsonrpc":"2.0","id":1,"method":"server.info"}"# + "\n"
        var held = try (0..<2).map { _ in try SocketClient(server.path) }
        for client in held {   // both are served
            client.send(info)
            #expect(try client.reply()["result"] != nil)
        }
        let refused = try SocketClient(server.path)
        let reply = try refused.reply()
        #expect(errorCode(reply) == -32000)
        #expect(reply["id"] is NSNull)
        #expect(errorMessage(reply) == "the server has too many connections (2 at most); retry later")
        #expect(refused.readLine() == nil, "the connection is closed")
        // Once a client leaves, its place is free again (the server notices the close soon, not at once).
        held.removeFirst()
        try await waitFor {
            let client = try SocketClient(server.path)
            client.send(info)
            return (try? client.reply())?["result"] != nil
        }
    }

    @Test func aClientThatHalfClosesAfterSendingStillGetsEveryReply() async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        // What `echo ... | socat - UNIX-CONNECT:...` does: send, shut down its sending side, then read.
        for _ in 0..<20 {
            let client = try SocketClient(served.path)
            client.send(#"{"jsonrpc":"2.0","id":1,"method":"runs.list"}"# + "\n" + #"{"jsonrpc":"2.0","id":2,"method":"server.info"}"#)
            client.finishSending()
            let ids = client.readToEnd().map { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? Int }
            #expect(ids == [1, 2])  // the last line needs no newline: the end of input ends it
        }
    }

    @Test func aLargeReplyToAClientThatHalfClosedArrivesWhole() async throws {
        // A reply far larger than the socket's buffers: the connection closes only once all of it is sent.
        let served = try await ServedDatabase(measurements: 2000)
        defer { served.server.stop() }
        for attempt in 0..<100 {
            let client = try SocketClient(served.path)
            client.send(#"{"jsonrpc":"2.0","id":1,"method":"runs.get","params":{"run":\#(served.run)}}"# + "\n")
            client.finishSending()
            let lines = client.readToEnd()
            let result = lines.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }?["result"] as? [String: Any]
            #expect((result?["measurements"] as? [Any])?.count == 2000, "attempt \(attempt): \(lines.first?.count ?? 0) bytes")
        }
    }

    @Test func pipelinedRequestsAreAnsweredInTheOrderSent() async throws {
        let served = try await ServedDatabase(measurements: 300)
        defer { served.server.stop() }
        let client = try SocketClient(served.path)
        let count = 200
        // A slow request followed by fast ones: answered concurrently, the fast ones would overtake it.
        let requests = (0..<count).map { i in
            i % 4 == 0 ? #"{"jsonrpc":"2.0","id":\#(i),"method":"runs.get","params":{"run":\#(served.run)}}"#
                       : #"{"jsonrpc":"2.0","id":\#(i),"method":"server.info"}"#
        }
        let sender = Thread { client.send(requests.joined(separator: "\n") + "\n") }
        sender.start()
        var ids: [Int] = []
        for _ in 0..<count { ids.append(try client.reply()["id"] as? Int ?? -1) }
        #expect(ids == Array(0..<count))
    }

    @Test func notificationsAreNotAnswered() async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        let client = try SocketClient(served.path)
        client.send(#"{"jsonrpc":"2.0","method":"server.info"}"# + "\n" + #"{"jsonrpc":"2.0","method":"runs.get","params":{"run":999}}"#
                    + "\n" + #"{"jsonrpc":"2.0","id":7,"method":"server.info"}"# + "\n")
        client.finishSending()
        let lines = client.readToEnd()
        #expect(lines.count == 1)
        #expect(lines.first?.contains(#""id":7"#) == true)
    }

    @Test(arguments: [
        (#"{"campaign":"x"}"#, "runs.list", "'campaign'"),
        (#"{"campain":1}"#, "runs.list", "'campain'"),
        (#"{"campaign":1.5}"#, "runs.list", "'campaign'"),
        (#"[1]"#, "runs.list", "object"),
        (#"{}"#, "runs.get", "'run'"),
        (#"{"run":"1"}"#, "runs.get", "'run'"),
        (#"{"run":1,"series":"absorbance"}"#, "runs.get", "'series'"),
        (#"{"verbose":true}"#, "server.info", "'verbose'"),
        (#"{"limit":10001}"#, "runs.list", "'limit'"),
        (#"{"after":-1}"#, "runs.list", "'after'"),
        (#"{}"#, "runs.readings", "'run'"),
        (#"{"run":1,"limit":10001}"#, "runs.readings", "'limit'"),
        (#"{"run":1,"limit":0}"#, "runs.readings", "'limit'"),
        (#"{"run":1,"limit":"10"}"#, "runs.readings", "'limit'"),
        (#"{"run":1,"after":-5}"#, "runs.readings", "'after'"),
        (#"{"run":1,"series":"no-such-series"}"#, "runs.readings", "'series'"),
        (#"{"run":1,"after":1.5}"#, "runs.readings", "'after'"),
        (#"{"run":1,"series":7}"#, "runs.readings", "'series'"),
        (#"{"run":1,"offset":100}"#, "runs.readings", "'offset'"),
    ])
    func wrongParametersAreRefusedNamingTheParameter(params: String, method: String, named: String) async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        let reply = try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)","params":\#(params)}"#)
        #expect(errorCode(reply) == -32602, "\(reply)")
        #expect(errorMessage(reply).contains(named), "\(errorMessage(reply))")
        #expect(reply["result"] == nil)
    }

    @Test func runsAreListedInPagesAndReadingsOfAnUnknownRunAreNotFound() async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        for _ in 0..<2 { _ = try await served.database.beginRun(RunStart(
            campaignID: nil, protocolName: "more", protocolSource: SourceText(path: "more.yaml", text: "", sha256: "0"), parameters: [],
            chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "tester", softwareVersion: "test", startedAt: Date(),
            startedMonotonic: 0)) }
        var ids: [Int64] = []
        var after: Int64 = 0
        for expected in [2, 1] {
            let result = try #require(try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"runs.list","params":{"after":\#(after),"limit":2}}"#)["result"] as? [String: Any])
            let runs = try #require(result["runs"] as? [[String: Any]])
            #expect(runs.count == expected)
            ids += runs.compactMap { $0["id"] as? Int64 }
            after = result["next"] as? Int64 ?? -1
        }
        #expect(ids == [1, 2, 3] && after == -1, "the last page's next is null")
        let missing = try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"runs.readings","params":{"run":99}}"#)
        #expect(errorCode(missing) == -32004 && errorMessage(missing) == "no run 99")
    }

    @Test func numbersAreReturnedWithTheirUnits() async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        let reply = try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"runs.get","params":{"run":\#(served.run)}}"#)
        let result = try #require(reply["result"] as? [String: Any])
        let parameters = try #require(result["parameters"] as? [String: Any])
        let temperature = try #require(parameters["temperature"] as? [String: Any])
        #expect(temperature["value"] as? Double == 80 && temperature["unit"] as? String == "degC")
        #expect(parameters["stirred"] as? Bool == true && parameters["solvent"] as? String == "water")
        let yield = try #require((result["outputs"] as? [String: Any])?["yield"] as? [String: Any])
        #expect(yield["value"] as? Double == 20.6 && yield["unit"] as? String == "%")
        let measurement = try #require((result["measurements"] as? [[String: Any]])?.first)
        #expect(measurement["unit"] as? String == "1")
    }

    @Test(arguments: [
        (#"{"id":1,"method":"server.info"}"#, -32600, "1"),                  // no jsonrpc
        (#"{"jsonrpc":"1.0","id":1,"method":"server.info"}"#, -32600, "1"),
        (#"{"jsonrpc":"2.0","id":1.5,"method":"server.info"}"#, -32600, "null"),
        (#"{"jsonrpc":"2.0","id":{},"method":"server.info"}"#, -32600, "null"),
        (#"{"jsonrpc":"2.0","id":[1],"method":"server.info"}"#, -32600, "null"),
        (#"{"jsonrpc":"2.0","id":1,"method":5}"#, -32600, "1"),
        (#"[{"jsonrpc":"2.0","id":1,"method":"server.info"}]"#, -32600, "null"),
        (#"42"#, -32600, "null"),
        (#"{"jsonrpc":"2.0","id":1,"method":"server.info""#, -32700, "null"),  // cut short
        ("\u{FF}", -32700, "null"),
    ])
    func aRequestThatIsJSONButNotJSONRPCIsInvalidNotUnparseable(request: String, code: Int, id: String) async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        let client = try SocketClient(served.path)
        client.send(request + "\n")
        let line = try #require(client.readLine())
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(errorCode(reply) == code, "\(line)")
        #expect(line.contains(#""id":\#(id)"#), "\(line)")  // an error reply still carries an id, null if unreadable
        #expect(reply["jsonrpc"] as? String == "2.0")
    }

    @Test func idsMayBeStringsIntegersOrNull() async throws {
        let served = try await ServedDatabase()
        defer { served.server.stop() }
        for (id, echoed) in [(#""abc""#, #""id":"abc""#), ("-12", #""id":-12"#), ("null", #""id":null"#)] {
            let client = try SocketClient(served.path)
            client.send(#"{"jsonrpc":"2.0","id":\#(id),"method":"server.info"}"# + "\n")
            let line = try #require(client.readLine())
            #expect(line.contains(echoed) && line.contains(#""result""#), "\(line)")
        }
    }

    @Test func aLineOfExactlyTheLimitIsAnsweredAndOneByteMoreIsRefused() async throws {

        let served = try await ServedDatabase()
        defer { served.server.stop() }
        @Sendable func padded(to length: Int) -> String {
            let request = #"{"jsonrpc":"2.0","id":1,"method":"server.info"}"#
            return request + String(repeating: " ", count: length - request.utf8.count)
        }

        #expect(SocketServer.maximumLineBytes == mebibyte)
        let atLimit = try SocketClient(served.path)
        atLimit.send(padded(to: mebibyte) + "\n")
        #expect(try atLimit.reply()["result"] != nil)

        let over = try SocketClient(served.path)
        let sender = Thread { over.send(padded(to: mebibyte + 1) + "\n") }
        sender.start()
        let refusal = try over.reply()
        #expect(errorCode(refusal) == -32600 && errorMessage(refusal).contains("1048576"), "\(refusal)")
        #expect(over.readLine() == nil)  // and the connection is closed
    }
}
