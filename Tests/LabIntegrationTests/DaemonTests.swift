import Foundation
import GRDB
import Glibc
import LabCore
import LabDaemon
import LabScheduler
import LabServer
import LabStorage
import Testing

/// The daemon on the example lab (four reaction stations over the real transports).
@Suite(.serialized) struct DaemonTests {
    static let lab = Repository.path("examples/toy-lab/lab.yaml")
    static let campaign = Repository.path("examples/toy-lab/campaign.yaml")

    static func daemon() async throws -> Daemon {
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent().appendingPathComponent("data")
        return try await Daemon(Daemon.Options(labPath: lab, dataDirectory: directory.path))
    }

    /// Each run of a campaign: when it started and ended, and its proposal.
    static func runs(of campaign: Int64, in daemon: Daemon) async throws -> [(start: String, end: String, proposal: String?)] {
        try await daemon.database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT started_at, ended_at, proposal_id FROM run WHERE campaign_id = ? ORDER BY started_at",
                             arguments: [campaign]).map { ($0["started_at"], $0["ended_at"], $0["proposal_id"]) }
        }
    }

    @Test func anOptimisationCampaignKeepsAllFourReactorsBusy() async throws {
        let daemon = try await Self.daemon()
        let text = try String(contentsOfFile: Self.campaign, encoding: .utf8)
        let id = try await daemon.campaigns.start(text: text, path: Self.campaign, protocolText: nil, owner: "tester", needsApproval: false)
        try await waitFor(seconds: 60) { try daemon.database.daemonCampaign(id)?.state == "finished" }
        let runs = try await Self.runs(of: id, in: daemon)
        #expect(runs.count == 20)
        // Every run ran to its end. (At 3000× a loaded machine can make the hottest run's heating miss
        // its 20-minute wait: that run fails, which is the chemistry, not the scheduling.)
        #expect(try daemon.database.runs(campaign: id).allSatisfy { $0.state == "completed" || $0.state == "failed" })
        #expect(try daemon.database.runs(campaign: id).filter { $0.state == "completed" }.count >= 15)
        // The most runs going at one moment: every reactor at once.
        let most = runs.map { run in runs.filter { $0.start <= run.start && run.start < $0.end }.count }.max()
        #expect(most == 4)
        #expect(runs.allSatisfy { $0.proposal != nil }, "every run records the proposal that produced it")
        await daemon.shutDown(by: "the test")
    }

    /// `batch_size: 1` in the file runs one experiment at a time, however many stations are free.
    @Test func aCampaignWithABatchSizeOfOneRunsOneExperimentAtATime() async throws {
        let daemon = try await Self.daemon()
        let text = try String(contentsOfFile: Self.campaign, encoding: .utf8)
            .replacingOccurrences(of: "  budget: 20\n", with: "  budget: 6\n  batch_size: 1\n")
        let id = try await daemon.campaigns.start(text: text, path: Self.campaign, protocolText: nil, owner: "tester", needsApproval: false)
        try await waitFor(seconds: 60) { try daemon.database.daemonCampaign(id)?.state == "finished" }
        let runs = try await Self.runs(of: id, in: daemon)
        #expect(runs.count == 6)
        #expect(runs.allSatisfy { run in runs.filter { $0.start <= run.start && run.start < $0.end }.count == 1 }, "\(runs)")
        await daemon.shutDown(by: "the test")
    }

    @Test func aCampaignNeedingApprovalWaitsForAPersonAndARejectedProposalIsReplaced() async throws {
        let daemon = try await Self.daemon()
        let text = try String(contentsOfFile: Self.campaign, encoding: .utf8)
        let id = try await daemon.campaigns.start(text: text, path: Self.campaign, protocolText: nil, owner: "tester", needsApproval: true)
        try await waitFor { try await daemon.scheduler.open().filter { $0.state == .awaitingApproval }.count == 4 }
        #expect(try daemon.database.runs().isEmpty, "nothing runs before a person approves")
        let waiting = try await daemon.scheduler.open().map(\.id).sorted()
        _ = try await daemon.scheduler.apply(.approve, to: waiting[0], by: "alice")
        _ = try await daemon.scheduler.apply(.reject, to: waiting[1], by: "alice")
        try await waitFor { try daemon.database.run(waiting[0])?.state == "completed" }
        // The rejected proposal is replaced by a new one, also waiting for approval.
        try await waitFor { try await daemon.scheduler.open().filter { $0.state == .awaitingApproval }.count == 4 }
        #expect(try daemon.database.runs().map(\.id) == [waiting[0]])
        #expect(try await daemon.campaigns.status(id)?.experiments.count == 1)
        await daemon.shutDown(by: "the test")
    }

    @Test func aStoppedCampaignIsResumedOnlyOnceItsRunsHaveEndedAndThenFinishesItsBudget() async throws {
        let daemon = try await Self.daemon()
        let text = try String(contentsOfFile: Self.campaign, encoding: .utf8)
        let id = try await daemon.campaigns.start(text: text, path: Self.campaign, protocolText: nil, owner: "tester",
                                                  needsApproval: false, budget: 8)
        try await waitFor { try daemon.database.queueEntries(states: [.running], campaign: id).count == 4 }
        try await daemon.campaigns.stop(id, by: "tester")
        let early = await #expect(throws: LabError.self) { try await daemon.campaigns.resume(id, by: "tester") }
        #expect(early?.code == .conflict && early?.message.contains("is still running") == true, "\(String(describing: early))")
        try await waitFor { try daemon.database.queueEntries(states: [.running], campaign: id).isEmpty }
        try await daemon.campaigns.resume(id, by: "tester")
        try await waitFor(seconds: 60) { try daemon.database.daemonCampaign(id)?.state == "finished" }
        #expect(try daemon.database.runs(campaign: id).filter { $0.state == "completed" }.count == 8)
        await daemon.shutDown(by: "the test")
    }

    @Test func aSecondDaemonOnTheSameDataDirectoryIsRefusedNamingTheFirst() async throws {
        let first = try await Self.daemon()
        let refused = await #expect(throws: LabError.self) {
            _ = try await Daemon(Daemon.Options(labPath: Self.lab, dataDirectory: first.layout.directory))
        }
        #expect(refused?.message.contains("another Serendip daemon (process \(getpid())) owns") == true, "\(String(describing: refused))")
        await first.shutDown(by: "the test")
    }

    @Test func sigtermStopsServeWithStatusZeroAndTheDatabaseIntact() async throws {
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
        let data = directory.appendingPathComponent("data").path
        let serve = try Child(["serve", "--lab", Self.lab, "--data", data], output: directory.appendingPathComponent("serve.log"))
        let socket = data + "/serendip.sock"
        try await waitFor { FileManager.default.fileExists(atPath: socket) }
        // A long run, so that SIGTERM finds it running.
        let protocolText = try String(contentsOfFile: Repository.path("protocols/reactor-yield.yaml"), encoding: .utf8)
        let client = try SocketClient(socket)
        client.send(#"{"jsonrpc": "2.0", "id": 1, "method": "queue.add", "params": {"protocol": {"path": "reactor-yield.yaml", "text": \#(Self.json(protocolText))}, "parameters": {"temperature": {"value": 80, "unit": "degC"}, "residence": {"value": 30, "unit": "min"}}}}"# + "\n")
        let reply = client.readLine()
        #expect(reply?.contains(#""run":1,"#) == true, "\(reply ?? "no reply")")
        let database = data + "/serendip.sqlite"
        try await waitFor { try Self.readOnly(database) { try String.fetchOne($0, sql: "SELECT state FROM run WHERE id = 1") } == "running" }
        let readingsBefore = try Self.readOnly(database) { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM measurement") } ?? 0
        serve.signal(SIGTERM)
        #expect(try await serve.exitStatus() == 0)
        // Everything is in the database file itself: a copy of it alone holds every run.
        #expect(((try? FileManager.default.attributesOfItem(atPath: database + "-wal"))?[.size] as? Int ?? 0) == 0)
        #expect(try Self.readOnly(database) { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
        // Paused, not aborted: its instruments safe, everything it recorded kept.
        #expect(try Self.readOnly(database) { try String.fetchOne($0, sql: "SELECT state FROM queue_entry WHERE id = 1") } == "paused")
        let events = try Self.readOnly(database) { try String.fetchAll($0, sql: "SELECT message FROM run_event WHERE run_id = 1") }
        #expect(events.contains { $0.hasPrefix("running → pausing: SIGTERM from process \(getpid()) (user ") })
        #expect(events.contains("reactor in safe state (paused)") && events.contains("spectro in safe state (paused)"))
        #expect(try Self.readOnly(database) { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM measurement") } ?? 0 >= readingsBefore)
        #expect(!FileManager.default.fileExists(atPath: socket))
        // The next daemon does not resume it by itself: it is interrupted, its instruments made safe first,
        // and it ended at its pause (no instrument time is counted while no daemon ran), not by a crash.
        let paused = try Self.readOnly(database) { try String.fetchOne($0, sql: "SELECT max(wall_time) FROM run_event WHERE run_id = 1") }
        let next = try await Daemon(Daemon.Options(labPath: Self.lab, dataDirectory: data))
        #expect(try await next.scheduler.entry(1)?.state == .interrupted)
        #expect(try next.database.run(1)?.state == "interrupted")
        #expect(try next.database.run(1)?.endedAt == paused)
        #expect(try next.database.run(1)?.error?.hasPrefix(LabDatabase.stoppedWhilePausedError) == true)
        #expect(try next.database.events(run: 1).contains { $0.message == "after a restart: reactor in safe state" })
        await next.shutDown(by: "the test")
    }

    @Test func aThousandRunsOfOneProtocolAreQueuedInOneCallWithTheProtocolSentOnce() async throws {
        let daemon = try await Self.daemon()
        let text = try String(contentsOfFile: Repository.path("protocols/reactor-yield.yaml"), encoding: .utf8)
        let item = #"{"parameters": {"temperature": {"value": 80, "unit": "degC"}, "residence": {"value": 10, "unit": "min"}}, "not_before": "2099-01-01T00:00:00Z"}"#
        let request = #"{"jsonrpc": "2.0", "id": 7, "method": "queue.add_many", "params": {"protocol": {"path": "/lab/reactor-yield.yaml", "text": \#(Self.json(text))}, "items": [\#(Array(repeating: item, count: 1000).joined(separator: ","))]}}"#
        let reply = await Self.answer(RPCDispatcher(daemon.methods), request)
        let result = try #require(try JSONSerialization.jsonObject(with: reply) as? [String: Any])["result"] as? [[String: Any]]
        #expect(result?.count == 1000, "\(String(decoding: reply.prefix(600), as: UTF8.self))")
        #expect(Set(result?.compactMap { $0["state"] as? String } ?? []) == ["queued"])
        #expect(try await daemon.scheduler.open().count == 1000)
        // Without the call's protocol, an item that names none is refused, naming the item.
        let refused = await Self.answer(RPCDispatcher(daemon.methods), #"{"jsonrpc": "2.0", "id": 8, "method": "queue.add_many", "params": {"items": [\#(item)]}}"#)
        #expect(String(decoding: refused, as: UTF8.self).contains("no protocol"))
        await daemon.shutDown(by: "the test")
    }

    @Test func eachRunControlMethodTakesOnlyItsOwnParameters() async throws {
        let daemon = try await Self.daemon()
        let dispatcher = RPCDispatcher(daemon.methods)
        for (method, params) in [("runs.abort", #"{"run": 1, "repeat_step": true}"#), ("runs.halt", #"{"run": 1, "now": true}"#),
                                 ("runs.resume", #"{"run": 1, "now": true}"#), ("runs.pause", #"{"run": 1, "repeat_step": true}"#)] {
            let reply = String(decoding: await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 1, "method": "\#(method)", "params": \#(params)}"#),
                               as: UTF8.self)
            #expect(reply.contains("-32602") && reply.contains("unknown parameter"), "\(method): \(reply)")
        }
        // A run that has not started says so, and what to do instead.
        let reply = String(decoding: await Self.answer(dispatcher, #"{"jsonrpc": "2.0", "id": 2, "method": "runs.pause", "params": {"run": 99}}"#),
                           as: UTF8.self)
        #expect(reply.contains("there is no run 99"), "\(reply)")
        await daemon.shutDown(by: "the test")
    }

    /// The dispatcher blocks its thread until the method is done, as the server's threads do: never a cooperative one.
    static func answer(_ dispatcher: RPCDispatcher, _ line: String) async -> Data {
        await withCheckedContinuation { done in
            Thread { done.resume(returning: dispatcher.respond(to: Data(line.utf8), caller: RPCCaller(user: "tester", uid: 0)) ?? Data()) }.start()
        }
    }

    static func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }

    static func readOnly<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        return try DatabaseQueue(path: path, configuration: configuration).read(body)
    }
}
