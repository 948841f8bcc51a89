public import LabCore

/// A recorder that keeps a run in memory: what `serendip simulate` prints as a timeline.
public actor MemoryRecorder: RunRecorder {
    public enum Entry: Sendable {
        case event(RunEvent)
        case reading(MeasurementRecord)

        public var time: Double {
            switch self {
            case .event(let e): e.monotonicTime
            case .reading(let m): m.monotonicTime
            }
        }
    }

    public private(set) var entries: [Entry] = []
    private var runs: Int64 = 0

    public init() {}

    public func beginRun(_ start: RunStart) -> Int64 {
        runs += 1
        return runs
    }

    public func record(_ measurements: [MeasurementRecord], run: Int64) {
        entries += measurements.map(Entry.reading)
    }

    public func note(_ event: RunEvent, run: Int64) {
        entries.append(.event(event))
    }

    public func finishRun(_ run: Int64, outcome: RunOutcome, outputs: [String: Quantity], error: String?) {}

    public func flush() {}

    /// Entries in time order (a step's readings are recorded together at its end).
    public var timeline: [Entry] {
        entries.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
    }
}
