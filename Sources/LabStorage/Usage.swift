public import Foundation
import GRDB

/// One instrument held by one run, clipped to a reporting window: the unit of usage accounting.
/// A run holds every instrument assigned to it from its start to its end, whatever it does in
/// between (a paused run still holds its instruments: no other run may use them).
public struct InstrumentInterval: Sendable, Hashable {
    public var run: Int64
    /// The lab's name for the instrument (`run_instrument.instrument`).
    public var instrument: String
    /// Who ran it: the queue entry's owner (stored as the run's operator).
    public var user: String
    /// The project its queue entry was submitted for; nil for none.
    public var project: String?
    public var start: Date
    public var end: Date

    public var seconds: Double { end.timeIntervalSince(start) }
}

extension LabDatabase {
    /// Every (run, instrument) interval that overlaps [from, to), clipped to it. A run still running
    /// counts until `now`; an interrupted one until the restart that recorded it as interrupted.
    public func instrumentIntervals(from: Date, to: Date, now: Date = Date()) throws -> [InstrumentInterval] {
        let rows = try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT DISTINCT run.id, run_instrument.instrument, run.operator, run.started_at, run.ended_at,
                       (SELECT project FROM queue_entry WHERE queue_entry.run_id = run.id LIMIT 1) AS project
                FROM run JOIN run_instrument ON run_instrument.run_id = run.id
                WHERE run.started_at < ? ORDER BY run.id, run_instrument.instrument
                """, arguments: [Self.timestamp(to)])
        }
        return rows.compactMap { row in
            guard let started = Self.date(row["started_at"]) else { return nil }
            let ended = (row["ended_at"] as String?).flatMap(Self.date) ?? now
            let start = max(started, from), end = min(ended, to)
            guard start < end else { return nil }
            return InstrumentInterval(run: row["id"], instrument: row["instrument"], user: row["operator"], project: row["project"],
                                      start: start, end: end)
        }
    }
}
