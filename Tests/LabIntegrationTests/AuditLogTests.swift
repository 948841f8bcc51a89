import Foundation
import GRDB
import LabCore
import LabDaemon
import LabScheduler
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

    @Test func aPausedResumedAndAbortedRunLeavesEachStateChangeAboutTheRun() async throws {
        let daemon = try await DaemonTests.daemon()
        let dispatcher = daemon.dispatcher
        let long = "serendip: 1\nname: long-hold\ninstruments: { reactor: thermo-reactor }\nsteps:\n  - hold: 1000 h\n"
        let added = await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 1, "method": "queue.add", "params": {"protocol": {"path": "/lab/long.yaml", "text": \#(DaemonTests.json(long))}}}"#, as: "alice")
        #expect(added.contains(#""run":1"#), "\(added)")
        try await waitFor { try daemon.database.run(1)?.state == "running" }
        for (id, method, params) in [(2, "runs.pause", #"{"run": 1, "now": true}"#), (3, "runs.resume", #"{"run": 1}"#),
                                     (4, "runs.abort", #"{"run": 1}"#)] {
            let reply = await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": \#(id), "method": "\#(method)", "params": \#(params)}"#, as: "alice")
            #expect(reply.contains(#""result""#), "\(method): \(reply)")
            if method == "runs.pause" { try await waitFor { try await daemon.scheduler.entry(1)?.state == .paused } }
        }
        try await waitFor { try daemon.database.run(1)?.state == "aborted" }
        await daemon.shutDown(by: "the test")
        let rows = try daemon.database.auditEntries(subject: "run 1")
        // The daemon stores a pause or resume just after it answers: each request's row and its change
        // may come either way round, but each kind comes in order.
        let changes = rows.filter { $0.actor == "daemon" }, requests = rows.filter { $0.actor == "alice" }
        #expect(changes.map(\.action) == ["run started", "run paused", "run resumed", "run aborted"])
        #expect(requests.map(\.action) == ["runs.pause", "runs.resume", "runs.abort"])
        #expect(rows.count == 7)
        #expect(Self.detail(changes[1])["note"] as? String == "paused by alice (runs.pause)")
        #expect((Self.detail(changes[3])["error"] as? String)?.contains("alice") == true, "\(changes[3])")
    }

    @Test func anAlertsLifeIsLoggedInTheTransactionsThatStoreIt() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let alert = try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "141 degC, above 140 degC")
        try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "141 degC, above 140 degC", run: 4)
        try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "141 degC, above 140 degC", run: 4)
        try await database.markAlertCleared(.interlock, subject: "reactor-hot")
        try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "142 degC, above 140 degC")
        try await database.markAlertCleared(.interlock, subject: "reactor-hot")
        _ = try await database.acknowledgeAlert(alert.id, by: "alice")
        // A refused acknowledgement changes nothing, so the store logs nothing (the request's row says it was refused).
        _ = try? await database.acknowledgeAlert(alert.id, by: "bob")
        let rows = try database.auditEntries(subject: "alert \(alert.id)")
        #expect(rows.map(\.action) == ["alert raised", "alert affects run", "alert cleared", "alert holds again", "alert cleared",
                                       "alert acknowledged"])
        #expect(Self.detail(rows[1])["run"] as? Int == 4)
        #expect(Self.detail(rows[5])["by"] as? String == "alice")
    }
}
