import Foundation
public import GRDB
public import LabCore

/// The daemon's queue, one row per submitted experiment. A run started from it points back to its
/// entry, and the entry's final state is written in the same transaction as the run's.
enum QueueTable {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4: the queue") { db in
            try db.execute(sql: """
                CREATE TABLE queue_entry (
                    id INTEGER PRIMARY KEY,
                    request_id TEXT UNIQUE,
                    protocol_name TEXT NOT NULL,
                    protocol_path TEXT NOT NULL,
                    protocol_text TEXT NOT NULL,
                    protocol_sha256 TEXT NOT NULL,
                    parameters TEXT NOT NULL,
                    priority INTEGER NOT NULL,
                    position REAL NOT NULL,
                    not_before TEXT,
                    owner TEXT NOT NULL,
                    project TEXT,
                    autostart INTEGER NOT NULL CHECK (autostart IN (0, 1)),
                    needs_approval INTEGER NOT NULL CHECK (needs_approval IN (0, 1)),
                    campaign_id INTEGER REFERENCES campaign(id),
                    proposal_id TEXT,
                    chosen_by TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('queued', 'held', 'awaiting_approval', 'running', 'completed',
                                                         'failed', 'aborted', 'interrupted', 'cancelled', 'rejected')),
                    note TEXT,
                    run_id INTEGER REFERENCES run(id),
                    estimated_seconds REAL,
                    submitted_at TEXT NOT NULL,
                    ended_at TEXT
                );
                CREATE INDEX queue_entry_open ON queue_entry(state) WHERE state IN ('queued', 'held', 'awaiting_approval', 'running');
                CREATE INDEX queue_entry_by_run ON queue_entry(run_id);
                -- Campaigns run by the daemon: who started them, the protocol text they run, and where they stand.
                ALTER TABLE campaign ADD COLUMN owner TEXT;
                ALTER TABLE campaign ADD COLUMN spec_path TEXT;
                ALTER TABLE campaign ADD COLUMN budget INTEGER;
                ALTER TABLE campaign ADD COLUMN protocol_path TEXT;
                ALTER TABLE campaign ADD COLUMN protocol_text TEXT;
                ALTER TABLE campaign ADD COLUMN needs_approval INTEGER NOT NULL DEFAULT 0 CHECK (needs_approval IN (0, 1));
                ALTER TABLE campaign ADD COLUMN state TEXT CHECK (state IN ('running', 'stopped', 'finished', 'failed'));
                ALTER TABLE campaign ADD COLUMN state_note TEXT;
                """)
        }
    }

    /// A run can be paused: its entry's state says so. SQLite cannot change a CHECK constraint, so
    /// the table is rebuilt with the new list of states.
    /// `budget` was added to v4 after v4 had created databases (2026-11-30): those lack it, and
    /// every campaign start failed on them. Migrations are append-only from here on.
    static func registerMissingBudget(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v13: the campaign budget, where v4 did not add it") { db in
            if try !db.columns(in: "campaign").contains(where: { $0.name == "budget" }) {
                try db.execute(sql: "ALTER TABLE campaign ADD COLUMN budget INTEGER")
            }
        }
    }

    static func registerPausedState(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v6: paused runs") { db in
            let columns = try db.columns(in: "queue_entry").map(\.name).joined(separator: ", ")
            let create = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'queue_entry'")!
            try db.execute(sql: create
                .replacingOccurrences(of: "CREATE TABLE queue_entry", with: "CREATE TABLE queue_entry_new")
                .replacingOccurrences(of: "'awaiting_approval', 'running',", with: "'awaiting_approval', 'running', 'paused',"))
            try db.execute(sql: """
                INSERT INTO queue_entry_new (\(columns)) SELECT \(columns) FROM queue_entry;
                DROP TABLE queue_entry;
                ALTER TABLE queue_entry_new RENAME TO queue_entry;
                CREATE INDEX queue_entry_open ON queue_entry(state) WHERE state IN ('queued', 'held', 'awaiting_approval', 'running', 'paused');
                CREATE INDEX queue_entry_by_run ON queue_entry(run_id);
                """)
        }
    }

    /// A queue entry's change of state. Pausing and resuming are its run's: they are logged about
    /// the run (whose number is the entry's), the rest about the entry.
    static func auditTransition(_ db: Database, actor: String, _ id: Int64, from: String, to: String, note: String?) throws {
        let paused = QueueState.paused.rawValue, running = QueueState.running.rawValue
        let (action, subject) = if to == paused { ("run paused", "run \(id)") }
            else if from == paused && to == running { ("run resumed", "run \(id)") }
            else { ("queue entry \(to)", "queue entry \(id)") }
        try AuditLog.append(db, actor: actor, action: action, subject: subject, detail: ["from": from, "note": note])
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static func entry(_ row: Row) throws -> QueueEntry {
        let parameters = try JSONDecoder().decode([String: ExprValue].self, from: Data((row["parameters"] as String).utf8))
        let notBefore: String? = row["not_before"]
        let submission = Submission(
            protocolSource: SourceText(path: row["protocol_path"], text: row["protocol_text"], sha256: row["protocol_sha256"]),
            protocolName: row["protocol_name"], parameters: parameters, priority: row["priority"],
            notBefore: notBefore.flatMap(LabDatabase.date), owner: row["owner"], project: row["project"],
            requestID: row["request_id"], autostart: row["autostart"], campaignID: row["campaign_id"],
            proposalID: row["proposal_id"], chosenBy: row["chosen_by"], needsApproval: row["needs_approval"])
        return QueueEntry(id: row["id"], submission: submission, state: QueueState(rawValue: row["state"]) ?? .held,
                          position: row["position"], note: row["note"], runID: row["run_id"],
                          submittedAt: LabDatabase.date(row["submitted_at"]) ?? Date(), estimatedSeconds: row["estimated_seconds"])
    }
}

