public import Foundation

/// Expected start and end times of the queue: the scheduling policy replayed on a virtual timeline
/// with each run's estimated duration (from a simulation of its protocol). None of the peers offer
/// this; a person planning the day wants it.
public enum Forecast {
    public struct Item: Sendable {
        public var id: Int64
        public var needs: [String: String]
        /// Estimated wall-clock seconds; nil when not (yet) estimated.
        public var duration: Double?
        /// Seconds from now before which it may not start.
        public var notBefore: Double?
        /// For a running entry: how long it has run, and the instruments it holds.
        public var runningFor: Double?
        public var instruments: [String]

        public init(id: Int64, needs: [String: String], duration: Double?, notBefore: Double? = nil,
                    runningFor: Double? = nil, instruments: [String] = []) {
            self.id = id; self.needs = needs; self.duration = duration; self.notBefore = notBefore
            self.runningFor = runningFor; self.instruments = instruments
        }
    }

    public struct Window: Sendable, Hashable {
        public var start: Date
        /// Nil when the entry's duration is not known yet.
        public var end: Date?

        public init(start: Date, end: Date?) { self.start = start; self.end = end }
    }

    /// At most this many waiting entries are forecast; later ones have no window.
    public static let horizon = 500

    /// `items` in queue order. Entries whose start depends on a run of unknown duration get no window.
    public static func windows(_ items: [Item], pool: [String: String], stations: [String: String] = [:], now: Date) -> [Int64: Window] {
        var windows: [Int64: Window] = [:]
        var freeAt: [String: Double] = [:]          // instance → seconds from now (infinity: unknown)
        for item in items where item.runningFor != nil {
            let remaining = item.duration.map { max(0, $0 - item.runningFor!) } ?? .infinity
            for instance in item.instruments { freeAt[instance] = remaining }
            windows[item.id] = Window(start: now - item.runningFor!, end: remaining.isFinite ? now + remaining : nil)
        }
        var pending = Array(items.filter { $0.runningFor == nil }.prefix(horizon))
        var t = 0.0
        while !pending.isEmpty {
            let free = pool.filter { (freeAt[$0.key] ?? 0) <= t }
            let candidates = pending.filter { ($0.notBefore ?? 0) <= t }.map { SchedulePolicy.Candidate(id: $0.id, needs: $0.needs) }
            for start in SchedulePolicy.starts(candidates, free: free, stations: stations) {
                let item = pending.first { $0.id == start.id }!
                let end = t + (item.duration ?? .infinity)
                for instance in start.assignment.values { freeAt[instance] = end }
                windows[item.id] = Window(start: now + t, end: end.isFinite ? now + end : nil)
                pending.removeAll { $0.id == start.id }
            }
            let next = (freeAt.values.filter { $0 > t } + pending.compactMap(\.notBefore).filter { $0 > t }).min()
            guard let next, next.isFinite else { break }
            t = next
        }
        return windows
    }
}
