import Foundation
import GRDB
import LabDaemon
import LabServer
import LabStorage
import Testing

/// The audit log: append-only in SQLite itself, and written by the daemon for every mutating
/// request and every state change it makes.
@Suite(.serialized) struct AuditLogTests {
    @Test func theAuditLogRefusesToChangeOrDeleteARowThroughSQL() throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        try database.appendAudit(actor: "alice", action: "queue.hold", subject: "queue entry 1", detail: #"{"result":"accepted"}"#)
        for statement in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
            let error = #expect(throws: DatabaseError.self, "\(statement)") { try database.pool.write { try $0.execute(sql: statement) } }
            #expect(error?.message == "the audit log is append-only", "\(statement): \(String(describing: error))")
        }
        let rows = try database.auditEntries()
        #expect(rows.map(\.actor) == ["alice"] && rows.map(\.subject) == ["queue entry 1"])
    }

    /// Answers one line as the socket server does, on a thread of its own (never a cooperative one).
    static func answer(_ dispatcher: RPCDispatcher, _ line: String, as user: String) async -> String {
        await withCheckedContinuation { done in
            Thread {
                let reply = dispatcher.respond(to: Data(line.utf8), caller: RPCCaller(user: user, uid: 1234)) ?? Data()
                done.resume(returning: String(decoding: reply, as: UTF8.self))
            }.start()
        }
    }

    static func detail(_ entry: AuditEntry) -> [String: Any] {
        (entry.detail.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]) ?? [:]
    }

    @Test func requestsToARealDaemonAndWhatTheyChangeLeaveTheirRowsIncludingARefusal() async throws {
        let daemon = try await DaemonTests.daemon()
        let dispatcher = daemon.dispatcher
        let text = try String(contentsOfFile: Repository.path("protocols/reactor-yield.yaml"), encoding: .utf8)
        let file = #"{"path": "/lab/reactor-yield.yaml", "text": \#(DaemonTests.json(text))}"#
        // One entry that waits (not before 2099) and one that runs now.
        let waiting = await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 1, "method": "queue.add", "params": {"protocol": \#(file), "parameters": {"temperature": {"value": 80, "unit": "degC"}, "residence": {"value": 10, "unit": "min"}}, "not_before": "2099-01-01T00:00:00Z", "project": "catalysis"}}"#, as: "alice")
        #expect(waiting.contains(#""run":1"#), "\(waiting)")
        let now = await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 2, "method": "queue.add", "params": {"protocol": \#(file), "parameters": {"temperature": {"value": 60, "unit": "degC"}, "residence": {"value": 1, "unit": "min"}}, "autostart": true}}"#, as: "bob")
        #expect(now.contains(#""run":2"#), "\(now)")
        #expect(await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 3, "method": "queue.hold", "params": {"run": 1}}"#, as: "alice").contains(#""state":"held""#))
        // Held already: refused, and logged as refused with the error the caller got.
        let refused = await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 4, "method": "queue.hold", "params": {"run": 1}}"#, as: "mallory")
        #expect(refused.contains(#""error""#), "\(refused)")
        try await waitFor(seconds: 60) { try daemon.database.run(2)?.endedAt != nil }
        await daemon.shutDown(by: "the test")

        let rows = try daemon.database.auditEntries()
        let seen = rows.map { "\($0.actor) | \($0.action) | \($0.subject)" }
        #expect(seen.first == "daemon | daemon started | daemon")
        #expect(seen.last == "the test | daemon stopped | daemon")
        for expected in ["alice | queue.add | queue entry 1", "daemon | queue entry queued | queue entry 1",
                         "bob | queue.add | queue entry 2", "daemon | run started | run 2",
                         "alice | queue.hold | queue entry 1", "daemon | queue entry held | queue entry 1",
                         "mallory | queue.hold | queue entry 1"] {
            #expect(seen.contains(expected), "no row '\(expected)' in \(seen)")
        }
        let outcome = try #require(try daemon.database.run(2)?.state)
        #expect(seen.contains("daemon | run \(outcome) | run 2"), "\(seen)")
        // The run's start is logged in the transaction that recorded it: nothing of it precedes it.
        #expect(seen.firstIndex(of: "daemon | run started | run 2")! < seen.firstIndex(of: "daemon | run \(outcome) | run 2")!)

        let holds = rows.filter { $0.action == "queue.hold" }.map(Self.detail)
        #expect(holds.map { $0["result"] as? String } == ["accepted", "refused"])
        #expect(((holds[1]["error"] as? [String: Any])?["message"] as? String)?.contains("run 1 is held") == true, "\(holds)")
        #expect((holds[1]["params"] as? [String: Any])?["run"] as? Int == 1)
        let add = try #require(rows.first { $0.action == "queue.add" }.map(Self.detail))
        // The protocol's text is not copied into the log (its entry's row has its hash).
        #expect(((add["params"] as? [String: Any])?["protocol"] as? [String: Any])?["text"] as? String == "(\(text.count) characters)")
        let queued = try #require(rows.first { $0.action == "queue entry queued" }.map(Self.detail))
        #expect(queued["owner"] as? String == "alice" && queued["project"] as? String == "catalysis")
        #expect((queued["protocol_sha256"] as? String)?.count == 64)
    }

    @Test func auditPrintsTheRowsOfOneSubjectAsJSON() async throws {
        let served = try await ClientServeTests.Served()
        let submitted = try await served.client(["submit", "reactor-yield", "--param", "temperature=80 degC",
                                                 "--param", "residence=12", "--not-before", "+2h"])
        #expect(submitted.status == 0, "\(submitted.output)")
        #expect(try await served.client(["release", "1"]).status != 0, "a queued entry cannot be released")
        #expect(try await served.stop() == 0)
        let rows = try #require(try await served.json(["audit", "--subject", "queue entry 1"]) as? [[String: Any]])
        // A request's row follows the state change it made: it is written once the request is answered.
        #expect(rows.map { $0["action"] as? String } == ["queue entry queued", "queue.add", "queue.release"])
        #expect(rows.map { $0["actor"] as? String } == ["daemon", NSUserName(), NSUserName()])
        #expect((rows.last?["detail"] as? [String: Any])?["result"] as? String == "refused")
        let text = try await served.client(["audit", "--since", "1h"])
        #expect(text.output.contains("  daemon  daemon started  daemon  "), "\(text.output)")
        #expect(text.output.contains("daemon stopped  daemon"), "\(text.output)")
    }
}