extension LabDatabase: QueueStore {
    public func enqueue(_ submissions: [Submission]) async throws -> [QueueEntry] {
        try await pool.write { db in
            let now = Self.timestamp(Date())
            var next = try Double.fetchOne(db, sql: "SELECT MAX(position) FROM queue_entry") ?? 0
            // An entry's number is also its run's number once it starts, so a person sees one number:
            // numbers are taken above every run and entry there is.
            var number = try Int64.fetchOne(db, sql: "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM queue_entry UNION ALL SELECT MAX(id) FROM run)") ?? 0
            let insert = try db.cachedStatement(sql: """
                INSERT INTO queue_entry (id, request_id, protocol_name, protocol_path, protocol_text, protocol_sha256, parameters,
                                         priority, position, not_before, owner, project, autostart, needs_approval, campaign_id,
                                         proposal_id, chosen_by, state, submitted_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            var entries: [QueueEntry] = []
            for s in submissions {
                if let key = s.requestID,
                   let row = try Row.fetchOne(db, sql: "SELECT * FROM queue_entry WHERE request_id = ?", arguments: [key]) {
                    let stored = try QueueTable.entry(row)
                    // A retry is the same request; the same key for another one is a mistake to report.
                    guard stored.submission.protocolSource.sha256 == s.protocolSource.sha256,
                          stored.submission.parameters == s.parameters else {
                        throw LabError(.conflict, "request id '\(key)' was used for run \(stored.id), with another protocol or other values; use a new request id for a new request")
                    }
                    entries.append(stored)
                    continue
                }
                next += 1
                number += 1
                let parameters = String(decoding: try QueueTable.encoder.encode(s.parameters), as: UTF8.self)
                try insert.execute(arguments: [
                    number, s.requestID, s.protocolName, s.protocolSource.path, s.protocolSource.text, s.protocolSource.sha256,
                    parameters, s.priority, next, s.notBefore.map(Self.timestamp), s.owner, s.project, s.autostart,
                    s.needsApproval, s.campaignID, s.proposalID, s.chosenBy,
                    (s.needsApproval ? QueueState.awaitingApproval : .queued).rawValue, now,
                ])
                try AuditLog.append(db, actor: auditActor, action: "queue entry \((s.needsApproval ? QueueState.awaitingApproval : .queued).rawValue)",
                                    subject: "queue entry \(number)", detail: [
                    "owner": s.owner, "project": s.project, "protocol": s.protocolName, "protocol_sha256": s.protocolSource.sha256,
                    "parameters": try? JSONSerialization.jsonObject(with: Data(parameters.utf8)), "priority": s.priority, "not_before": s.notBefore.map(Self.timestamp),
                    "campaign": s.campaignID, "proposal": s.proposalID, "chosen_by": s.chosenBy, "request_id": s.requestID,
                ])
                entries.append(QueueEntry(id: number, submission: s,
                                          state: s.needsApproval ? .awaitingApproval : .queued, position: next,
                                          submittedAt: Self.date(now) ?? Date()))
            }
            return entries
        }
    }

    public func openEntries() async throws -> [QueueEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM queue_entry WHERE state IN ('queued', 'held', 'awaiting_approval', 'running', 'paused') ORDER BY id
                """).map(QueueTable.entry)
        }
    }

