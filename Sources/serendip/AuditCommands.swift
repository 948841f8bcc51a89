import ArgumentParser
import Foundation
import LabCore
import LabStorage

/// `serendip audit`: the daemon's append-only audit log, read from the database (no daemon needed).
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the audit log: every mutating request (accepted or refused) and every state change the daemon made.",
        discussion: "Rows are printed in the order they were written: time, actor, action, subject, detail (JSON). "
            + "The log is append-only: SQLite refuses to change or delete a row.")

    @Option(help: ArgumentHelp("Only rows at or after TIME: 2026-11-30, 2026-11-30T08:00:00Z, or ago: 90m, 12h, 7d.",
                               valueName: "TIME"))
    var since: String?
    @Option(help: ArgumentHelp("Only rows about this subject, exactly: \"run 4\", \"queue entry 7\", \"campaign 2\", \"alert 3\", \"daemon\".",
                               valueName: "S"))
    var subject: String?
    @OptionGroup var data: DataDirectory
    @Flag(help: "Print the rows as a JSON array (sorted keys; detail as an object) instead of text.") var json = false

    func validate() throws {
        if let since, Runs.instant(since) == nil {
            throw ValidationError("--since \(since): give a date (2026-11-30), a UTC time (2026-11-30T08:00:00Z) or a time ago (90m, 12h, 7d)")
        }
    }

    func run() throws {
        let entries: [AuditEntry]
        do { entries = try data.openDatabase().auditEntries(since: since.flatMap { Runs.instant($0) }, subject: subject) } catch {
            throw data.fail(error)
        }
        if json {
            let objects: [[String: Any]] = entries.map { e in
                ["id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                 "detail": e.detail.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } ?? NSNull()]
            }
            let text = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys, .withoutEscapingSlashes])
            return say(String(decoding: text, as: UTF8.self))
        }
        guard !entries.isEmpty else { return say("no audit rows") }
        for e in entries { say("\(e.at)  \(e.actor)  \(e.action)  \(e.subject)" + (e.detail.map { "  " + $0 } ?? "")) }
    }
}
