import GRDB

/// The measurement table as a high-rate instrument needs it: ids without AUTOINCREMENT (which
/// reads and writes `sqlite_sequence` on every insert; readings are never deleted, so an id is never
/// reused either way), and one index per query: a run's readings in id order, and one series of it.
enum MeasurementTable {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v12: measurements without AUTOINCREMENT", foreignKeyChecks: .deferred) { db in
            try db.execute(sql: """
                CREATE TABLE measurement_v12 (
                    id INTEGER PRIMARY KEY,
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
                INSERT INTO measurement_v12 SELECT * FROM measurement;
                DROP TABLE measurement;
                ALTER TABLE measurement_v12 RENAME TO measurement;
                CREATE INDEX measurement_by_run ON measurement(run_id, series);
                CREATE INDEX measurement_by_run_and_id ON measurement(run_id, id);
                """)
        }
    }
}
