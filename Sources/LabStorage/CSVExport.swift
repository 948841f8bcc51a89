import GRDB
import GRDBSQLite

/// A run's readings as CSV rows, encoded straight from SQLite's columns into a byte buffer: a
/// million readings export in about a second, where building a row object and strings per reading
/// took seven. The text is the same as `serendip export --format csv` documents: columns run, step,
/// instrument, role, channel, series, value, unit, wall_time, monotonic_time; a field with a comma,
/// quote or line break quoted; numbers in the shortest form that reads back as the same double.
extension LabDatabase {
    /// Calls `write` with chunks of about 64 KiB, in reading order.
    public func writeReadingsCSV(run: Int64, _ write: (UnsafeRawBufferPointer) throws -> Void) throws {
        try pool.read { db in
            let statement = try db.makeStatement(sql: """
                SELECT run_id, step_index, instrument, role, channel, series, value, unit, wall_time, monotonic_time
                FROM measurement WHERE run_id = ? ORDER BY id
                """)
            let raw = statement.sqliteStatement
            sqlite3_bind_int64(raw, 1, run)
            defer { sqlite3_reset(raw) }
            var row = CSVRow()
            while true {
                let code = sqlite3_step(raw)
                if code == SQLITE_DONE { break }
                guard code == SQLITE_ROW else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
                }
                row.integer(sqlite3_column_int64(raw, 0)); row.comma()
                row.integer(sqlite3_column_int64(raw, 1))
                for column in Int32(2)...5 { row.comma(); row.text(raw, column) }
                row.comma(); row.number(sqlite3_column_double(raw, 6))
                row.comma(); row.text(raw, 7)
                row.comma(); row.text(raw, 8)
                row.comma(); row.number(sqlite3_column_double(raw, 9))
                row.bytes.append(UInt8(ascii: "\n"))
                if row.bytes.count >= 1 << 16 {
                    try row.bytes.withUnsafeBytes(write)
                    row.bytes.removeAll(keepingCapacity: true)
                }
            }
            if !row.bytes.isEmpty { try row.bytes.withUnsafeBytes(write) }
        }
    }
}

private struct CSVRow {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(1 << 16 + 1024) }

    mutating func comma() { bytes.append(UInt8(ascii: ",")) }

    mutating func integer(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            for i in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[i]) }
        }
    }

    /// Swift's `description` is the shortest decimal that reads back as the same double.
    mutating func number(_ value: Double) {
        guard value.isFinite else { return bytes.append(contentsOf: (value.isNaN ? "nan" : value < 0 ? "-inf" : "inf").utf8) }
        bytes.append(contentsOf: value.description.utf8)
    }

    mutating func text(_ statement: SQLiteStatement, _ column: Int32) {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let start = sqlite3_column_text(statement, column) else { return }
        let field = UnsafeBufferPointer(start: start, count: count)
        guard field.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 10 || $0 == 13 }) else {
            return bytes.append(contentsOf: field)
        }
        bytes.append(UInt8(ascii: "\""))
        for byte in field {
            if byte == UInt8(ascii: "\"") { bytes.append(byte) }
            bytes.append(byte)
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
