import Foundation
import NIOCore

/// Gives freed connection buffers back to the system. glibc keeps freed memory for reuse, so 100
/// clients that each left a 1 MiB line unfinished would leave the daemon 100 MB larger after they
/// closed; `malloc_trim` returns it. One trim follows a burst of closes, not one per close.
final class FreedMemory: @unchecked Sendable {
    /// Buffers smaller than this are left to malloc.
    static let worthReturning = 256 << 10

    private let lock = NSLock()
    private var scheduled = false

    #if canImport(Glibc)
    private static let trim: (@convention(c) (Int) -> Int32)? =
        dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: (@convention(c) (Int) -> Int32).self) }
    #else
    private static let trim: (@convention(c) (Int) -> Int32)? = nil
    #endif

    /// Call after letting go of a buffer of `capacity` bytes.
    func released(_ capacity: Int, on loop: any EventLoop) {
        guard capacity >= Self.worthReturning, let trim = Self.trim else { return }
        let first = lock.withLock { () -> Bool in
            defer { scheduled = true }
            return !scheduled
        }
        guard first else { return }
        loop.scheduleTask(in: .milliseconds(50)) {
            self.lock.withLock { self.scheduled = false }
            _ = trim(0)
        }
    }
}
