import Synchronization

/// Instruments held in their safe state while a condition holds (an asserted interlock): no run may
/// write to them, not even its `finally`, until the condition clears. Shared by the daemon, which
/// sets it, and every run's executor, which asks it before each write; safe states are never held back.
public final class InstrumentHolds: Sendable {
    private let held = Mutex<[String: String]>([:])

    public init() {}

    /// Instrument name → why it is held; replaces the earlier set.
    public func set(_ holds: [String: String]) { held.withLock { $0 = holds } }

    /// Why the instrument is held, or nil when it may be written.
    public func reason(_ instrument: String) -> String? { held.withLock { $0[instrument] } }
}
