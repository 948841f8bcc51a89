import Dispatch
import Foundation
import Glibc
public import LabCore
import Synchronization

/// Serves an ASCII command/response device on the primary side of a pseudo-terminal: each line a
/// driver sends is answered by the handler with one line.
public final class LineServer: Sendable {
    /// The pseudo-terminal now served; a new one after each `plugIn()`.
    public var terminal: PseudoTerminal? { current.withLock { $0 } }
    /// The secondary side's path, or "" while unplugged.
    public var path: String { terminal?.path ?? "" }
    private let current: Mutex<PseudoTerminal?>
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let control = PlugControl()

    /// `handler` answers each line; nil sends nothing back (a SCPI device is silent on a command).
    public init(terminator: String = "\n", handler: @escaping @Sendable (String) -> String?) throws(LabError) {
        current = Mutex(try PseudoTerminal.open())
        let thread = Thread { [self] in serve(terminator: Array(terminator.utf8), handler) }
        thread.name = "serendip.line-server"
        thread.start()
    }

    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        control.wake()
        finished.wait()
    }

    /// As if the USB adapter were pulled: the pseudo-terminal is closed, so a driver holding its
    /// secondary side sees a hang-up and its path stops existing. Returns once that is so.
    public func unplug() {
        guard !stopping.load(ordering: .acquiring) else { return }
        control.request(plugged: false)
    }

    /// Serves a new pseudo-terminal (at a new path: see `terminal`).
    public func plugIn() {
        guard !stopping.load(ordering: .acquiring) else { return }
        control.request(plugged: true)
    }

    deinit { stop() }

    /// A new pseudo-terminal after an unplug; tried for a while, as the system's pseudo-terminals
    /// may all be taken for a moment by a busy machine's other tests.
    private static func openAgain() -> PseudoTerminal? {
        for _ in 0..<200 {
            if let terminal = try? PseudoTerminal.open() { return terminal }
            usleep(10_000)
        }
        FileHandle.standardError.write(Data("serendip: the simulated serial device cannot open a pseudo-terminal again\n".utf8))
        return nil
    }

    private func serve(terminator: [UInt8], _ handler: @Sendable (String) -> String?) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !stopping.load(ordering: .acquiring) {
            let fd = current.withLock { $0?.primary ?? -1 }
            var entries = [pollfd(fd: control.wakeFD, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            guard poll(&entries, 2, 20) > 0 else { continue }
            if entries[0].revents != 0, let plugged = control.take() {
                current.withLock { terminal in
                    if !plugged { terminal?.close(); terminal = nil }
                    else if terminal == nil { terminal = Self.openAgain() }
                }
                pending = []
                control.done()
                continue
            }
            guard fd >= 0, entries[1].revents & Int16(POLLIN) != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            pending += buffer[..<n]
            while let end = pending.firstRange(of: terminator) {
                let line = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                pending.removeSubrange(..<end.upperBound)
                guard let answer = handler(line) else { continue }
                send(Array((answer + String(decoding: terminator, as: UTF8.self)).utf8), to: fd)
            }
        }
        if control.take() != nil { control.done() }
        current.withLock { $0?.close(); $0 = nil }
        finished.signal()
    }

    /// Writes a reply as the driver reads it. A driver that stops reading mid-reply (it gave up on
    /// a long one) must not keep the device from being stopped: the rest is dropped then.
    private func send(_ reply: [UInt8], to fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var rest = reply[...]
        while !rest.isEmpty, !stopping.load(ordering: .acquiring) {
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&entry, 1, 20) > 0 else { continue }
            let n = rest.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { rest = rest.dropFirst(n) } else if errno != EAGAIN && errno != EINTR { return }
        }
    }
}
