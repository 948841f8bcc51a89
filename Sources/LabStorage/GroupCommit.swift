import Dispatch
import Foundation
import Glibc
import GRDB
import GRDBSQLite
import LabCore
import Synchronization

/// The write path for a run's readings and events: group commit. Each call hands its rows over and
/// returns; one transaction commits everything handed over within a few milliseconds (or as soon as
/// `batchRows` rows wait), so a fast instrument is not held to one fsync per step. What is promised:
/// - one call's rows (one step's readings) commit together, in one transaction, in call order;
/// - a run's end is committed only after all its rows (`finishRun` flushes first, in the same
///   transaction), and `flush()` returns once everything handed over so far is committed;
/// - readers (the API) only ever see committed rows, so nothing is acknowledged before it is durable.
/// A crash can lose what was handed over in the last few milliseconds and not yet committed: no
/// one has been told of it.
final class GroupCommit: Sendable {
    enum Item: Sendable {
        case measurements(run: Int64, [MeasurementRecord])
        case event(run: Int64, RunEvent)
        case traffic(instrument: String, TrafficDirection, [UInt8], Date)

        var rows: Int {
            switch self {
            // An array counts as a row per KiB of its values: memory, not rows, is what is bounded.
            case .measurements(_, let m): m.reduce(0) { $0 + 1 + ($1.array?.values.count ?? 0) / 128 }
            case .event, .traffic: 1
            }
        }
    }

    private struct State {
        var pending: [Item] = []
        var rows = 0
        var scheduled = false
        /// Callers waiting for the commit of what was pending when they asked.
        var waiting: [CheckedContinuation<Void, any Error>] = []
        /// A commit that failed: every later call is refused with it (the disk is full, the file gone).
        var failure: LabError?
    }

    /// How long rows may wait for their commit, and how many make a commit start at once.
    static let maximumDelay: DispatchTimeInterval = .milliseconds(5)
    static let batchRows = 2_000
    /// Past this many waiting rows, a caller waits for the commit: memory stays bounded.
    static let highWatermark = 20_000

    private let pool: DatabasePool
    private let state = Mutex(State())
    /// Commits run here, one at a time, off Swift's cooperative pool.
    private let queue = DispatchQueue(label: "serendip.storage.group-commit")
    /// Past this size the -wal file is checkpointed and truncated after a commit. SQLite's own
    /// checkpoints (every 1,000 pages) only reuse the file, and cannot move past a reader's
    /// snapshot: a long export or a stalled client would let it grow without end.
    let walLimit: Int

    init(pool: DatabasePool, walLimit: Int = 64 << 20) {
        self.pool = pool
        self.walLimit = walLimit
    }

    /// Hands rows over for the next commit.
    func append(_ item: Item) async throws {
        let (full, failure) = hand(item)
        if let failure { throw failure }
        if full { try await flush() }
    }

    /// Hands rows over without ever waiting, for a caller that must not block (a transport's
    /// thread recording its traffic). After a failed commit they are dropped: the runs are pausing.
    func enqueue(_ item: Item) {
        _ = hand(item)
    }

    /// Adds to what the next commit takes, and schedules it; whether the caller should now wait.
    private func hand(_ item: Item) -> (full: Bool, failure: LabError?) {
        state.withLock { s in
            guard s.failure == nil else { return (false, s.failure) }
            s.pending.append(item)
            s.rows += item.rows
            if s.rows >= Self.batchRows {
                queue.async { self.commit() }
            } else if !s.scheduled {
                s.scheduled = true
                queue.asyncAfter(deadline: .now() + Self.maximumDelay) { self.commit() }
            }
            return (s.rows >= Self.highWatermark, nil)
        }
    }

    /// After a failed commit every call is refused, so that no later row is stored past a lost
    /// one; this lets writing start again (a person made room on the disk and resumes the runs,
    /// which go on from a checkpoint that was committed). A disk still full fails the next commit.
    func retry() {
        state.withLock { $0.failure = nil }
    }

