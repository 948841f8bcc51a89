import Dispatch

/// A serial executor backed by its own dispatch queue. An actor that makes blocking C calls
/// (libmodbus, read(2) on a tty) uses one so that those calls never block Swift's cooperative pool,
/// and so that everything touching one physical bus is serialised.
final class SerialQueueExecutor: SerialExecutor, @unchecked Sendable {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: UnownedJob) {
        queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        dispatchPrecondition(condition: .onQueue(queue))
    }
}
