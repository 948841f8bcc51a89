public import Foundation
public import GRDB

/// One row of the audit log: who did what to which thing, when, and the details that matter.
public struct AuditEntry: Sendable, Hashable, Codable, FetchableRecord {
    public var id: Int64
    /// ISO 8601 (UTC), as the other tables store time.
    public var at: String
    /// The peer's user for a request; `daemon` for what the daemon did; the signal that stopped it.
    public var actor: String
    /// A request's method (`queue.hold`), or the state change (`run started`, `alert acknowledged`).
    public var action: String
    /// `run 4`, `queue entry 7`, `campaign 2`, `alert 3`, `daemon`.
    public var subject: String
    /// A JSON object.
    public var detail: String?

    public init(row: Row) {
        id = row["id"]; at = row["at"]; actor = row["actor"]; action = row["action"]; subject = row["subject"]
        detail = row["detail"]
    }
}

/// The append-only audit log. SQLite itself refuses to change or delete a row (triggers), so no
/// code path, client or `sqlite3` session that goes through SQL can rewrite history. Rows are
/// written in the same transaction as the state change they record wherever the change is stored
/// here; a request's row is written by the method table once the request has been answered.
enum AuditLog {
    static let appendOnly = "the audit log is append-only"

    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v7: the audit log") { db in
            try db.execute(sql: """
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    detail TEXT CHECK (detail IS NULL OR json_valid(detail))
                );
                CREATE INDEX audit_by_subject ON audit(subject, id);
                CREATE INDEX audit_by_time ON audit(at);
                CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, '\(appendOnly)'); END;
                CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, '\(appendOnly)'); END;
                """)
        }
    }

    /// Appends a row inside the caller's transaction. `detail` drops nil values; it must be JSON-serialisable.
    static func append(_ db: Database, actor: String, action: String, subject: String, detail: [String: Any?] = [:]) throws {
        try append(db, actor: actor, action: action, subject: subject, detail: json(detail))
    }

    static func append(_ db: Database, actor: String, action: String, subject: String, detail: String?) throws {
        try db.cachedStatement(sql: "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [LabDatabase.timestamp(Date()), actor, action, subject, detail])
    }

    static func json(_ fields: [String: Any?]) -> String? {
        let present = fields.compactMapValues { $0 }
        guard !present.isEmpty,
              let data = try? JSONSerialization.data(withJSONObject: present, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

extension LabDatabase {
    /// Appends one row in its own transaction (committed before it returns): for what is not stored
    /// here, such as a request to the method table or the daemon starting.
    public func appendAudit(actor: String, action: String, subject: String, detail: String?) throws {
        try pool.write { db in try AuditLog.append(db, actor: actor, action: action, subject: subject, detail: detail) }
    }

    /// The log in the order it was written: rows at or after `since`, about `subject` (exactly).
    public func auditEntries(since: Date? = nil, subject: String? = nil) throws -> [AuditEntry] {
        try pool.read { db in
            try AuditEntry.fetchAll(db, sql: """
                SELECT * FROM audit WHERE (? IS NULL OR at >= ?) AND (? IS NULL OR subject = ?) ORDER BY id
                """, arguments: [since.map(Self.timestamp), since.map(Self.timestamp), subject, subject])
        }
    }
}

extension LabDatabase {
    /// A detail object as the audit log stores it (sorted keys; nil values left out).
    public static func auditDetail(_ fields: [String: Any?]) -> String? { AuditLog.json(fields) }
}
