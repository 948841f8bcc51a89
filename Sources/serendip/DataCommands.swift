import ArgumentParser
import Foundation
import Glibc
import LabCore
import LabDaemon
import LabStorage

/// What the data commands share: the data directory's database, opened to read only. They ask no
/// daemon: they work while one writes (as a WAL reader) and when none runs, and they never write.
extension DataDirectory {
    func openDatabase() throws -> LabDatabase {
        do { return try LabDatabase(readingOnly: Daemon.Layout(path).database) } catch { throw fail(error) }
    }

    /// The one place a data command's failure becomes a message on standard error and exit status 1.
    func fail(_ error: any Error) -> ExitCode {
        if let exit = error as? ExitCode { return exit }
        Output.error((error as? LabError)?.description ?? String(describing: error))
        return ExitCode(1)
    }

    func noRun(_ id: Int64) -> ExitCode {
        // A queue entry takes its number as a run only once it starts: say where it is instead.
        if let state = try? openDatabase().queueEntryState(id) {
            return fail(LabError(.notFound, "run \(id) has not started: its queue entry is \(state.replacingOccurrences(of: "_", with: " ")) "
                                 + "(serendip status \(id) --data \(path) says more)"))
        }
        return fail(LabError(.notFound, "no run \(id) in \(path) (serendip runs --data \(path) lists them)"))
    }

