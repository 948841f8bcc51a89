import Foundation
import Glibc
import LabCore
public import LabSpec
import Synchronization

/// What reached a simulated device, with when: every write a client made (and every watchdog feed,
/// as channel "watchdog"), and what the device did on its own (its watchdog's safe state). Times
/// are seconds on CLOCK_MONOTONIC (`WireLog.now()`), so a test can set them beside timestamps the
/// engine takes the same way. Bounded: the oldest entries are dropped past `capacity`.
public final class WireLog: Sendable {
    public struct Entry: Sendable, Hashable {
        public var channel: String
        public var value: Double
        /// Seconds on CLOCK_MONOTONIC when the device saw it.
        public var time: Double
        /// The device did this itself (its watchdog tripped); nobody wrote it.
        public var byDevice: Bool
    }

    public let capacity: Int
    private let ring = Mutex<(entries: [Entry], next: Int)>(([], 0))

    public init(capacity: Int = 10_000) { self.capacity = capacity }

    /// Seconds on CLOCK_MONOTONIC, the clock of every entry.
    public static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    func record(_ channel: String, _ value: Double, byDevice: Bool = false) {
        let entry = Entry(channel: channel, value: value, time: Self.now(), byDevice: byDevice)
        ring.withLock { ring in
            if ring.entries.count < capacity { ring.entries.append(entry) }
            else { ring.entries[ring.next] = entry }
            ring.next = (ring.next + 1) % capacity
        }
    }

    /// Oldest first.
    public var entries: [Entry] {
        ring.withLock { ring in
            ring.entries.count < capacity ? ring.entries : Array(ring.entries[ring.next...] + ring.entries[..<ring.next])
        }
    }

    public func entries(for channel: String) -> [Entry] { entries.filter { $0.channel == channel } }
}

/// A simulated device's watchdog: armed by the first feed, it applies the safe state once when no
/// feed came for the seconds last written, then waits to be armed again.
final class SimulatedWatchdog: Sendable {
    private let deadline = Mutex<Double?>(nil)
    private let stopping = Atomic<Bool>(false)

    init(trip: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in watch(trip) }
        thread.name = "serendip.simulated-watchdog"
        thread.start()
    }

    private func watch(_ trip: () -> Void) {
        while !stopping.load(ordering: .acquiring) {
            usleep(5_000)
            let tripped = deadline.withLock { due in
                guard let d = due, WireLog.now() >= d else { return false }
                due = nil
                return true
            }
            if tripped { trip() }
        }
    }

    func fed(seconds: Double) {
        deadline.withLock { $0 = seconds > 0 ? WireLog.now() + seconds : nil }
    }

    func stop() { stopping.store(true, ordering: .releasing) }

    /// The safe state as numbers, the way a write of it reaches a device model.
    static func safeState(of spec: DriverSpec) -> [(channel: String, value: Double)] {
        spec.safeState.map { ($0.channel, $0.value.asDouble) }
    }
}
