import Dispatch
import Glibc

/// Keeps at least `interval` seconds between the starts of two requests to one device (a driver
/// file's `min_interval:`): some instruments drop a command that comes too soon after the last.
/// It blocks, so it is only used on a transport's own serial queue.
struct RequestPacer {
    var interval: Double = 0
    private var last: UInt64?

    /// Waits until the next request may go, then counts it as sent now.
    mutating func waitForTurn() {
        if interval > 0, let last {
            let next = last + UInt64(interval * 1e9)
            // usleep may return early (a signal): sleep again until the time has really come.
            while case let now = DispatchTime.now().uptimeNanoseconds, now < next {
                usleep(UInt32(min(next - now, 1_000_000_000) / 1000) + 1)
            }
        }
        last = DispatchTime.now().uptimeNanoseconds
    }
}

/// What a Modbus instrument asks of its link beyond single requests: the spacing of its requests
/// and the writes sent on every fresh connection (the driver file's `init:`), before anything else.
public struct ModbusSession: Sendable {
    public struct Write: Sendable {
        public enum Target: Sendable { case registers(UInt16, [UInt16]), coil(UInt16, Bool) }
        /// Names the step in an error: `init step 1 holding 300 = 1 (drivers/x.yaml:7:5)`.
        public var label: String
        public var target: Target
        public init(label: String, target: Target) { self.label = label; self.target = target }
    }
    public var minInterval: Double
    public var greeting: [Write]
    public init(minInterval: Double = 0, greeting: [Write] = []) { self.minInterval = minInterval; self.greeting = greeting }
}