    func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        say(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

/// `serendip runs`: the stored runs, filtered.
struct Runs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the stored runs (read from the data directory's database; no daemon needed).")

    @Option(help: ArgumentHelp("Only the runs of this campaign.", valueName: "N")) var campaign: Int64?
    @Option(name: .customLong("protocol"), help: ArgumentHelp("Only runs of this protocol (its name).", valueName: "NAME"))
    var protocolName: String?
    @Option(help: ArgumentHelp("Only runs in this state: running, completed, failed, aborted or interrupted.", valueName: "S"))
    var state: String?
    @Option(name: .customLong("operator"), help: ArgumentHelp("Only runs started by this operator.", valueName: "U"))
    var operatorName: String?
    @Option(help: ArgumentHelp("Only runs submitted for this project.", valueName: "P")) var project: String?
    @Option(help: ArgumentHelp("Only runs started at or after TIME: 2026-11-30, 2026-11-30T08:00:00Z, or ago: 90m, 12h, 7d.",
                               valueName: "TIME"))
    var since: String?
    @OptionGroup var data: DataDirectory
    @Flag(help: "Print the result as JSON (sorted keys) instead of text.") var json = false

    static let states = ["running", "completed", "failed", "aborted", "interrupted"]

    func validate() throws {
        if let state, !Self.states.contains(state) {
            throw ValidationError("--state \(state): a run is one of \(Self.states.joined(separator: ", "))")
        }
        if let since, Self.instant(since) == nil {
            throw ValidationError("--since \(since): give a date (2026-11-30), a UTC time (2026-11-30T08:00:00Z) or a time ago (90m, 12h, 7d)")
        }
    }

    func run() throws {
        let filter = RunFilter(campaign: campaign, protocolName: protocolName, state: state, operatorName: operatorName,
                               project: project, since: since.flatMap { Self.instant($0) })
        let runs: [StoredRun]
        do { runs = try data.openDatabase().runs(matching: filter) } catch { throw data.fail(error) }
        if json { return try data.printJSON(runs) }
        guard !runs.isEmpty else { return say("no runs") }
        for run in runs { say(Self.describe(run)) }
    }

    static func describe(_ r: StoredRun) -> String {
        var line = "run \(r.id)  \(r.state.padding(toLength: 11, withPad: " ", startingAt: 0)) \(r.protocolName)  started \(r.startedAt) by \(r.operatorName)"
        if let campaign = r.campaign { line += "  campaign \(campaign)" }
        if let project = r.project { line += "  project \(project)" }
        return line
    }

    /// A date, an ISO 8601 instant, or a span before now.
    static func instant(_ text: String, now: Date = Date()) -> Date? {
        if let amount = Double(text.dropLast()), amount >= 0, let unit = text.last,
           let seconds = ["m": 60.0, "h": 3600.0, "d": 86400.0][String(unit)] {
            return now.addingTimeInterval(-amount * seconds)
        }
        return absoluteInstant(text)
    }

    /// A date (midnight UTC) or an ISO 8601 instant with its zone. Nothing is guessed: a time
    /// without a zone, or a day the month does not have (2026-02-30), is no date at all.
    static func absoluteInstant(_ text: String) -> Date? {
        let day = text.prefix(10).split(separator: "-").compactMap { Int($0) }
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        guard text.count >= 10, day.count == 3,
              DateComponents(calendar: utc, year: day[0], month: day[1], day: day[2]).isValidDate else { return nil }
        if text.count == 10 { return DateComponents(calendar: utc, year: day[0], month: day[1], day: day[2]).date }
        let full = ISO8601DateFormatter()
        if let date = full.date(from: text) { return date }
        full.formatOptions.insert(.withFractionalSeconds)
        return full.date(from: text)
    }
}

/// `serendip show RUN`: one run's provenance and a summary of its data.
struct ShowRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one stored run: its provenance, parameters, instruments, per-series statistics and events.")

    @Argument(help: ArgumentHelp("The run number (serendip runs lists them).", valueName: "run")) var number: Int64
    @OptionGroup var data: DataDirectory
    @Flag(help: "Print the result as JSON (sorted keys) instead of text.") var json = false

    func run() throws {
        let detail: RunRecord?
        do { detail = try data.openDatabase().detail(run: number) } catch { throw data.fail(error) }
        guard let detail else { throw data.noRun(number) }
        if json { return try data.printJSON(detail) }
        say(Self.describe(detail))
    }

    static func describe(_ d: RunRecord) -> String {
        let r = d.run
        var lines = ["run \(r.id): \(r.protocolName), \(r.state)"]
        func field(_ name: String, _ value: String?) {
            guard let value else { return }
            lines.append("  " + name.padding(toLength: 10, withPad: " ", startingAt: 0) + value)
        }
        field("protocol", "\(r.protocolPath)  sha256 \(r.protocolSHA256)")
        field("campaign", r.campaign.map(String.init))
        field("chosen by", r.chosenBy + (r.proposal.map { " (proposal \($0))" } ?? ""))
        field("operator", r.operatorName)
        field("project", r.project)
        field("software", r.softwareVersion + (r.softwareBuild.map { " (\($0))" } ?? ""))
        field("host", r.host)
        field("started", r.startedAt)
        field("ended", r.endedAt)
        field("error", r.error)
        func quantity(_ p: StoredParameter) -> String {
            if let text = p.text { return "\(p.name) = \(text)" }
            if p.unit == "bool" { return "\(p.name) = \(p.value != 0)" }
            return "\(p.name) = \(Export.number(p.value ?? .nan))" + (p.unit.isEmpty ? "" : " \(p.unit)")
        }
        func section(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            lines.append(title)
            lines += items.map { "  " + $0 }
        }
        section("parameters", d.parameters.map(quantity))
        section("outputs", d.outputs.map(quantity))
        section("instruments", d.instruments.map { i in
            "\(i.role): \(i.instrument) at \(i.address), driver \(i.driver) sha256 \(i.driverSHA256)"
                + (i.deviceQuery.map { ", \($0) → " + (i.deviceAnswer.map { "'\($0)'" } ?? "no answer") } ?? "")
        })
        section("series", d.series.map {
            "\($0.series) [\($0.unit)]: \($0.count) readings, min \(Export.number($0.min)), max \(Export.number($0.max)), mean \(Export.number($0.mean))"
        })
        section("arrays", d.arraySeries.map {
            "\($0.series) [\($0.unit)]: \($0.count) arrays of \($0.dtype), shape [\($0.shape.map(String.init).joined(separator: ", "))]"
        })
        if !d.events.isEmpty {
            section("events", [d.events.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")])
        }
        let moreLogs = (d.events["log"] ?? 0) - d.logs.count
        section("log", d.logs + (moreLogs > 0 ? ["… \(moreLogs) more"] : []))
        return lines.joined(separator: "\n")
    }
}

/// `serendip export`: runs' readings as tidy CSV or JSON Lines, for pandas and spreadsheets, or as
/// Bluesky documents for databroker and Tiled.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export runs' readings as tidy CSV, JSON Lines or Bluesky documents, values exactly as stored.",
        discussion: "CSV: a header line, then one row per reading (array readings are left out, with a note). JSON Lines: per "
            + "run, one object with its provenance and parameters (\"type\": \"run\"), then one object per reading (\"type\": "
            + "\"reading\"), then one per array reading with its shape, axes and values (\"type\": \"array\"). Numbers are written in the "
            + "shortest form that reads back as the same double. Bluesky: event-model documents, one [name, doc] pair per "
            + "line (start, a descriptor per series, event pages, stop), as bluesky's JSON Lines serializers write them.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case csv, jsonl, bluesky }

    @Argument(help: ArgumentHelp("The runs to export.", valueName: "run")) var runs: [Int64] = []
    @Option(help: ArgumentHelp("Export every run of this campaign.", valueName: "N")) var campaign: Int64?
    @Option(help: "csv, jsonl or bluesky.") var format: Format
    @Option(help: ArgumentHelp("Write to this file instead of standard output.", valueName: "PATH")) var out: String?
    @OptionGroup var data: DataDirectory

    static let columns = ["run", "step", "instrument", "role", "channel", "series", "value", "unit", "wall_time", "monotonic_time"]

    func validate() throws {
        if runs.isEmpty == (campaign == nil) { throw ValidationError("say what to export: run numbers, or --campaign N (not both)") }
    }

    func run() throws {
        do {
            let database = try data.openDatabase()
            var details: [RunRecord] = []
            if let campaign, try !database.hasCampaign(campaign) {
                throw LabError(.notFound, "no campaign \(campaign) in \(data.path) (serendip campaign list shows them)")
            }
            // Each run once, in the order given (twice would give a catalogue two start documents with one uid).
            var seen = Set<Int64>()
            let ids = try campaign.map { try database.runs(matching: RunFilter(campaign: $0)).map(\.id) } ?? runs.filter { seen.insert($0).inserted }
            // Every run is checked before anything is written: a typo leaves no half-written file.
            for id in ids {
                guard let detail = try database.detail(run: id) else { throw data.noRun(id) }
                details.append(detail)
            }
            let sink = try ByteSink(path: out)
            if format == .csv { try sink.write(Self.columns.joined(separator: ",") + "\n") }
            for detail in details {
                if format == .bluesky {
                    try BlueskyDocuments(detail: detail, write: sink.write).export(from: database)
                    continue
                }
                if format == .csv {
                    try database.writeReadingsCSV(run: detail.run.id, sink.write(bytes:))
                    if !detail.arraySeries.isEmpty {
                        // A CSV row holds one number; a spectrum does not fit it without losing its shape.
                        let arrays = detail.arraySeries.reduce(0) { $0 + $1.count }
                        Output.error("note: run \(detail.run.id)'s \(arrays) array readings are not in CSV; export them with --format jsonl")
                    }
                    continue
                }
                try sink.write(Self.jsonLine(detail) + "\n")
                try database.forEachReading(run: detail.run.id) { reading in try sink.write(Self.jsonLine(reading) + "\n") }
                try database.forEachArray(run: detail.run.id) { try sink.write(Self.jsonLine($0) + "\n") }
            }
            try sink.close()
        } catch { throw data.fail(error) }
    }

    /// The shortest decimal that parses back to the same double (Swift's `description` is exactly that).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        return value.description
    }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func jsonLine(_ r: MeasurementRow) -> String {
        JSONText.object([("type", .string("reading")), ("run", .integer(r.runID)), ("step", .integer(Int64(r.step))),
                         ("instrument", .string(r.instrument)), ("role", .string(r.role)), ("channel", .string(r.channel)),
                         ("series", .string(r.series)), ("value", .number(r.value)), ("unit", .string(r.unit)),
                         ("wall_time", .string(r.wallTime)), ("monotonic_time", .number(r.monotonicTime))]).rendered
    }

    /// An array reading: its shape, its axes as stored (start and step, or the positions) and its values.
    static func jsonLine(_ a: StoredArray) -> String {
        func axis(_ x: ArrayAxis) -> JSONText {
            var members: [(String, JSONText)] = [("name", .string(x.name)), ("unit", .string(x.unit))]
            if let values = x.values { members.append(("values", .array(values.map(JSONText.number)))) }
            if let start = x.start, let step = x.step { members += [("start", .number(start)), ("step", .number(step))] }
            return .object(members)
        }
        return JSONText.object([("type", .string("array")), ("run", .integer(a.runID)), ("step", .integer(Int64(a.step))),
                                ("instrument", .string(a.instrument)), ("role", .string(a.role)), ("channel", .string(a.channel)),
                                ("series", .string(a.series)), ("unit", .string(a.unit)), ("dtype", .string(a.dtype)),
                                ("shape", .array(a.shape.map { .integer(Int64($0)) })), ("axes", .array(a.axes.map(axis))),
                                ("values", .array(a.values.map(JSONText.number))),
                                ("wall_time", .string(a.wallTime)), ("monotonic_time", .number(a.monotonicTime))]).rendered
    }

    static func jsonLine(_ d: RunRecord) -> String {
        let r = d.run
        func values(_ list: [StoredParameter]) -> JSONText {
            .object(list.map { p in
                (p.name, .object([("value", p.text.map(JSONText.string) ?? p.value.map(JSONText.number) ?? .null), ("unit", .string(p.unit))]))
            })
        }
        return JSONText.object([
            ("type", .string("run")), ("run", .integer(r.id)), ("campaign", r.campaign.map(JSONText.integer) ?? .null),
            ("protocol", .string(r.protocolName)), ("protocol_path", .string(r.protocolPath)),
            ("protocol_sha256", .string(r.protocolSHA256)), ("state", .string(r.state)), ("chosen_by", .string(r.chosenBy)),
            ("proposal", r.proposal.map(JSONText.string) ?? .null), ("operator", .string(r.operatorName)),
            ("project", r.project.map(JSONText.string) ?? .null), ("software_version", .string(r.softwareVersion)),
            ("software_build", r.softwareBuild.map(JSONText.string) ?? .null), ("host", r.host.map(JSONText.string) ?? .null),
            ("started_at", .string(r.startedAt)), ("ended_at", r.endedAt.map(JSONText.string) ?? .null),
            ("error", r.error.map(JSONText.string) ?? .null), ("parameters", values(d.parameters)), ("outputs", values(d.outputs)),
            ("instruments", .object(d.instruments.map { i in
                (i.role, .object([("instrument", .string(i.instrument)), ("driver", .string(i.driver)),
                                  ("driver_sha256", .string(i.driverSHA256)), ("address", .string(i.address)),
                                  ("device_query", i.deviceQuery.map(JSONText.string) ?? .null),
                                  ("device_answer", i.deviceAnswer.map(JSONText.string) ?? .null)]))
            })),
        ]).rendered
    }
}

/// JSON written by hand, keys in the order given, so that numbers keep their shortest exact form.
indirect enum JSONText {
    case string(String), number(Double), integer(Int64), null
    case object([(String, JSONText)])
    case array([JSONText])

    var rendered: String {
        switch self {
        case .string(let s): Self.quoted(s)
        // JSON has no NaN or infinity.
        case .number(let d): d.isFinite ? Export.number(d) : "null"
        case .integer(let i): String(i)
        case .null: "null"
        case .object(let members): "{" + members.map { Self.quoted($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        case .array(let items): "[" + items.map(\.rendered).joined(separator: ",") + "]"
        }
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Standard output or a file, written in large chunks; a write error (a full disk) is an error, not a short file.
final class ByteSink {
    private let fd: Int32
    private let path: String?
    private var buffer: [UInt8] = []

    init(path: String?) throws {
        self.path = path
        guard let path else { fd = STDOUT_FILENO; signal(SIGPIPE, SIG_IGN); return }
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LabError(.storage, "cannot write \(path): \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ text: String) throws {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { try flush() }
    }

    func write(bytes: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { try flush() }
    }

    func close() throws {
        try flush()
        if path != nil, Glibc.close(fd) != 0 { throw failure() }
    }

    private func flush() throws {
        var written = 0
        while written < buffer.count {
            let n = buffer[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failure() }
            written += n
        }
        buffer.removeAll(keepingCapacity: true)
    }

    private func failure() -> LabError {
        LabError(.storage, "cannot write \(path ?? "standard output"): \(String(cString: strerror(errno)))")
    }
}
