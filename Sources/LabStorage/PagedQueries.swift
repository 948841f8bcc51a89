public import GRDB

/// One page of a keyset-paged read: the rows, and where the next page starts (nil: there is no more).
public struct Page<Element: Sendable>: Sendable {
    public var rows: [Element]
    /// The id to pass as `after` for the next page; nil when nothing more can come.
    public var next: Int64?
}

extension LabDatabase {
    /// The most rows one page may hold: a page is held in memory whole, a run is never.
    public static let pageLimit = 10_000

    /// A run's readings with an id above `after`, in id order, at most `limit` of them. Keyset paging
    /// (never OFFSET): a page costs its own rows, however deep into a million-reading run it starts,
    /// and readings committed between two pages have higher ids than any already read, so a run that
    /// is still writing is paged without a row skipped or repeated. `next` is nil only once the run
    /// has ended and its last reading was handed out; while it runs, `next` is where to ask again.
    /// Returns nil if there is no such run or queue entry.
    public func readings(run: Int64, series: String? = nil, after: Int64 = 0, limit: Int) throws -> Page<MeasurementRow>? {
        precondition((1...Self.pageLimit).contains(limit), "a page holds 1 to \(Self.pageLimit) readings")
        return try pool.read { db in
            // One snapshot: if the run has ended in it, every reading of the run is in it too (the
            // end commits after them).
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM run WHERE id = ?", arguments: [run]) else {
                // A queued entry's run has not begun (it takes the entry's number): no readings yet, more to come.
                guard let entry = try String.fetchOne(db, sql: "SELECT state FROM queue_entry WHERE id = ?", arguments: [run]) else { return nil }
                return Page(rows: [], next: ["queued", "held", "awaiting_approval", "running", "paused"].contains(entry) ? after : nil)
            }
            // One row more than asked says whether another page follows.
            let rows = if let series {
                try MeasurementRow.fetchAll(db, sql: Self.seriesReadingsPage, arguments: [run, series, after, limit + 1])
            } else {
                try MeasurementRow.fetchAll(db, sql: Self.readingsPage, arguments: [run, after, limit + 1])
            }
            let page = Array(rows.prefix(limit))
            let more = rows.count > limit || state == "running"
            return Page(rows: page, next: more ? page.last?.id ?? after : nil)
        }
    }

    /// The state of the queue entry with this number, if there is one (a run takes its entry's number).
    public func queueEntryState(_ id: Int64) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT state FROM queue_entry WHERE id = ?", arguments: [id]) }
    }

    /// The names of a run's series (`measure`'s `as:` names, or `role.channel`), in name order.
    public func seriesNames(run: Int64) throws -> [String] {
        try pool.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT series FROM measurement WHERE run_id = ? ORDER BY series", arguments: [run]) }
    }

    /// Two statements, not one with `? IS NULL OR series = ?`: SQLite plans a statement once, and each
    /// of these has its own index (the series index orders by series first, then id).
    static let readingsPage = "SELECT * FROM measurement WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?"
    static let seriesReadingsPage = "SELECT * FROM measurement WHERE run_id = ? AND series = ? AND id > ? ORDER BY id LIMIT ?"

    /// Runs with an id above `after`, in id order, at most `limit` of them; `next` is nil when no
    /// later run is stored yet.
    public func runs(campaign: Int64?, after: Int64, limit: Int) throws -> Page<RunSummary> {
        precondition((1...Self.pageLimit).contains(limit), "a page holds 1 to \(Self.pageLimit) runs")
        return try pool.read { db in
            let rows = try RunSummary.fetchAll(db, sql: """
                SELECT * FROM run WHERE (? IS NULL OR campaign_id = ?) AND id > ? ORDER BY id LIMIT ?
                """, arguments: [campaign, campaign, after, limit + 1])
            let page = Array(rows.prefix(limit))
            return Page(rows: page, next: rows.count > limit ? page.last?.id : nil)
        }
    }

    /// Readings of a run in id order without a series are found through this index, not by reading
    /// every reading of the run (the series index orders by series first). v9: main's v8 is the traffic table.
    static func registerPagedReadings(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v9: readings of a run in id order (paged reads)") { db in
            try db.execute(sql: "CREATE INDEX measurement_by_run_and_id ON measurement(run_id, id)")
        }
    }
}
