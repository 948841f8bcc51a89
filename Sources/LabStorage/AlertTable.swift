import Foundation
public import GRDB
public import LabCore

/// Alerts, one row each, with the runs each affected. At most one alert per kind and subject is
/// latched (unacknowledged) at a time: SQLite's unique index enforces it, so a condition that keeps
/// firing adds runs to its alert instead of piling up alerts.
enum AlertTable {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v5: alerts") { db in
            try db.execute(sql: """
                CREATE TABLE alert (
                    id INTEGER PRIMARY KEY,
                    kind TEXT NOT NULL CHECK (kind IN (\(Alert.Kind.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")))),
                    subject TEXT NOT NULL,
                    message TEXT NOT NULL,
                    instrument TEXT,
                    raised_at TEXT NOT NULL,
                    cleared_at TEXT,
                    acknowledged_at TEXT,
                    acknowledged_by TEXT,
                    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL)),
                    CHECK (acknowledged_at IS NULL OR cleared_at IS NOT NULL)
                );
                CREATE UNIQUE INDEX alert_latched ON alert(kind, subject) WHERE acknowledged_at IS NULL;
                -- No foreign key to run: an alert must be recorded even for a run whose row is not written yet.
                CREATE TABLE alert_run (
                    alert_id INTEGER NOT NULL REFERENCES alert(id),
                    run_id INTEGER NOT NULL,
                    PRIMARY KEY (alert_id, run_id)
                );
                """)
        }
    }

    static func alert(_ db: Database, _ row: Row) throws -> Alert {
        let id: Int64 = row["id"]
        let runs = try Int64.fetchAll(db, sql: "SELECT run_id FROM alert_run WHERE alert_id = ? ORDER BY rowid", arguments: [id])
        let cleared: String? = row["cleared_at"], acknowledged: String? = row["acknowledged_at"]
        return Alert(id: id, kind: Alert.Kind(rawValue: row["kind"]) ?? .other, subject: row["subject"], message: row["message"],
                     raisedAt: LabDatabase.date(row["raised_at"]) ?? Date(), runIDs: runs, instrument: row["instrument"],
                     clearedAt: cleared.flatMap(LabDatabase.date), acknowledgedAt: acknowledged.flatMap(LabDatabase.date),
                     acknowledgedBy: row["acknowledged_by"])
    }

    static func fetch(_ db: Database, _ id: Int64) throws -> Alert? {
        try Row.fetchOne(db, sql: "SELECT * FROM alert WHERE id = ?", arguments: [id]).map { try alert(db, $0) }
    }
}

/// Alerts are acknowledged events: each change commits before the call returns (`synchronous=FULL`).
extension LabDatabase {
    /// Raises an alert, or returns the one of this kind and subject that is still latched, with `run`
    /// added to it. A latched alert whose condition had cleared holds again: it can only be
    /// acknowledged once the condition clears anew.
    @discardableResult
    public func raiseAlert(_ kind: Alert.Kind, subject: String, message: String, run: Int64? = nil,
                           instrument: String? = nil) async throws -> Alert {
        try await pool.write { db in
            let id: Int64
            if let open = try Int64.fetchOne(db, sql: "SELECT id FROM alert WHERE kind = ? AND subject = ? AND acknowledged_at IS NULL",
                                             arguments: [kind.rawValue, subject]) {
                id = open
                if try Bool.fetchOne(db, sql: "SELECT cleared_at IS NOT NULL FROM alert WHERE id = ?", arguments: [id]) == true {
                    try AuditLog.append(db, actor: auditActor, action: "alert holds again", subject: "alert \(id)", detail: ["message": message])
                }
                try db.execute(sql: "UPDATE alert SET cleared_at = NULL, instrument = COALESCE(instrument, ?) WHERE id = ?",
                               arguments: [instrument, id])
            } else {
                try db.execute(sql: "INSERT INTO alert (kind, subject, message, instrument, raised_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [kind.rawValue, subject, message, instrument, Self.timestamp(Date())])
                id = db.lastInsertedRowID
                try AuditLog.append(db, actor: auditActor, action: "alert raised", subject: "alert \(id)", detail: [
                    "kind": kind.rawValue, "subject": subject, "message": message, "instrument": instrument,
                ])
            }
            if let run {
                try db.execute(sql: "INSERT OR IGNORE INTO alert_run (alert_id, run_id) VALUES (?, ?)", arguments: [id, run])
                if db.changesCount == 1 {
                    try AuditLog.append(db, actor: auditActor, action: "alert affects run", subject: "alert \(id)", detail: ["run": run])
                }
            }
            return try AlertTable.fetch(db, id)!
        }
    }

    /// Notes that the condition behind the latched alert of this kind and subject has cleared, so a
    /// person may now acknowledge it. Returns that alert, or nil if none is latched.
    @discardableResult
    public func markAlertCleared(_ kind: Alert.Kind, subject: String) async throws -> Alert? {
        try await pool.write { db in
            guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM alert WHERE kind = ? AND subject = ? AND acknowledged_at IS NULL",
                                              arguments: [kind.rawValue, subject]) else { return nil }
            try db.execute(sql: "UPDATE alert SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL",
                           arguments: [Self.timestamp(Date()), id])
            if db.changesCount == 1 {
                try AuditLog.append(db, actor: auditActor, action: "alert cleared", subject: "alert \(id)", detail: ["kind": kind.rawValue, "subject": subject])
            }
            return try AlertTable.fetch(db, id)
        }
    }

    /// A person's acknowledgement: it releases the latch. Refused while the condition still holds,
    /// and for an alert already acknowledged.
    public func acknowledgeAlert(_ id: Int64, by person: String) async throws -> Alert {
        try await pool.write { db in
            guard let alert = try AlertTable.fetch(db, id) else { throw LabError(.notFound, "there is no alert \(id)") }
            if let by = alert.acknowledgedBy, let at = alert.acknowledgedAt {
                throw LabError(.conflict, "alert \(id) was already acknowledged by \(by) at \(Self.timestamp(at))")
            }
            guard alert.isCleared else {
                throw LabError(.conflict, "alert \(id) (\(alert.kind.rawValue) '\(alert.subject)') cannot be acknowledged while its "
                               + "condition still holds: \(alert.message). Put it right (or wait until it clears), then acknowledge it again")
            }
            try db.execute(sql: "UPDATE alert SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                           arguments: [Self.timestamp(Date()), person, id])
            try AuditLog.append(db, actor: auditActor, action: "alert acknowledged", subject: "alert \(id)", detail: ["by": person])
            return try AlertTable.fetch(db, id)!
        }
    }

    /// Alerts newest first: only the latched ones (raised and not acknowledged), or all.
    public func alerts(latchedOnly: Bool = true, limit: Int = 1000) async throws -> [Alert] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM alert \(latchedOnly ? "WHERE acknowledged_at IS NULL" : "") ORDER BY id DESC LIMIT ?",
                             arguments: [limit]).map { try AlertTable.alert(db, $0) }
        }
    }

    public func alert(_ id: Int64) async throws -> Alert? {
        try await pool.read { db in try AlertTable.fetch(db, id) }
    }
}
