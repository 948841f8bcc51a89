import ArgumentParser
import Foundation
import LabCore
import LabStorage

/// `serendip usage`: instrument-hours per user, project or instrument over a window, from the
/// recorded instrument intervals (read from the database; no daemon needed).
struct Usage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report instrument-hours per user, project or instrument between two times.",
        discussion: "A run holds each instrument assigned to it from its start to its end (paused time included: "
            + "no other run may use the instrument then); a run still running counts until now. Each interval is clipped "
            + "to [--from, --to): --to is excluded, so --from 2026-11-01 --to 2026-12-01 is November (dates are UTC). "
            + "A run on two instruments for one hour is two instrument-hours. Runs without a project count under '(none)'.")

    enum Grouping: String, ExpressibleByArgument, CaseIterable { case user, project, instrument }
    enum Format: String, ExpressibleByArgument, CaseIterable { case table, csv, json }

    @Option(help: ArgumentHelp("Start of the window (included): 2026-11-01 or 2026-11-01T08:00:00Z.", valueName: "DATE"))
    var from: String
    @Option(help: ArgumentHelp("End of the window (excluded).", valueName: "DATE")) var to: String
    @Option(help: "Group by user, project or instrument.") var by: Grouping = .user
    @Option(help: "table, csv (a header line, then one row per group; hours in full precision) or json (an array of groups).") var format: Format = .table
    @Flag(help: "The same as --format json.") var json = false
    @OptionGroup var data: DataDirectory

    func validate() throws {
        for (name, text) in [("--from", from), ("--to", to)] where Self.instant(text) == nil {
            throw ValidationError("\(name) \(text): give a date (2026-11-30) or a UTC time (2026-11-30T08:00:00Z)")
        }
        if let start = Self.instant(from), let end = Self.instant(to), start >= end {
            throw ValidationError("--from \(from) is not before --to \(to): the window would be empty")
        }
    }

    /// A date or an ISO 8601 instant (no spans before now: a bill's window is fixed).
    static func instant(_ text: String) -> Date? { Runs.absoluteInstant(text) }

    struct Group: Equatable {
        var key: String
        var seconds: Double
        var runs: Int
    }

    /// Sums the intervals per group, groups sorted by name.
    static func groups(_ intervals: [InstrumentInterval], by grouping: Grouping) -> [Group] {
        var seconds: [String: Double] = [:], runs: [String: Set<Int64>] = [:]
        for interval in intervals {
            let key = switch grouping {
            case .user: interval.user
            case .project: interval.project ?? "(none)"
            case .instrument: interval.instrument
            }
            seconds[key, default: 0] += interval.seconds
            runs[key, default: []].insert(interval.run)
        }
        return seconds.keys.sorted().map { Group(key: $0, seconds: seconds[$0]!, runs: runs[$0]!.count) }
    }

    func run() throws {
        let intervals: [InstrumentInterval]
        do {
            intervals = try data.openDatabase().instrumentIntervals(from: Self.instant(from)!, to: Self.instant(to)!)
        } catch { throw data.fail(error) }
        let groups = Self.groups(intervals, by: by)
        switch json ? .json : format {
        case .json:
            struct Row: Encodable { var key: String; var instrument_hours: Double; var runs: Int }
            try data.printJSON(groups.map { Row(key: $0.key, instrument_hours: $0.seconds / 3600, runs: $0.runs) })
        case .csv:
            say("\(by.rawValue),instrument_hours,runs")
            for g in groups { say("\(Export.csvField(g.key)),\(Export.number(g.seconds / 3600)),\(g.runs)") }
        case .table:
            guard !groups.isEmpty else { return say("no instrument time between \(from) and \(to)") }
            let width = max(by.rawValue.count, groups.map(\.key.count).max() ?? 0) + 2
            func row(_ a: String, _ b: String, _ c: String) -> String {
                a.padding(toLength: width, withPad: " ", startingAt: 0) + b.padding(toLength: 18, withPad: " ", startingAt: 0) + c
            }
            say(row(by.rawValue, "instrument-hours", "runs"))
            for g in groups { say(row(g.key, String(format: "%.2f", g.seconds / 3600), String(g.runs))) }
            say(row("total", String(format: "%.2f", groups.map(\.seconds).reduce(0, +) / 3600), String(Set(intervals.map(\.run)).count)))
        }
    }
}