    public func entry(_ id: Int64) async throws -> QueueEntry? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM queue_entry WHERE id = ?", arguments: [id]).map(QueueTable.entry)
        }
    }

    /// Entries of any state, newest first, for listing.
    public func queueEntries(states: [QueueState]? = nil, campaign: Int64? = nil, limit: Int = 1000) throws -> [QueueEntry] {
        try pool.read { db in
            var conditions: [String] = [], arguments: StatementArguments = []
            if let states {
                conditions.append("state IN (\(states.map { _ in "?" }.joined(separator: ", ")))")
                for s in states { _ = arguments.append(contentsOf: [s.rawValue]) }
            }
            if let campaign {
                conditions.append("campaign_id = ?")
                _ = arguments.append(contentsOf: [campaign])
            }
            let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            _ = arguments.append(contentsOf: [limit])
            return try Row.fetchAll(db, sql: "SELECT * FROM queue_entry \(filter) ORDER BY id DESC LIMIT ?", arguments: arguments)
                .map(QueueTable.entry)
        }
    }

    public func transition(_ id: Int64, from: Set<QueueState>, to: QueueState, note: String?) async throws -> QueueEntry? {
        try await pool.write { db in
            let states = from.map(\.rawValue)
            let before = try String.fetchOne(db, sql: "SELECT state FROM queue_entry WHERE id = ?", arguments: [id])
            try db.execute(sql: """
                UPDATE queue_entry SET state = ?, note = COALESCE(?, note), ended_at = ?
                WHERE id = ? AND state IN (\(states.map { _ in "?" }.joined(separator: ", ")))
                """, arguments: StatementArguments([to.rawValue, note, to.isFinal ? Self.timestamp(Date()) : nil, id] as [(any DatabaseValueConvertible)?])
                    + StatementArguments(states))
            guard db.changesCount == 1 else { return nil }
            if let before, before != to.rawValue {
                try QueueTable.auditTransition(db, actor: auditActor, id, from: before, to: to.rawValue, note: note)
            }
            return try Row.fetchOne(db, sql: "SELECT * FROM queue_entry WHERE id = ?", arguments: [id]).map(QueueTable.entry)
        }
    }

    public func setPosition(_ id: Int64, priority: Int, position: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE queue_entry SET priority = ?, position = ? WHERE id = ?", arguments: [priority, position, id])
        }
    }

    public func setEstimate(_ id: Int64, seconds: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE queue_entry SET estimated_seconds = ? WHERE id = ?", arguments: [seconds, id])
        }
    }

    public func recoverAfterRestart() async throws {
        try await pool.write { db in
            let open = try Row.fetchAll(db, sql: """
                SELECT id, state FROM queue_entry WHERE state IN ('running', 'paused') OR (state = 'queued' AND autostart = 0) ORDER BY id
                """)
            for row in open {
                let state: String = row["state"]
                try QueueTable.auditTransition(db, actor: auditActor, row["id"], from: state,
                                               to: state == "queued" ? "held" : "interrupted", note: "the daemon restarted")
            }
            try db.execute(sql: """
                UPDATE queue_entry SET state = 'interrupted', ended_at = ?,
                    note = CASE state WHEN 'paused' THEN 'paused when the daemon stopped (' || COALESCE(note, '') || '); a run does not resume across a restart'
                                      ELSE 'the daemon stopped while it ran' END
                WHERE state IN ('running', 'paused')
                """, arguments: [Self.timestamp(Date())])
            try db.execute(sql: """
                UPDATE queue_entry SET state = 'held', note = 'held after a daemon restart: release it to run it'
                WHERE state = 'queued' AND autostart = 0
                """)
        }
    }

    static func date(_ text: String) -> Date? {
        try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// A campaign run by the daemon, as stored.
public struct DaemonCampaign: Sendable, Hashable {
    public var id: Int64
    public var name: String
    public var owner: String?
    public var specPath: String
    public var specText: String
    public var protocolPath: String?
    public var protocolText: String?
    public var needsApproval: Bool
    /// The budget given when it was started, when it overrides the file's.
    public var budget: Int?
    public var state: String?
    public var note: String?
    public var createdAt: String
}

extension LabDatabase {
    public func createDaemonCampaign(name: String, spec: SourceText, protocolSource: SourceText, objective: String?,
                                     direction: String?, seed: UInt64, owner: String, needsApproval: Bool,
                                     budget: Int? = nil) throws -> Int64 {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO campaign (name, spec_text, spec_sha256, objective, direction, seed, created_at, owner, spec_path,
                                      protocol_path, protocol_text, needs_approval, budget, state)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')
                """, arguments: [name, spec.text, spec.sha256, objective, direction, Int64(bitPattern: seed),
                                 Self.timestamp(Date()), owner, spec.path, protocolSource.path, protocolSource.text, needsApproval,
                                 budget])
            let id = db.lastInsertedRowID
            try AuditLog.append(db, actor: auditActor, action: "campaign started", subject: "campaign \(id)", detail: [
                "name": name, "owner": owner, "spec": spec.path, "spec_sha256": spec.sha256, "protocol": protocolSource.path,
                "protocol_sha256": protocolSource.sha256, "needs_approval": needsApproval, "budget": budget,
            ])
            return id
        }
    }

    public func setCampaignState(_ id: Int64, _ state: String, note: String?) throws {
        try pool.write { db in
            let before = try String.fetchOne(db, sql: "SELECT state FROM campaign WHERE id = ?", arguments: [id])
            try db.execute(sql: "UPDATE campaign SET state = ?, state_note = ? WHERE id = ?", arguments: [state, note, id])
            if before != state {
                try AuditLog.append(db, actor: auditActor, action: state == "running" ? "campaign resumed" : "campaign \(state)",
                                    subject: "campaign \(id)", detail: ["from": before, "note": note])
            }
        }
    }

    public func daemonCampaigns() throws -> [DaemonCampaign] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM campaign ORDER BY id").map(Self.daemonCampaign)
        }
    }

    public func daemonCampaign(_ id: Int64) throws -> DaemonCampaign? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM campaign WHERE id = ?", arguments: [id]).map(Self.daemonCampaign) }
    }

    /// After a restart no campaign runs: those that were running are stopped until someone resumes them.
    public func stopRunningCampaigns() throws {
        try pool.write { db in
            for id in try Int64.fetchAll(db, sql: "SELECT id FROM campaign WHERE state = 'running' ORDER BY id") {
                try AuditLog.append(db, actor: auditActor, action: "campaign stopped", subject: "campaign \(id)",
                                    detail: ["note": "the daemon stopped; resume it to go on"])
            }
            try db.execute(sql: "UPDATE campaign SET state = 'stopped', state_note = 'the daemon stopped; resume it to go on' WHERE state = 'running'")
        }
    }

    static func daemonCampaign(_ row: Row) -> DaemonCampaign {
        DaemonCampaign(id: row["id"], name: row["name"], owner: row["owner"], specPath: row["spec_path"] ?? row["name"], specText: row["spec_text"],
                       protocolPath: row["protocol_path"], protocolText: row["protocol_text"],
                       needsApproval: row["needs_approval"], budget: row["budget"], state: row["state"], note: row["state_note"],
                       createdAt: row["created_at"])
    }
}
