import Dispatch
import Foundation
import GRDB
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

        var rows: Int {
            switch self {
            case .measurements(_, let m): m.count
            case .event: 1
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

    init(pool: DatabasePool) { self.pool = pool }

    /// Hands rows over for the next commit.
    func append(_ item: Item) async throws {
        let (full, failure): (Bool, LabError?) = state.withLock { s in
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
        if let failure { throw failure }
        if full { try await flush() }
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
            if !items.isEmpty { try pool.write { db in try Self.insert(items, db) } }
            waiting.forEach { $0.resume() }
        } catch {
            let failure = fail(error)
            waiting.forEach { $0.resume(throwing: failure) }
        }
    }

    private func take() -> ([Item], [CheckedContinuation<Void, any Error>]) {
        state.withLock { s in
            defer { s.pending = []; s.rows = 0; s.scheduled = false; s.waiting = [] }
            return (s.pending, s.waiting)
        }
    }

    private func fail(_ error: any Error) -> LabError {
        let failure = LabError(.storage, "cannot store the run's data", cause: error)
        state.withLock { $0.failure = $0.failure ?? failure }
        return failure
    }

    private static func insert(_ items: [Item], _ db: Database) throws {
        let measurement = try db.cachedStatement(sql: """
            INSERT INTO measurement (run_id, step_index, role, channel, instrument, series, value, unit, wall_time, monotonic_time)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let event = try db.cachedStatement(sql: """
            INSERT INTO run_event (run_id, kind, message, wall_time, monotonic_time) VALUES (?, ?, ?, ?, ?)
            """)
        for item in items {
            switch item {
            case .measurements(let run, let records):
                for m in records {
                    try measurement.execute(arguments: [run, m.stepIndex, m.channel.instrument, m.channel.channel, m.instrument,
                                                        m.series, m.value, m.unit, LabDatabase.timestamp(m.wallTime), m.monotonicTime])
                }
            case .event(let run, let e):
                try event.execute(arguments: [run, e.kind.rawValue, e.message, LabDatabase.timestamp(e.wallTime), e.monotonicTime])
            }
        }
    }
}
