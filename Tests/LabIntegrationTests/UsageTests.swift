import Foundation
import GRDB
import LabCore
import LabDaemon
import LabStorage
import Testing

/// `serendip usage` on runs with known instrument intervals, written to a real database through the
/// store's own calls (only the end times are set by SQL, to known values).
@Suite struct UsageTests {
    struct Recorded {
        var user: String
        var project: String?
        var instruments: [String]
        var start: Date
        /// nil: still running.
        var end: Date?
    }

    static let t0 = Date(timeIntervalSince1970: 1_768_003_200)   // 2026-01-10T00:00:00Z
    static func at(_ hours: Double) -> Date { t0.addingTimeInterval(hours * 3600) }
    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    /// Overlapping runs on different instruments by different users and projects; one began before
    /// the window, one is still running, one has no project.
    static let runs = [
        Recorded(user: "alice", project: "catalysis", instruments: ["reactor", "spectro"], start: at(1), end: at(4)),
        Recorded(user: "bob", project: "polymers", instruments: ["reactor2"], start: at(2), end: at(6.25)),
        Recorded(user: "alice", project: "polymers", instruments: ["reactor2", "spectro2"], start: at(7), end: at(9)),
        Recorded(user: "carol", project: nil, instruments: ["reactor"], start: at(-2), end: at(0.5)),
        Recorded(user: "bob", project: "catalysis", instruments: ["reactor3"], start: at(8), end: nil),
        Recorded(user: "dave", project: "catalysis", instruments: ["reactor4"], start: at(20), end: at(21)),
    ]

    /// A data directory whose database holds `runs`, kept open as a daemon would (a reader opened
    /// just as the last writer closes it may find it locked).
    static func dataDirectory() async throws -> (directory: String, database: LabDatabase) {
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent().path
        let database = try LabDatabase(path: Daemon.Layout(directory).database)
        let source = SourceText(path: "/lab/p.yaml", text: "name: p", sha256: String(repeating: "0", count: 64))
        for recorded in runs {
            let entry = try await database.enqueue([Submission(protocolSource: source, protocolName: "p", parameters: [:],
                                                               owner: recorded.user, project: recorded.project)])[0]
            let instruments = Dictionary(uniqueKeysWithValues: recorded.instruments.enumerated().map { index, name in
                ("role\(index)", InstrumentIdentity(name: name, driver: "d", driverSHA256: "", address: "sim"))
            })
            let run = try await database.beginRun(RunStart(
                campaignID: nil, protocolName: "p", protocolSource: source, parameters: [], chosenBy: "user", proposalID: nil,
                instruments: instruments, operatorName: recorded.user, softwareVersion: "test", startedAt: recorded.start,
                startedMonotonic: 0, queueEntryID: entry.id))
            if let end = recorded.end {
                try await database.finishRun(run, outcome: .completed, outputs: [:], error: nil)
                try await database.pool.write { db in
                    try db.execute(sql: "UPDATE run SET ended_at = ? WHERE id = ?", arguments: [end.formatted(.iso8601), run])
                }
            }
        }
        return (directory, database)
    }

    /// The expected instrument-hours per group, computed from `runs` alone.
    static func expected(from: Date, to: Date, now: Date, by key: (Recorded, String) -> String) -> [String: Double] {
        var hours: [String: Double] = [:]
        for run in runs {
            let start = max(run.start, from), end = min(run.end ?? now, to)
            guard start < end else { continue }
            for instrument in run.instruments { hours[key(run, instrument), default: 0] += end.timeIntervalSince(start) / 3600 }
        }
        return hours
    }

    /// `serendip usage … --format csv`, parsed: hours per group.
    static func report(_ directory: String, from: Date, to: Date, by: String) async throws -> [String: Double] {
        let (status, output) = try await ClientCommandTests.serendip(
            ["usage", "--from", iso(from), "--to", iso(to), "--by", by, "--format", "csv", "--data", directory])
        #expect(status == 0, "\(output)")
        var lines = output.split(separator: "\n").map(String.init)
        #expect(lines.removeFirst() == "\(by),instrument_hours,runs")
        return Dictionary(uniqueKeysWithValues: lines.map { line in
            let fields = line.split(separator: ",").map(String.init)
            return (fields[0], Double(fields[1]) ?? .nan)
        })
    }

    static func same(_ a: [String: Double], _ b: [String: Double]) -> Bool {
        a.keys.sorted() == b.keys.sorted() && a.allSatisfy { abs($0.value - b[$0.key]!) < 1e-9 }
    }

    @Test func eachGroupsTotalIsTheSumOfItsRecordedIntervalsClippedToTheWindow() async throws {
        let (directory, database) = try await Self.dataDirectory()
        defer { withExtendedLifetime(database) {} }
        // The window cuts carol's run (begun before it), alice's second and bob's running one.
        let from = Self.at(0), to = Self.at(8.5)
        let groupings: [(String, (Recorded, String) -> String)] = [
            ("user", { run, _ in run.user }), ("project", { run, _ in run.project ?? "(none)" }), ("instrument", { _, i in i }),
        ]
        for (by, key) in groupings {
            let report = try await Self.report(directory, from: from, to: to, by: by)
            let expected = Self.expected(from: from, to: to, now: .distantFuture, by: key)
            #expect(Self.same(report, expected), "by \(by): \(report) != \(expected)")
        }
        // Hand-checked: alice 3 h × 2 instruments + 1.5 h × 2, bob 4.25 h + 0.5 h, carol 0.5 h; dave is after the window.
        #expect(Self.same(try await Self.report(directory, from: from, to: to, by: "user"),
                          ["alice": 9, "bob": 4.75, "carol": 0.5]))
    }

    @Test func aRunStillRunningCountsUntilNow() async throws {
        let (directory, database) = try await Self.dataDirectory()
        defer { withExtendedLifetime(database) {} }
        let from = Self.at(7.5), to = Date().addingTimeInterval(86400)
        let before = Date()
        let report = try await Self.report(directory, from: from, to: to, by: "instrument")
        let after = Date()
        let low = Self.expected(from: from, to: to, now: before) { _, i in i }, high = Self.expected(from: from, to: to, now: after) { _, i in i }
        #expect(Set(report.keys) == Set(low.keys))
        let running = try #require(report["reactor3"])
        #expect(low["reactor3"]! - 1e-9 <= running && running <= high["reactor3"]! + 1e-9, "\(running) outside [\(low["reactor3"]!), \(high["reactor3"]!)]")
        #expect(report["reactor4"] == 1 && report["spectro2"] == 1.5)
    }

    @Test func aWindowThatEndsBeforeItStartsIsRefused() async throws {
        let (status, output) = try await ClientCommandTests.serendip(
            ["usage", "--from", "2026-12-01", "--to", "2026-11-01", "--data", try ClientCommandTests.emptyDirectory()])
        #expect(status == 64)
        #expect(output.contains("--from 2026-12-01 is not before --to 2026-11-01"), "\(output)")
    }
}
