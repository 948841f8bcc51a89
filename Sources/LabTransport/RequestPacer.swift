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
