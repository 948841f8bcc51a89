public import Foundation
public import GRDB
public import LabCore

/// The daemon's one SQLite database: WAL, `synchronous=FULL` (acknowledged means durable),
/// foreign keys and CHECK constraints, named append-only migrations. Its files are owner-only (0600),
/// as private as the API socket: they hold every run and the campaign files.
public final class LabDatabase: Sendable {
    public let path: String
    public let pool: DatabasePool
    /// Readings and events go through group commit (see `GroupCommit`).
    let writer: GroupCommit
    /// Who the state changes this process stores are audited as: `daemon`, or a campaign run outside one.
    public let auditActor: String

    public init(path: String, auditActor: String = "daemon") throws {
        self.path = path
        self.auditActor = auditActor
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            try PrivateFile.create(path)
            pool = try DatabasePool(path: path, configuration: configuration)
            writer = GroupCommit(pool: pool)
            try Self.migrator.migrate(pool)
            // SQLite gives -wal and -shm the database's mode; files left by an older version are tightened here.
            for file in [path, path + "-wal", path + "-shm"] { try PrivateFile.restrict(file) }
        } catch {
            throw LabError(.storage, "cannot open database \(path)", cause: error)
        }
    }

    /// Opens an existing database to read, never to write: no migrations, no mode changes, no
    /// checkpoints. A WAL reader, so it sees what a running daemon has committed and never blocks it.
    public init(readingOnly path: String) throws {
        self.path = path
        auditActor = "reader"
        var configuration = Configuration()
        configuration.readonly = true
        do {
            guard FileManager.default.fileExists(atPath: path) else {
                throw LabError(.storage, "no database at \(path) (no daemon has used this data directory yet)")
            }
            // A process with the database open (a daemon) always has its -wal beside it. Without
            // one nothing is writing: read it as immutable, so that SQLite creates no -wal or -shm
            // (a reader must leave no file behind, and a read-only directory must do).
            let idle = !FileManager.default.fileExists(atPath: path + "-wal")
            let uri = "file:" + (path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path)
            pool = try DatabasePool(path: idle ? uri + "?immutable=1" : path, configuration: configuration)
            writer = GroupCommit(pool: pool)
        } catch let error as LabError {
            throw error
        } catch {
            throw LabError(.storage, "cannot read database \(path)", cause: error)
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: campaigns, runs, provenance, measurements, events") { db in
            try db.execute(sql: """
                CREATE TABLE campaign (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    spec_text TEXT NOT NULL,
                    spec_sha256 TEXT NOT NULL,
                    objective TEXT NOT NULL,
                    direction TEXT NOT NULL CHECK (direction IN ('maximize', 'minimize')),
                    seed INTEGER NOT NULL,
                    created_at TEXT NOT NULL
                );
                CREATE TABLE run (
                    id INTEGER PRIMARY KEY,
                    campaign_id INTEGER REFERENCES campaign(id),
                    protocol_name TEXT NOT NULL,
                    protocol_path TEXT NOT NULL,
                    protocol_sha256 TEXT NOT NULL,
                    protocol_text TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'aborted', 'interrupted')),
                    chosen_by TEXT NOT NULL,
                    proposal_id TEXT,
                    operator TEXT NOT NULL,
                    software_version TEXT NOT NULL,
                    error TEXT,
                    started_at TEXT NOT NULL,
                    started_monotonic REAL NOT NULL,
                    ended_at TEXT
                );
                CREATE TABLE run_parameter (
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    name TEXT NOT NULL,
                    value REAL NOT NULL,
                    unit TEXT NOT NULL,
                    PRIMARY KEY (run_id, name)
                );
                CREATE TABLE run_instrument (
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    role TEXT NOT NULL,
                    instrument TEXT NOT NULL,
                    driver TEXT NOT NULL,
                    driver_sha256 TEXT NOT NULL,
                    address TEXT NOT NULL,
                    PRIMARY KEY (run_id, role)
                );
                CREATE TABLE measurement (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    step_index INTEGER NOT NULL,
                    role TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    instrument TEXT NOT NULL,
                    series TEXT NOT NULL,
                    value REAL NOT NULL,
                    unit TEXT NOT NULL,
                    wall_time TEXT NOT NULL,
                    monotonic_time REAL NOT NULL
                );
                CREATE INDEX measurement_by_run ON measurement(run_id, series);
                CREATE TABLE run_output (
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    name TEXT NOT NULL,
                    value REAL NOT NULL,
                    unit TEXT NOT NULL,
                    PRIMARY KEY (run_id, name)
                );
                CREATE TABLE run_event (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    kind TEXT NOT NULL,
                    message TEXT NOT NULL,
                    wall_time TEXT NOT NULL,
                    monotonic_time REAL NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2: text parameter values (choices)") { db in
            try db.execute(sql: """
                CREATE TABLE run_parameter_v2 (
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    name TEXT NOT NULL,
                    value REAL,
                    text_value TEXT,
                    unit TEXT NOT NULL,
                    PRIMARY KEY (run_id, name),
                    CHECK ((value IS NULL) <> (text_value IS NULL))
                );
                INSERT INTO run_parameter_v2 (run_id, name, value, unit) SELECT run_id, name, value, unit FROM run_parameter;
                DROP TABLE run_parameter;
                ALTER TABLE run_parameter_v2 RENAME TO run_parameter;
                """)
        }
        // Sweeps have no objective; a campaign's objectives are in its stored spec.
        migrator.registerMigration("v3: campaigns without an objective (sweeps)", foreignKeyChecks: .deferred) { db in
            try db.execute(sql: """
                CREATE TABLE campaign_v3 (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    spec_text TEXT NOT NULL,
                    spec_sha256 TEXT NOT NULL,
                    objective TEXT,
                    direction TEXT CHECK (direction IN ('maximize', 'minimize')),
                    seed INTEGER NOT NULL,
                    created_at TEXT NOT NULL,
                    CHECK ((objective IS NULL) = (direction IS NULL))
                );
                INSERT INTO campaign_v3 SELECT * FROM campaign;
                DROP TABLE campaign;
                ALTER TABLE campaign_v3 RENAME TO campaign;
                """)
        }
        QueueTable.register(&migrator)
        AlertTable.register(&migrator)
        QueueTable.registerPausedState(&migrator)
        AuditLog.register(&migrator)
        TrafficTable.register(&migrator)
        registerPagedReadings(&migrator)
        registerProvenance(&migrator)
        ArrayTable.register(&migrator)
        MeasurementTable.register(&migrator)
        QueueTable.registerMissingBudget(&migrator)
        return migrator
    }

    /// Why a run is `interrupted`, for its `error` column.
    public static let interruptedError = "interrupted: the process running it stopped without ending it (killed or crashed)"

    /// After a restart, a run that was running is interrupted, never resumed by itself. `restart`
    /// adds, per run, what the restart did about its instruments (only the caller knows).
    @discardableResult
    public func interruptRunningRuns(restart: [Int64: String] = [:], restartedAt: Date = Date()) throws -> Int {
        try pool.write { db in
            let now = Self.timestamp(restartedAt)
            // A run paused by a daemon that stopped cleanly is not a crash, and says so.
            let runs = try Row.fetchAll(db, sql: """
                SELECT r.id, q.state FROM run r LEFT JOIN queue_entry q ON q.run_id = r.id WHERE r.state = 'running' ORDER BY r.id
                """)
            for row in runs {
                let run: Int64 = row[0]
                let paused = (row[1] as String?) == "paused"
                let error = (paused ? Self.stoppedWhilePausedError : Self.interruptedError) + (restart[run].map { "; " + $0 } ?? "")
                try AuditLog.append(db, actor: auditActor, action: "run interrupted", subject: "run \(run)",
                                    detail: ["error": error, "restart": restart[run]])
                // It ended when it last recorded something before this restart (its pause, or its last
                // step), not at the restart: no instrument time is counted for the hours no daemon ran it.
                try db.execute(sql: """
                    UPDATE run SET state = 'interrupted', error = ?,
                        ended_at = COALESCE((SELECT max(wall_time) FROM run_event WHERE run_id = ? AND wall_time < ?), ?)
                    WHERE id = ?
                    """, arguments: [error, run, now, now, run])
            }
            return runs.count
        }
    }

    /// Why a run a cleanly stopped daemon left paused is `interrupted`, for its `error` column.
    public static let stoppedWhilePausedError = "interrupted: the daemon stopped while the run was paused (its instruments were in their safe state); a run is never resumed by itself after a restart"

    public func createCampaign(name: String, spec: SourceText, objective: String?, direction: String?, seed: UInt64) throws -> Int64 {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO campaign (name, spec_text, spec_sha256, objective, direction, seed, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [name, spec.text, spec.sha256, objective, direction, Int64(bitPattern: seed),
                                 Self.timestamp(Date())])
            let id = db.lastInsertedRowID
            try AuditLog.append(db, actor: auditActor, action: "campaign started", subject: "campaign \(id)",
                                detail: ["name": name, "spec": spec.path, "spec_sha256": spec.sha256])
            return id
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

extension LabDatabase: RunRecorder {
    public func beginRun(_ start: RunStart) async throws -> Int64 {
        let host = ProcessProvenance.host, build = ProcessProvenance.build   // read once per process
        return try await writer.commit { db in
            // A run from the queue takes its entry's number.
            try db.execute(sql: """
                INSERT INTO run (id, campaign_id, protocol_name, protocol_path, protocol_sha256, protocol_text, state,
                                 chosen_by, proposal_id, operator, software_version, started_at, started_monotonic,
                                 host, software_build, project)
                VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, (SELECT project FROM queue_entry WHERE id = ?))
                """, arguments: [start.queueEntryID, start.campaignID, start.protocolName, start.protocolSource.path,
                                 start.protocolSource.sha256, start.protocolSource.text, start.chosenBy,
                                 start.proposalID, start.operatorName, start.softwareVersion,
                                 Self.timestamp(start.startedAt), start.startedMonotonic, host, build, start.queueEntryID])
            let run = db.lastInsertedRowID
            for p in start.parameters {
                let (value, text, unit): (Double?, String?, String) = switch p.value {
                case .quantity(let q): (q.value, nil, q.unit.symbol)
                case .bool(let b): (b ? 1 : 0, nil, "bool")
                case .text(let t): (nil, t, "")
                }
                try db.execute(sql: "INSERT INTO run_parameter (run_id, name, value, text_value, unit) VALUES (?, ?, ?, ?, ?)",
                               arguments: [run, p.name, value, text, unit])
            }
            if let entry = start.queueEntryID {
                try db.execute(sql: "UPDATE queue_entry SET state = 'running', run_id = ? WHERE id = ?", arguments: [run, entry])
            }
            for (role, identity) in start.instruments {
                try db.execute(sql: """
                    INSERT INTO run_instrument (run_id, role, instrument, driver, driver_sha256, address, device_query, device_answer)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [run, role, identity.name, identity.driver, identity.driverSHA256, identity.address,
                                     identity.deviceQuery, identity.deviceAnswer])
            }
            try AuditLog.append(db, actor: self.auditActor, action: "run started", subject: "run \(run)", detail: [
                "protocol": start.protocolName, "protocol_sha256": start.protocolSource.sha256, "operator": start.operatorName,
                "chosen_by": start.chosenBy, "proposal": start.proposalID, "campaign": start.campaignID,
                "queue_entry": start.queueEntryID, "instruments": start.instruments.mapValues(\.name),
            ])
            return run
        }
    }

    /// Hands one step's readings to group commit: they commit together within a few milliseconds.
    public func record(_ measurements: [MeasurementRecord], run: Int64) async throws {
        guard !measurements.isEmpty else { return }
        try await writer.append(.measurements(run: run, measurements))
    }

    public func note(_ event: RunEvent, run: Int64) async throws {
        try await writer.append(.event(run: run, event))
    }

    /// Returns once every reading and event handed over so far is committed.
    public func flush() async throws {
        try await writer.flush()
    }

    /// Moves everything in the -wal file into the database file and empties the -wal.
    public func checkpointWAL() throws {
        try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
    }

    /// Lets readings and events be written again after a failed commit (see `GroupCommit.retry`).
    public func retryWrites() {
        writer.retry()
    }

    /// Commits the run's end in the same transaction as, and after, all of its readings and events.
    public func finishRun(_ run: Int64, outcome: RunOutcome, outputs: [String: Quantity], error: String?) async throws {
        try await writer.commit { db in
            for (name, q) in outputs {
                try db.execute(sql: "INSERT INTO run_output (run_id, name, value, unit) VALUES (?, ?, ?, ?)",
                               arguments: [run, name, q.value, q.unit.symbol])
            }
            let now = Self.timestamp(Date())
            try db.execute(sql: "UPDATE run SET state = ?, error = ?, ended_at = ? WHERE id = ?",
                           arguments: [outcome.rawValue, error, now, run])
            // The queue entry ends with its run, in the same transaction; its note is the run's error
            // (a pause's note would be stale).
            try db.execute(sql: "UPDATE queue_entry SET state = ?, ended_at = ?, note = ? WHERE run_id = ?",
                           arguments: [QueueState(outcome).rawValue, now, error, run])
            try AuditLog.append(db, actor: self.auditActor, action: "run \(outcome.rawValue)", subject: "run \(run)",
                                detail: ["error": error, "outputs": outputs.isEmpty ? nil : outputs.mapValues { "\($0.value) \($0.unit.symbol)" }])
        }
    }
}
