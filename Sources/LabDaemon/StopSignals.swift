import Dispatch
import Foundation
import Glibc
import Synchronization

/// SIGINT and SIGTERM for a process that drives instruments: the process is never killed by the
/// signal itself, so nothing is left live. The first signal asks for a stop, the second for a halt
/// (skip what is left of `finally`; the safe states are still commanded).
public final class StopSignals: Sendable {
    private final class Received: Sendable { let names = Mutex<[(Int32, String)]>([]) }
    private let received = Received()
    private nonisolated(unsafe) let sources: [any DispatchSourceSignal]

    /// `handler` gets who sent what ("SIGTERM, received by process 123") and how many signals so far.
    public init(_ handler: @escaping @Sendable (_ by: String, _ count: Int) -> Void) {
        var sources: [any DispatchSourceSignal] = []
        let received = self.received
        for (number, name) in [(SIGINT, "SIGINT (Ctrl-C)"), (SIGTERM, "SIGTERM")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let count = received.names.withLock { $0.append((number, name)); return $0.count }
                handler("\(name), received by process \(ProcessInfo.processInfo.processIdentifier)", count)
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// The shell's convention for a process stopped by a signal: 128 + the first signal's number.
    public var exitCode: Int32? { received.names.withLock { $0.first.map { 128 + $0.0 } } }

    /// The name of the first signal received.
    public var first: String? { received.names.withLock { $0.first?.1 } }
}
