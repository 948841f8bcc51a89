import Dispatch
import Glibc
import Synchronization

/// SIGINT and SIGTERM for a process that drives instruments: the process is never killed by the
/// signal itself, so nothing is left live. The first signal asks for a stop, the second for a halt
/// (skip what is left of `finally`; the safe states are still commanded).
///
/// The record names the SENDER ("SIGTERM from process 4711 (user alice)"), which only `sigaction`
/// with SA_SIGINFO reveals; a dispatch signal source does not. The C handler may do almost nothing,
/// so it writes the signal and its sender to a pipe, and a dispatch source on the pipe does the rest.
public final class StopSignals: Sendable {
    private final class Received: Sendable { let signals = Mutex<[(number: Int32, sender: String)]>([]) }
    private let received = Received()

    /// `handler` gets who sent what ("SIGTERM from process 4711 (user alice)") and how many signals so far.
    public init(_ handler: @escaping @Sendable (_ by: String, _ count: Int) -> Void) {
        let received = self.received
        SignalPipe.subscribe(ObjectIdentifier(self)) { arrival in
            let count = received.signals.withLock { $0.append((arrival.number, arrival.sender)); return $0.count }
            handler(arrival.sender, count)
        }
    }

    deinit { SignalPipe.unsubscribe(ObjectIdentifier(self)) }

    /// The shell's convention for a process stopped by a signal: 128 + the first signal's number.
    public var exitCode: Int32? { received.signals.withLock { $0.first.map { 128 + $0.number } } }

    /// How many signals have arrived.
    public var count: Int { received.signals.withLock { $0.count } }

    /// The first signal received and who sent it ("SIGINT from process 4711 (user alice)").
    public var first: String? { received.signals.withLock { $0.first?.sender } }
}

/// One signal as the C handler saw it; written whole to the pipe (far below PIPE_BUF, so atomic).
private struct Arrival {
    var number: Int32
    var pid: Int32
    var uid: UInt32

    static func name(_ number: Int32) -> String { number == SIGINT ? "SIGINT" : number == SIGTERM ? "SIGTERM" : "signal \(number)" }

    /// Who sent it, as an operator reads it. A signal from the tty driver or the kernel has no sender process.
    var sender: String {
        if pid == 0 { return number == SIGINT ? "SIGINT (Ctrl-C at the terminal)" : "\(Self.name(number)) from the kernel" }
        return "\(Self.name(number)) from process \(pid) (user \(Self.user(uid)))"
    }

    static func user(_ uid: UInt32) -> String {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, let found, let name = found.pointee.pw_name else {
            return "uid \(uid)"
        }
        return String(cString: name)
    }
}

/// The write end of the pipe, for the C handler, which can capture nothing.
private let pipeWriteEnd = Atomic<Int32>(-1)

/// Async-signal-safe: two loads and one write(2), errno preserved.
private let onSignal: @convention(c) (Int32, UnsafeMutablePointer<siginfo_t>?, UnsafeMutableRawPointer?) -> Void = { number, info, _ in
    let saved = errno
    var arrival = Arrival(number: number, pid: info?.pointee._sifields._kill.si_pid ?? 0,
                          uid: info?.pointee._sifields._kill.si_uid ?? 0)
    _ = withUnsafeBytes(of: &arrival) { write(pipeWriteEnd.load(ordering: .relaxed), $0.baseAddress, $0.count) }
    errno = saved
}

/// The process has one disposition per signal, so one handler and one pipe serve every `StopSignals`.
private enum SignalPipe {
    static let subscribers = Mutex<[ObjectIdentifier: @Sendable (Arrival) -> Void]>([:])
    /// Installed on first use (a global's initializer runs once), kept for the life of the process.
    nonisolated(unsafe) static let source: any DispatchSourceRead = install()

    static func subscribe(_ id: ObjectIdentifier, _ subscriber: @escaping @Sendable (Arrival) -> Void) {
        _ = source
        subscribers.withLock { $0[id] = subscriber }
    }

    static func unsubscribe(_ id: ObjectIdentifier) {
        _ = subscribers.withLock { $0.removeValue(forKey: id) }
    }

    private static func install() -> any DispatchSourceRead {
        var ends: [Int32] = [-1, -1]
        precondition(pipe(&ends) == 0, "cannot create the signal pipe: errno \(errno)")
        for end in ends {   // the handler must never block on a full pipe; children must not inherit it
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        pipeWriteEnd.store(ends[1], ordering: .relaxed)
        let readEnd = ends[0]
        let source = DispatchSource.makeReadSource(fileDescriptor: readEnd, queue: .global())
        source.setEventHandler {
            var arrival = Arrival(number: 0, pid: 0, uid: 0)
            while withUnsafeMutableBytes(of: &arrival, { read(readEnd, $0.baseAddress, $0.count) }) == MemoryLayout<Arrival>.size {
                for subscriber in subscribers.withLock({ Array($0.values) }) { subscriber(arrival) }
            }
        }
        source.resume()
        for number in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_sigaction = onSignal
            action.sa_flags = SA_SIGINFO | SA_RESTART
            sigemptyset(&action.sa_mask)
            precondition(sigaction(number, &action, nil) == 0, "cannot install the handler for signal \(number): errno \(errno)")
        }
        return source
    }
}
