import Foundation
import GRDB
@testable import LabStorage
import Testing

/// `runs.readings` and run provenance, against `serendip serve` on the toy lab (simulators over
/// Modbus TCP and pseudo-terminals), through its Unix socket; what is stored is read with SQL.
@Suite(.serialized) struct PagedReadingsTests {
    /// Many steps, each committing its readings: the run writes for seconds while it is paged.
    static let sampling = """
        serendip: 1
        name: paged-readings
        instruments:
          reactor: thermo-reactor
          spectro: uv-vis
        steps:
          - set: spectro.lamp
            to: true
          - repeat: 80
            steps:
              - measure: { channel: reactor.temperature, as: t, repeat: 5, every: 30 s }
              - measure: { channel: spectro.absorbance, as: a }
        finally:
          - set: spectro.lamp
            to: false
        """

    /// The balance's driver declares no identity query.
    static let weighing = """
        serendip: 1
        name: weigh
        instruments:
          balance: balance
        steps:
          - measure: { channel: balance.mass, as: m, repeat: 2, every: 1 s }
        """

    struct Served {
        let serve: Child
        let socket: String
        let database: String
        let data: String
        let directory: URL

        init() async throws {
            directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
            data = directory.appendingPathComponent("data").path
            serve = try Child(["serve", "--lab", DaemonTests.lab, "--data", data], output: directory.appendingPathComponent("serve.log"))
            socket = data + "/serendip.sock"
            database = data + "/serendip.sqlite"
            let socket = socket
            try await waitFor { FileManager.default.fileExists(atPath: socket) }
        }

