import Foundation
import GRDB
public import LabCore

/// Every request and reply on the wire of an instrument whose lab config says `record_traffic: true`,
/// as raw bytes with the time they were sent or received whole. A run's traffic is that of its
/// instruments between its start and its end (an instrument serves one run at a time).
enum TrafficTable {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v8: instrument traffic") { db in
            try db.execute(sql: """
                CREATE TABLE instrument_traffic (
                    id INTEGER PRIMARY KEY,
                    instrument TEXT NOT NULL,
                    direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
                    bytes BLOB NOT NULL,
                    wall_time TEXT NOT NULL
                );
                CREATE INDEX instrument_traffic_by_time ON instrument_traffic(instrument, wall_time);
                """)
        }
    }
}

/// One frame or line as stored.
public struct TrafficRecord: Sendable, Hashable {
    public var instrument: String
    public var direction: TrafficDirection
    public var bytes: [UInt8]
    public var wallTime: String
}

extension LabDatabase {
    /// The tap a transport calls with each frame: handed to group commit, never waiting.
    public func trafficTap(for instrument: String) -> TrafficTap {
        let writer = self.writer
        return { direction, bytes in writer.enqueue(.traffic(instrument: instrument, direction, bytes, Date())) }
    }

    /// The traffic of a run's instruments while it ran (until now for a run not ended), in order.
    public func traffic(run: Int64) throws -> [TrafficRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.instrument, t.direction, t.bytes, t.wall_time FROM instrument_traffic t
                JOIN run r ON r.id = ? JOIN run_instrument i ON i.run_id = r.id AND i.instrument = t.instrument
                WHERE t.wall_time >= r.started_at AND (r.ended_at IS NULL OR t.wall_time <= r.ended_at)
                ORDER BY t.id
                """, arguments: [run]).map { row in
                TrafficRecord(instrument: row[0], direction: TrafficDirection(rawValue: row[1]) ?? .sent,
                              bytes: [UInt8](row[2] as Data), wallTime: row[3])
            }
        }
    }
}