    /// Returns once everything handed over so far is committed.
    func flush() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let failure: LabError? = state.withLock { s in
                if let failure = s.failure { return failure }
                s.waiting.append(continuation)
                return nil
            }
            if let failure { return continuation.resume(throwing: failure) }
            queue.async { self.commit() }
        }
    }

    /// Runs `body` in the same transaction as everything pending, after it (`finishRun`, `beginRun`).
    func commit<T: Sendable>(with body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                let (items, waiting) = self.take()
                do {
                    let value = try self.pool.write { db -> T in
                        try Self.insert(items, db)
                        return try body(db)
                    }
                    self.boundWAL()
                    waiting.forEach { $0.resume() }
                    continuation.resume(returning: value)
                } catch {
                    let failure = self.fail(error)
                    waiting.forEach { $0.resume(throwing: failure) }
                    continuation.resume(throwing: failure)
                }
            }
        }
    }

    /// On the queue: commits what is pending and wakes those waiting for it.
    private func commit() {
        let (items, waiting) = take()
        guard !items.isEmpty || !waiting.isEmpty else { return }
        do {
            if !items.isEmpty {
                try pool.write { db in try Self.insert(items, db) }
                boundWAL()
            }
            waiting.forEach { $0.resume() }
        } catch {
            let failure = fail(error)
            waiting.forEach { $0.resume(throwing: failure) }
        }
    }

    /// On the queue, after a commit: a -wal file past `walLimit` is checkpointed whole and
    /// truncated (waiting, within the busy timeout, for readers to let go of older snapshots). A
    /// checkpoint that cannot finish now is tried again after the next commit; the data are safe
    /// either way, so its failure is not the run's.
    private func boundWAL() {
        var info = stat()
        guard stat(pool.path + "-wal", &info) == 0, Int(info.st_size) > walLimit else { return }
        _ = try? pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
    }

    private func take() -> ([Item], [CheckedContinuation<Void, any Error>]) {
        state.withLock { s in
            defer { s.pending = []; s.rows = 0; s.scheduled = false; s.waiting = [] }
            return (s.pending, s.waiting)
        }
    }

    private func fail(_ error: any Error) -> LabError {
        let failure = LabError(.storage, "cannot store the run's data in \(pool.path): \(Self.reason(error))", cause: error)
        state.withLock { $0.failure = $0.failure ?? failure }
        return failure
    }

    /// What a lab manager can act on, rather than SQLite's code.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? DatabaseError else { return "\(error)" }
        switch error.resultCode {
        case .SQLITE_FULL: return "the disk is full (or the process may not make files larger); make room, then resume the paused runs"
        case .SQLITE_IOERR: return "a write failed (\(error.message ?? "I/O error"): a full disk, a file-size limit or a failing disk); make room or check the disk, then resume the paused runs"
        default: return error.message ?? "\(error)"
        }
    }

    private static func insert(_ items: [Item], _ db: Database) throws {
        let measurement = try db.cachedStatement(sql: """
            INSERT INTO measurement (run_id, step_index, role, channel, instrument, series, value, unit, wall_time, monotonic_time)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let array = try db.cachedStatement(sql: ArrayTable.insertSQL)
        let event = try db.cachedStatement(sql: """
            INSERT INTO run_event (run_id, kind, message, wall_time, monotonic_time) VALUES (?, ?, ?, ?, ?)
            """)
        var times = Timestamps()
        // A channel's spectra share their axes: encoded once, not once per reading.
        var axes: (axes: [ArrayAxis], json: String)?
        for item in items {
            switch item {
            case .measurements(let run, let records):
                // Bound straight to SQLite: a high-rate instrument's readings are most of the rows.
                let row = RawRow(measurement.sqliteStatement, db)
                let arrayRow = RawRow(array.sqliteStatement, db)
                for m in records {
                    if let a = m.array {
                        // One blob per reading, its bytes handed to SQLite as they lie in memory.
                        arrayRow.bind(1, run); arrayRow.bind(2, Int64(m.stepIndex)); arrayRow.bind(3, m.channel.instrument)
                        arrayRow.bind(4, m.channel.channel); arrayRow.bind(5, m.instrument); arrayRow.bind(6, m.series)
                        arrayRow.bind(7, m.unit); arrayRow.bind(8, ArrayReading.dtype); arrayRow.bind(9, ArrayTable.shapeJSON(a.shape))
                        if axes?.axes != a.axes { axes = (a.axes, ArrayTable.axesJSON(a.axes)) }
                        arrayRow.bind(10, axes!.json); arrayRow.bind(11, blob: a.values)
                        arrayRow.bind(12, times.text(m.wallTime)); arrayRow.bind(13, m.monotonicTime)
                        try arrayRow.insert()
                        continue
                    }
                    row.bind(1, run); row.bind(2, Int64(m.stepIndex)); row.bind(3, m.channel.instrument)
                    row.bind(4, m.channel.channel); row.bind(5, m.instrument); row.bind(6, m.series); row.bind(7, m.value)
                    row.bind(8, m.unit); row.bind(9, times.text(m.wallTime)); row.bind(10, m.monotonicTime)
                    try row.insert()
                }
            case .event(let run, let e):
                try event.execute(arguments: [run, e.kind.rawValue, e.message, LabDatabase.timestamp(e.wallTime), e.monotonicTime])
            case .traffic(let instrument, let direction, let bytes, let time):
                try db.cachedStatement(sql: "INSERT INTO instrument_traffic (instrument, direction, bytes, wall_time) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [instrument, direction.rawValue, Data(bytes), times.text(time)])
            }
        }
    }
}

/// One prepared INSERT, bound and stepped with SQLite's own calls (no argument boxing per value).
struct RawRow {
    let statement: SQLiteStatement
    let db: Database
    init(_ statement: SQLiteStatement, _ db: Database) { self.statement = statement; self.db = db }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(statement, index, value) }
    func bind(_ index: Int32, _ value: Double) { sqlite3_bind_double(statement, index, value) }
    func bind(_ index: Int32, _ value: String) {
        var text = value
        text.withUTF8 { bytes in
            _ = sqlite3_bind_text(statement, index, bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) },
                                  Int32(bytes.count), Self.transient)
        }
    }

    func insert() throws {
        let code = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    /// SQLite copies the text before the call returns.
    static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

/// `LabDatabase.timestamp` of many times in a row: the date and time of day are formatted once per
/// second, the milliseconds appended (the same text, checked against the formatter in the tests).
struct Timestamps {
    private var second = Double.nan
    private var prefix = ""

    mutating func text(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        let whole = t.rounded(.down)
        if whole != second {
            second = whole
            prefix = String(LabDatabase.timestamp(Date(timeIntervalSince1970: whole)).dropLast(4))   // "….000Z" → "…."
        }
        let millis = min(999, Int(((t - whole) * 1000).rounded(.down)))
        return prefix + String(unsafeUninitializedCapacity: 4) { buffer in
            buffer[0] = UInt8(ascii: "0") + UInt8(millis / 100)
            buffer[1] = UInt8(ascii: "0") + UInt8(millis / 10 % 10)
            buffer[2] = UInt8(ascii: "0") + UInt8(millis % 10)
            buffer[3] = UInt8(ascii: "Z")
            return 4
        }
    }
}
