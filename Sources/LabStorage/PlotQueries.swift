public import GRDB

/// One series of a run as a plot draws it: times in seconds since the run started (its monotonic clock).
public struct SeriesTrace: Sendable {
    public var series: String
    public var unit: String
    public var times: [Double]
    public var values: [Double]
}

/// A run event placed on the run's time axis (seconds since its start).
public struct TimedRunEvent: Sendable {
    public var kind: String
    public var message: String
    public var time: Double
}

/// What a campaign optimises: the output named in its stored spec and which way is better (nil for a sweep).
public struct CampaignObjective: Sendable {
    public var name: String
    public var output: String?
    public var maximize: Bool
}

extension LabDatabase {
    /// The readings of one series of a run, in the order they were stored. `name` is a series name
    /// (`absorbance`, `reactor.temperature`) or the `role.channel` it was read from; nil if the run has neither.
    public func trace(run: Int64, named name: String) throws -> SeriesTrace? {
        try pool.read { db in
            guard let start = try Double.fetchOne(db, sql: "SELECT started_monotonic FROM run WHERE id = ?", arguments: [run]),
                  let series = try String.fetchOne(db, sql: """
                      SELECT series FROM measurement WHERE run_id = ? AND (series = ? OR role || '.' || channel = ?)
                      ORDER BY series = ? DESC, id LIMIT 1
                      """, arguments: [run, name, name, name])
            else { return nil }
            let rows = try Row.fetchAll(db, sql: "SELECT value, unit, monotonic_time FROM measurement WHERE run_id = ? AND series = ? ORDER BY id",
                                        arguments: [run, series])
            return SeriesTrace(series: series, unit: rows.first?["unit"] ?? "", times: rows.map { $0["monotonic_time"] - start },
                               values: rows.map { $0["value"] })
        }
    }

    /// The run's events with their times since its start, in the order they happened.
    public func timeline(run: Int64) throws -> [TimedRunEvent] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT kind, message, run_event.monotonic_time - run.started_monotonic AS t
                FROM run_event JOIN run ON run.id = run_event.run_id WHERE run_id = ? ORDER BY run_event.id
                """, arguments: [run])
                .map { TimedRunEvent(kind: $0["kind"], message: $0["message"], time: $0["t"]) }
        }
    }

    public func objective(campaign id: Int64) throws -> CampaignObjective? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT name, objective, direction FROM campaign WHERE id = ?", arguments: [id]).map {
                CampaignObjective(name: $0["name"], output: $0["objective"], maximize: ($0["direction"] as String?) != "minimize")
            }
        }
    }
}
