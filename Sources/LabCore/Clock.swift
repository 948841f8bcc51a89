import Foundation

/// Monotonic time as the engine and simulators see it, in seconds. Injected so that a demo or a
/// test can run simulated time faster than the wall clock, and so that timeouts never follow the
/// wall clock.
public protocol LabClock: Sendable {
    /// Seconds since an arbitrary origin, never going backwards.
    var now: Double { get }
    /// Waits `seconds` of this clock's time.
    func sleep(seconds: Double) async throws
    /// How many of this clock's seconds pass per wall-clock second (1 for real time).
    var rate: Double { get }
}

extension LabClock {
    public var rate: Double { 1 }
}

/// Simulated time running `rate` times faster than the monotonic wall clock (rate 1 is real time).
public struct ScaledClock: LabClock {
    public let rate: Double
    private let origin = ContinuousClock.now

    public init(rate: Double = 1) {
        precondition(rate > 0, "clock rate must be positive")
        self.rate = rate
    }

    public var now: Double {
        let elapsed = ContinuousClock.now - origin
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return seconds * rate
    }

    public func sleep(seconds: Double) async throws {
        guard seconds > 0 else { return try Task.checkCancellation() }
        try await Task.sleep(for: .nanoseconds(Int64((seconds / rate * 1e9).rounded())))
    }
}

/// Simulated time that moves only when someone sleeps: `serendip simulate` runs a protocol in no
/// wall time at all. Parallel branches are simulated one after another from the same start time
/// (`rewind(to:)`), so the clock must not be shared by concurrent sleepers.
public final class VirtualClock: LabClock, @unchecked Sendable {
    private let lock = NSLock()
    private var time: Double

    public init(start: Double = 0) { time = start }

    public var now: Double { lock.withLock { time } }

    public func sleep(seconds: Double) async throws {
        try Task.checkCancellation()
        lock.withLock { time += max(0, seconds) }
    }

    /// Sets the time, forwards or backwards (to simulate another parallel branch from its start).
    public func rewind(to t: Double) { lock.withLock { time = t } }
}
