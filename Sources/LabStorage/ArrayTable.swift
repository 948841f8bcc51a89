import Foundation
import GRDB
import GRDBSQLite
public import LabCore

/// Array readings (spectra, image rows): one row per reading, the values as one little-endian
/// float64 blob beside their shape and axes as JSON. A row per element would be thousands of rows
/// a reading, and each would repeat the reading's provenance.
enum ArrayTable {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v11: array measurements") { db in
            try db.execute(sql: """
                CREATE TABLE measurement_array (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL REFERENCES run(id),
                    step_index INTEGER NOT NULL,
                    role TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    instrument TEXT NOT NULL,
                    series TEXT NOT NULL,
                    unit TEXT NOT NULL,
                    dtype TEXT NOT NULL CHECK (dtype IN ('float64')),
                    shape TEXT NOT NULL CHECK (json_valid(shape) AND json_type(shape) = 'array'),
                    axes TEXT NOT NULL CHECK (json_valid(axes) AND json_array_length(axes) = json_array_length(shape)),
                    data BLOB NOT NULL CHECK (typeof(data) = 'blob' AND length(data) > 0 AND length(data) % 8 = 0
                                              AND (json_array_length(shape) != 1 OR length(data) = 8 * json_extract(shape, '$[0]'))),
                    wall_time TEXT NOT NULL,
                    monotonic_time REAL NOT NULL
                );
                CREATE INDEX measurement_array_by_run ON measurement_array(run_id, series);
                """)
        }
    }

    static let insertSQL = """
        INSERT INTO measurement_array (run_id, step_index, role, channel, instrument, series, unit, dtype, shape, axes, data,
                                       wall_time, monotonic_time)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    static func shapeJSON(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ",") + "]"
    }

    /// Axes as JSON; a regular grid stays two numbers, whatever its length.
    static func axesJSON(_ axes: [ArrayAxis]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: (try? encoder.encode(axes)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// The stored bytes as float64, bit for bit.
    static func values(_ data: Data) -> [Double] {
        var values = [Double](repeating: 0, count: data.count / 8)
        values.withUnsafeMutableBytes { target in _ = data.copyBytes(to: target) }
        #if _endian(big)
        values = values.map { Double(bitPattern: UInt64(littleEndian: $0.bitPattern)) }
        #endif
        return values
    }
}

/// One stored array reading, every column, the values decoded.
public struct StoredArray: Sendable, Hashable {
    public var id: Int64
    public var runID: Int64
    public var step: Int
    public var instrument: String
    public var role: String
    public var channel: String
    public var series: String
    public var unit: String
    public var dtype: String
    public var shape: [Int]
    public var axes: [ArrayAxis]
    public var values: [Double]
    public var wallTime: String
    public var monotonicTime: Double

    init(row: Row) throws {
        id = row["id"]; runID = row["run_id"]; step = row["step_index"]; instrument = row["instrument"]; role = row["role"]
        channel = row["channel"]; series = row["series"]; unit = row["unit"]; dtype = row["dtype"]
        wallTime = row["wall_time"]; monotonicTime = row["monotonic_time"]
        let decoder = JSONDecoder()
        shape = try decoder.decode([Int].self, from: Data((row["shape"] as String).utf8))
        axes = try decoder.decode([ArrayAxis].self, from: Data((row["axes"] as String).utf8))
        values = ArrayTable.values(row["data"])
    }
}

/// One array series of a run, summarised for `serendip show`.
public struct ArraySeriesSummary: Sendable, Hashable, Codable {
    public var series: String
    public var unit: String
    public var dtype: String
    public var shape: [Int]
    public var count: Int
}

extension LabDatabase {
    /// Hands each array reading of `run` to `body`, in the order they were stored, one at a time.
    public func forEachArray(run: Int64, _ body: (StoredArray) throws -> Void) throws {
        try pool.read { db in
            // A database opened read-only may predate the table.
            guard try db.tableExists("measurement_array") else { return }
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM measurement_array WHERE run_id = ? ORDER BY id", arguments: [run])
            while let row = try rows.next() { try body(StoredArray(row: row)) }
        }
    }

    public func arrays(run: Int64) throws -> [StoredArray] {
        var list: [StoredArray] = []
        try forEachArray(run: run) { list.append($0) }
        return list
    }

    func arraySeries(run: Int64, _ db: Database) throws -> [ArraySeriesSummary] {
        guard try db.tableExists("measurement_array") else { return [] }
        return try Row.fetchAll(db, sql: """
            SELECT series, unit, dtype, shape, COUNT(*) AS n FROM measurement_array WHERE run_id = ?
            GROUP BY series, unit, dtype, shape ORDER BY MIN(id)
            """, arguments: [run])
            .map { row in
                ArraySeriesSummary(series: row["series"], unit: row["unit"], dtype: row["dtype"],
                                   shape: (try? JSONDecoder().decode([Int].self, from: Data((row["shape"] as String).utf8))) ?? [],
                                   count: row["n"])
            }
    }
}

extension RawRow {
    /// The values as they lie in memory: little-endian float64 on every machine Swift runs on here.
    func bind(_ index: Int32, blob values: [Double]) {
        #if _endian(big)
        let values = values.map { Double(bitPattern: $0.bitPattern.littleEndian) }
        #endif
        values.withUnsafeBytes { bytes in
            _ = sqlite3_bind_blob(statement, index, bytes.baseAddress, Int32(bytes.count), Self.transient)
        }
    }
}
