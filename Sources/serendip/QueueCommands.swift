import ArgumentParser
import Foundation
import LabAPI
import LabCore

/// `serendip submit FILE`: queue one run of a protocol on the daemon.
struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue a run of a protocol on the daemon.",
        discussion: """
            FILE is a protocol file, or a bare name for protocols/NAME.yaml under the current directory. \
            Parameter values are checked against the protocol before anything is sent. \
            Exit status: 0 queued, 1 refused (the message says why), 2 a file could not be read, 3 no daemon.
            """)

    @Argument(help: "The protocol: a path, or NAME for protocols/NAME.yaml.")
    var file: String

    @Option(name: .customLong("param"), help: ArgumentHelp("A parameter value, e.g. 'temperature=80 degC'; repeat for each.", valueName: "name=value"))
    var parameters: [String] = []

    @Option(parsing: .unconditional, help: "Higher runs first; equal priorities run in submission order (negative: --priority -5).")
    var priority = 0

    @Option(help: ArgumentHelp("Not started before: ISO 8601 ('2026-11-30T05:00:00Z'), HH:MM (local; tomorrow if past) or +30m / +2h.", valueName: "time"))
    var notBefore: String?

    @Option(help: "The project the run belongs to.")
    var project: String?

    @Option(help: "A key of your own: submitting again with the same key returns the entry already queued.")
    var requestId: String?

    @Flag(help: "After a daemon restart, queue it again by itself (otherwise it is held for you).")
    var autostart = false

    @OptionGroup var client: ClientOptions

    func validate() throws {
        if let notBefore, StartTime.parse(notBefore) == nil {
            throw ValidationError("--not-before \(notBefore): write an ISO 8601 time with a zone (2026-11-30T05:00:00Z), HH:MM, or +30m / +2h")
        }
    }

    func run() throws {
        let item: QueueItemParams
        do throws(ClientFailure) {
            let file = try WireFile.protocolFile(self.file)
            let values = try ParameterArguments.typed(try ParameterArguments.split(parameters), for: file)
            item = QueueItemParams(protocolFile: file, parameters: values, priority: priority,
                                   notBefore: notBefore.flatMap { StartTime.parse($0) }.map(StartTime.iso),
                                   project: project, requestID: requestId, autostart: autostart)
        } catch { throw client.fail(error) }
        try client.show(try client.call("queue.add", item), as: WireEntry.self) { entry in
            var line = "queued as run \(entry.run)"
            if entry.state != "queued" { line += " (\(entry.state.replacingOccurrences(of: "_", with: " ")))" }
            if let start = entry.expectedStart { line += "; expected to start at \(Show.time(start))" }
            return line
        }
    }
}

/// `serendip queue`: what waits, what runs, and when each is expected.
struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "List the queue in the order its entries would start (running first).")

    @Flag(help: "Also list finished, failed, cancelled and rejected entries.")
    var all = false

    @OptionGroup var client: ClientOptions

        func run() throws {
        try client.show(try client.call("queue.list", QueueListParams(all: all)), as: [WireEntry].self) { entries in
            guard !entries.isEmpty else { return all ? "the queue is empty (and nothing has run)" : "the queue is empty" }
            let header = ["run", "state", "protocol", "priority", "owner", "expected start", "expected end", "chosen by"]
            return Show.table([header] + entries.map {
                [String($0.run), $0.state, $0.protocolName, String($0.priority), $0.owner,
                 Show.time($0.expectedStart), Show.time($0.expectedEnd), $0.chosenBy]
            })
        }
    }
}

/// `serendip status RUN`: one entry, a field per line.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one queue entry (and its run).")

    @Argument(help: ArgumentHelp("The run number.", valueName: "run"))
    var number: Int64

    @OptionGroup var client: ClientOptions

    func run() throws {
        try client.show(try client.call("queue.get", RunRef(run: number)), as: WireEntry.self, Self.describe)
    }

    static func describe(_ e: WireEntry) -> String {
        var fields: [(String, String?)] = [
            ("run", String(e.run)), ("state", e.state), ("protocol", e.protocolName), ("parameters", Show.parameters(e.parameters)),
            ("priority", String(e.priority)), ("owner", e.owner), ("project", e.project), ("campaign", e.campaign.map(String.init)),
            ("proposal", e.proposal), ("chosen by", e.chosenBy), ("note", e.note), ("submitted", e.submittedAt),
            ("not before", e.notBefore), ("estimated", e.estimatedSeconds.map(Show.duration)),
        ]
        fields += [("expected start", e.expectedStart), ("expected end", e.expectedEnd)]
        let shown = fields.compactMap { name, value in value.map { (name, $0) } }
        let width = shown.map(\.0.count).max() ?? 0
        return shown.map { "\(($0.0 + ":").padding(toLength: width + 1, withPad: " ", startingAt: 0)) \($0.1)" }.joined(separator: "\n")
    }
}

/// The person's decisions on one entry; each prints the entry's new state.
protocol EntryDecision: ParsableCommand {
    static var method: String { get }
    var number: Int64 { get }
    var client: ClientOptions { get }
}

extension EntryDecision {
    func run() throws {
        try client.show(try client.call(Self.method, RunRef(run: number)), as: WireEntry.self) {
            "run \($0.run) is \($0.state.replacingOccurrences(of: "_", with: " "))" + ($0.note.map { " (\($0))" } ?? "")
        }
    }
}

struct Cancel: EntryDecision {
    static let configuration = CommandConfiguration(abstract: "Cancel an entry: a waiting one never starts; a running one is aborted (its 'finally', then the safe states).")
    static let method = "queue.cancel"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
}

struct Hold: EntryDecision {
    static let configuration = CommandConfiguration(abstract: "Keep a queued entry from starting until it is released.")
    static let method = "queue.hold"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
}

struct Release: EntryDecision {
    static let configuration = CommandConfiguration(abstract: "Let a held entry start again.")
    static let method = "queue.release"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
}

struct Approve: EntryDecision {
    static let configuration = CommandConfiguration(abstract: "Approve an entry that awaits approval, so that it may start.")
    static let method = "queue.approve"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
}

struct Reject: EntryDecision {
    static let configuration = CommandConfiguration(abstract: "Reject an entry that awaits approval; it never starts.")
    static let method = "queue.reject"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
}
