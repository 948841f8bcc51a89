import Dispatch
import Foundation
import Glibc
public import LabCore
import Synchronization

/// Serves an ASCII command/response device on the primary side of a pseudo-terminal: each line a
/// driver sends is answered by the handler with one line.
public final class LineServer: Sendable {
    public let terminal: PseudoTerminal
    public var path: String { terminal.path }
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    public init(terminator: String = "\n", handler: @escaping @Sendable (String) -> String) throws(LabError) {
        terminal = try PseudoTerminal.open()
        let thread = Thread { [self] in serve(terminator: Array(terminator.utf8), handler) }
        thread.name = "serendip.line-server"
        thread.start()
    }

    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
        terminal.close()
    }

    deinit { stop() }

    private func serve(terminator: [UInt8], _ handler: @Sendable (String) -> String) {
        let fd = terminal.primary
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !stopping.load(ordering: .acquiring) {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            pending += buffer[..<n]
            while let end = pending.firstRange(of: terminator) {
                let line = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                pending.removeSubrange(..<end.upperBound)
                let reply = Array((handler(line) + String(decoding: terminator, as: UTF8.self)).utf8)
                _ = reply.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            }
        }
        finished.signal()
    }
}