        func call(_ client: SocketClient, _ method: String, _ params: String) throws -> [String: Any] {
            client.send(#"{"jsonrpc": "2.0", "id": 1, "method": "\#(method)", "params": \#(params)}"# + "\n")
            return try client.reply()
        }

        func queue(_ text: String, project: String? = nil) throws -> Int64 {
            let reply = try call(SocketClient(socket), "queue.add",
                                 #"{"protocol": {"path": "test.yaml", "text": \#(DaemonTests.json(text))}\#(project.map { #", "project": "\#($0)""# } ?? "")}"#)
            return try #require((reply["result"] as? [String: Any])?["run"] as? Int64, "\(reply)")
        }

        func sql<T>(_ body: (Database) throws -> T) throws -> T { try DaemonTests.readOnly(database, body) }

        func stop() async throws {
            serve.signal(SIGTERM)
            _ = try await serve.exitStatus()
        }
    }

    /// A page deep into a million readings costs its own rows: each statement walks an index from the
    /// cursor, with no sort of the run's readings and no scan of the table.
    @Test func aPageOfReadingsIsFoundThroughAnIndexFromItsCursorNeverBySortingTheRun() throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        for sql in [LabDatabase.readingsPage, LabDatabase.seriesReadingsPage] {
            let plan = try database.pool.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: sql.contains("series") ? [1, "a", 0, 10] : [1, 0, 10])
                    .map { $0["detail"] as String }.joined(separator: "; ")
            }
            #expect(plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"), "\(plan)")
            #expect(plan.contains("id>?") && !plan.contains("TEMP B-TREE") && !plan.hasPrefix("SCAN"), "\(plan)")
        }
    }

    /// A reading as docs/api.md describes it. Decoded with JSONDecoder: Foundation's JSONSerialization
    /// on Linux reads some doubles one unit in the last place off.
    struct Reading: Decodable, Equatable {
        var id: Int64, step: Int, instrument: String, role: String, channel: String, series: String
        var value: Double, unit: String, time: String, monotonic_time: Double
    }

    struct Reply: Decodable {
        struct Page: Decodable { var readings: [Reading]; var next: Int64? }
        var result: Page?
    }

    /// The stored readings of a run as the test reads them itself.
    static func stored(_ served: Served, run: Int64, series: String? = nil) throws -> [Reading] {
        try served.sql { db in
            try Row.fetchAll(db, sql: """
                SELECT id, step_index, instrument, role, channel, series, value, unit, wall_time, monotonic_time FROM measurement
                WHERE run_id = ? AND (? IS NULL OR series = ?) ORDER BY id
                """, arguments: [run, series, series]).map { row in
                Reading(id: row["id"], step: row["step_index"], instrument: row["instrument"], role: row["role"], channel: row["channel"],
                        series: row["series"], value: row["value"], unit: row["unit"], time: row["wall_time"],
                        monotonic_time: row["monotonic_time"])
            }
        }
    }

    /// One page: the readings, and `next`, which must be present (null or a number), never left out.
    static func page(_ served: Served, _ client: SocketClient, _ params: String) throws -> (readings: [Reading], next: Int64?) {
        client.send(#"{"jsonrpc": "2.0", "id": 1, "method": "runs.readings", "params": \#(params)}"# + "\n")
        let line = try #require(client.readLine())
        let raw = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let result = try #require(raw["result"] as? [String: Any], "\(line.prefix(300))")
        #expect(result["next"] != nil, "next is null or a cursor, never left out")
        let page = try #require(try JSONDecoder().decode(Reply.self, from: Data(line.utf8)).result)
        return (page.readings, page.next)
    }

    /// The first difference only: a thousand readings printed whole help nobody.
    static func expectSame(_ served: [Reading], _ stored: [Reading], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(served.count == stored.count, sourceLocation: sourceLocation)
        if let i = served.indices.first(where: { $0 < stored.count && served[$0] != stored[$0] }) {
            Issue.record("reading \(i) differs: served \(served[i]), stored \(stored[i])", sourceLocation: sourceLocation)
        }
    }

    @Test func pagesOfARunStillWritingConcatenateToExactlyItsStoredReadingsNoneSkippedNoneRepeated() async throws {
        let served = try await Served()
        let run = try served.queue(Self.sampling)
        let client = try SocketClient(served.socket)
        var readings: [Reading] = []
        var after: Int64 = 0
        var pagesAtTheEndOfARunningRun = 0
        var pages = 0
        while pages < 100_000 {
            let page = try Self.page(served, client, #"{"run": \#(run), "after": \#(after), "limit": 7}"#)
            #expect(page.readings.count <= 7)
            readings += page.readings
            pages += 1
            guard let next = page.next else { break }
            if page.readings.count < 7 {
                pagesAtTheEndOfARunningRun += 1
                try await Task.sleep(for: .milliseconds(5))
            }
            after = next
        }
        #expect(try served.sql { try String.fetchOne($0, sql: "SELECT state FROM run WHERE id = ?", arguments: [run]) } == "completed")
        #expect(pagesAtTheEndOfARunningRun > 0, "some pages were asked for while the run was still writing")
        let stored = try Self.stored(served, run: run)
        #expect(stored.count == 80 * 6)
        Self.expectSame(readings, stored)
        // One series alone, in one page as large as allowed.
        let series = try Self.page(served, client, #"{"run": \#(run), "series": "a", "limit": 10000}"#)
        Self.expectSame(series.readings, try Self.stored(served, run: run, series: "a"))
        #expect(series.next == nil)
        try await served.stop()
    }

    @Test func aRunStoresItsHostBuildProjectAndEachDevicesAnswerToItsIdentityQuery() async throws {
        let served = try await Served()
        let sampled = try served.queue(Self.sampling, project: "catalysis")
        let weighed = try served.queue(Self.weighing)
        try await waitFor(seconds: 120) {
            try served.sql { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM run WHERE state != 'running'") } == 2
        }
        let run = try #require(try served.sql { try Row.fetchOne($0, sql: "SELECT * FROM run WHERE id = ?", arguments: [sampled]) })
        #expect(run["state"] as String == "completed")
        #expect(run["host"] as String? == ProcessInfo.processInfo.hostName)
        #expect(run["project"] as String? == "catalysis")
        #expect(run["software_build"] as String? == "build-id:" + (try Self.buildID(of: Child.executable)), "\(run)")
        let devices = try served.sql {
            try Row.fetchAll($0, sql: "SELECT role, device_query, device_answer FROM run_instrument WHERE run_id = ? ORDER BY role",
                             arguments: [sampled]).map { row -> [String] in
                                 [row["role"], row["device_query"] ?? "none", row["device_answer"] ?? "none"] }
        }
        #expect(devices == [["reactor", "holding 900 × 20", "Serendip,SIM-THERMO-REACTOR,0001,1.0"],
                            ["spectro", "*IDN?", "Serendip,SIM-UV-VIS,0001,1.0"]])
        // A driver without an identity query: nothing asked, nothing stored, and the run goes on.
        let balance = try served.sql {
            try Row.fetchOne($0, sql: """
                SELECT run.state, device_query, device_answer FROM run JOIN run_instrument ON run_id = run.id WHERE run.id = ?
                """, arguments: [weighed])
        }
        #expect(balance?["state"] as String? == "completed")
        #expect(balance?["device_query"] as String? == nil && balance?["device_answer"] as String? == nil)
        try await served.stop()
        // What show and export print of it.
        let show = try Child(["show", "\(sampled)", "--data", served.data], output: served.directory.appendingPathComponent("show.txt"))
        #expect(try await show.exitStatus() == 0)
        let shown = try show.output()
        #expect(shown.contains("spectro: spectro at ") && shown.contains(", *IDN? → 'Serendip,SIM-UV-VIS,0001,1.0'"), "\(shown)")
        #expect(shown.contains("host      \(ProcessInfo.processInfo.hostName)\n") && shown.contains(" (build-id:"), "\(shown)")
        let export = try Child(["export", "\(sampled)", "\(weighed)", "--format", "jsonl", "--data", served.data],
                               output: served.directory.appendingPathComponent("export.jsonl"))
        #expect(try await export.exitStatus() == 0)
        let runs = try export.output().split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["type"] as? String == "run" }
        #expect(runs.count == 2)
        #expect(runs.first?["host"] as? String == ProcessInfo.processInfo.hostName)
        #expect((runs.first?["software_build"] as? String)?.hasPrefix("build-id:") == true)
        let instruments = runs.map { $0["instruments"] as? [String: [String: Any]] ?? [:] }
        #expect(instruments.first?["reactor"]?["device_answer"] as? String == "Serendip,SIM-THERMO-REACTOR,0001,1.0")
        #expect(instruments.last?["balance"]?["device_answer"] is NSNull && instruments.last?["balance"]?["device_query"] is NSNull)
    }

    /// As binutils reads it: not the code under test.
    static func buildID(of file: URL) throws -> String {
        let text = try runToEnd("/usr/bin/readelf", ["-n", file.path]).output
        let line = try #require(text.split(separator: "\n").first { $0.contains("Build ID: ") })
        return String(line.split(separator: " ").last ?? "")
    }
}
