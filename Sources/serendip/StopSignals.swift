import Dispatch
import Foundation
import Glibc
import Synchronization
import LabEngine

/// SIGINT and SIGTERM for a command that drives instruments: the first asks the run to abort
/// (`finally`, then the safe states), the second to halt (safe states without `finally`). The
/// process is never killed by the signal itself, so nothing is left live.
final class StopSignals {
    private let sources: [any DispatchSourceSignal]
    private final class Received: Sendable { let numbers = Mutex<[Int32]>([]) }
    private let received = Received()

    init(control: RunControl) {
        var sources: [any DispatchSourceSignal] = []
        let received = self.received
        for (number, name) in [(SIGINT, "SIGINT (Ctrl-C)"), (SIGTERM, "SIGTERM")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let count = received.numbers.withLock { $0.append(number); return $0.count }
                let pid = ProcessInfo.processInfo.processIdentifier
                control.stop(count == 1 ? .abort : .halt, by: "\(name), received by process \(pid)")
                FileHandle.standardError.write(Data((count == 1
                    ? "\n\(name): stopping — running 'finally', then the safe states. Send it again to skip 'finally'.\n"
                    : "\n\(name) again: skipping 'finally'; commanding the safe states.\n").utf8))
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// The shell's convention for a process stopped by a signal: 128 + the first signal's number.
    var exitCode: Int32? { received.numbers.withLock { $0.first.map { 128 + $0 } } }
}
