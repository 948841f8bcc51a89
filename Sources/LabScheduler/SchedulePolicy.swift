import LabCore

/// Which queued experiments start now, and on which instruments: a pure function of the queue and
/// the free instruments, so that the scheduler, the forecast of start times and the tests share it.
///
/// The policy, in lab terms:
/// - Entries are considered in order: higher priority first, then the order they were queued in.
/// - An entry starts only when it can have every instrument it needs at once (no run ever holds
///   one instrument while waiting for another, so no two runs can wait on each other).
/// - A protocol's role can be served by any free instrument of its driver type; the instrument of
///   the role's own name is preferred, then the first by name.
/// - Instruments of a station (a reactor and the photometer plumbed to it) are only used together:
///   one run's instruments all come from one station, or from none (shared instruments join any).
/// - An entry that cannot start keeps the free instruments of the types it waits for, as many as
///   it needs: a later entry may use only what is left. So a large run is never starved by a
///   stream of small ones: every instrument of a type it waits for goes to it as soon as it frees.
public enum SchedulePolicy {
    public struct Candidate: Sendable, Hashable {
        public var id: Int64
        /// Role → driver type.
        public var needs: [String: String]

        public init(id: Int64, needs: [String: String]) { self.id = id; self.needs = needs }
    }

    public struct Start: Sendable, Hashable {
        public var id: Int64
        /// Role → instrument instance.
        public var assignment: [String: String]
    }

    /// `candidates` in the order they may start; `free` maps each free instrument to its driver type,
    /// `stations` each instrument that belongs to a station to that station.
    public static func starts(_ candidates: [Candidate], free: [String: String], stations: [String: String] = [:]) -> [Start] {
        var available = free
        var starts: [Start] = []
        for candidate in candidates {
            // Nothing free of any type it needs: it waits, keeping nothing (a long queue costs little to look at).
            if !candidate.needs.isEmpty && !candidate.needs.values.contains(where: { type in available.values.contains(type) }) {
                continue
            }
            if let assignment = InstrumentAssignment.assign(candidate.needs, from: available, stations: stations) {
                for instance in assignment.values { available[instance] = nil }
                starts.append(Start(id: candidate.id, assignment: assignment))
            } else {
                // Waiting: it keeps what it would use of what is free now.
                var counts: [String: Int] = [:]
                for type in candidate.needs.values { counts[type, default: 0] += 1 }
                for (type, n) in counts {
                    for instance in available.filter({ $0.value == type }).keys.sorted().prefix(n) { available[instance] = nil }
                }
            }
        }
        return starts
    }
}
