import Dispatch
import LabCore
import Synchronization

/// A connection's state and its synchronous protocol: whoever holds its lane's lock runs it.
protocol LaneLink: Sendable {
    associatedtype Request: Sendable
    /// One request's progress, carried from a caller's thread to the lane when it is parked.
    associatedtype Attempt: Sendable
    static func attempt() -> Attempt
    /// Whether a caller's thread may run `request` now: nothing it needs can block past the budget.
    func servesCallers(_ request: Request) -> Bool
    var parked: Parked<Self>? { get set }
    /// Runs a request and returns its reply's data, or nil when `budget` nanoseconds pass first or it
    /// would have to do something that can block (connect, back off, wait for its turn).
    mutating func perform(_ request: Request, _ attempt: inout Attempt, budget: UInt64?) throws(LabError) -> [UInt8]?
    mutating func disconnect()
}

/// A request sent on a caller's thread whose reply is awaited on the lane.
struct Parked<Link: LaneLink>: Sendable {
    var request: Link.Request
    var attempt: Link.Attempt
    let slot: ReplySlot
}

extension LaneLink {
    /// Runs a request to its end, on the lane.
    mutating func complete(_ request: Request, _ attempt: inout Attempt) throws(LabError) -> [UInt8] {
        guard let data = try perform(request, &attempt, budget: nil) else { preconditionFailure("no budget, yet over it") }
        return data
    }

    mutating func finishParked() {
        guard var parked = parked.take() else { return }
        parked.slot.fill(Result { () throws(LabError) in try complete(parked.request, &parked.attempt) })
    }
}

/// Runs a connection's requests one at a time: on the caller's thread when the connection is idle
/// and the reply comes within `budget`, which spares the two thread hops of a request handed to a
/// queue; on the connection's own serial queue, the lane, whenever something could block longer
/// (decision 0016). Swift's cooperative pool is never held for more than the budget.
final class RequestLane<Link: LaneLink>: Sendable {
    /// How long a request may wait for its reply on the caller's thread before the lane takes it over.
    static var budget: UInt64 { 250_000 }

    private let link: Mutex<Link>
    private let queue: DispatchQueue
    /// Jobs queued on the lane and not yet done. A caller's thread takes its turn only when there are
    /// none: the lock is not fair, and a caller asking again and again would starve them.
    private let queued = Atomic<Int>(0)

    init(_ link: Link, label: String) {
        self.link = Mutex(link)
        queue = DispatchQueue(label: label)
    }

    /// Every job on the lane holds the lane, so none is running or waiting now: the lock is free, and
    /// closing never waits behind a reply still being awaited (as it would in the client's deinit).
    deinit {
        link.withLock { $0.disconnect() }
    }

    /// What became of a request tried on the caller's thread.
    private enum Quick {
        case done(Result<[UInt8], LabError>)
        /// Sent, and its reply is being awaited on the lane.
        case parked(ReplySlot)
        /// The link is busy, closed or slow: the whole request goes to the lane.
        case declined
    }

    func run(_ request: Link.Request) async throws(LabError) -> [UInt8] {
        switch queued.load(ordering: .acquiring) == 0 ? tryOnCallersThread(request) : .declined {
        case .done(let result): return try result.get()
        case .parked(let slot): return try await slot.result.get()
        case .declined:
            return try await onLane { link throws(LabError) in
                var attempt = Link.attempt()
                return try link.complete(request, &attempt)
            }
        }
    }

    private func tryOnCallersThread(_ request: Link.Request) -> Quick {
        link.withLockIfAvailable { link -> Quick in
            guard link.parked == nil, link.servesCallers(request) else { return .declined }
            var attempt = Link.attempt()
            do throws(LabError) {
                if let data = try link.perform(request, &attempt, budget: Self.budget) { return .done(.success(data)) }
            } catch {
                return .done(.failure(error))
            }
            // Queued before the lock is let go: any request that takes the lock after this one
            // finishes the parked one first, so its reply is never taken for another's.
            let slot = ReplySlot()
            link.parked = Parked(request: request, attempt: attempt, slot: slot)
            enqueue { $0.finishParked() }
            return .parked(slot)
        } ?? .declined
    }

    /// Runs `body` on the lane, after any request parked there.
    func onLane<T: Sendable>(_ body: @escaping @Sendable (inout Link) throws(LabError) -> T) async throws(LabError) -> T {
        let result: Result<T, LabError> = await withCheckedContinuation { continuation in
            enqueue { link in
                link.finishParked()
                continuation.resume(returning: Result { () throws(LabError) in try body(&link) })
            }
        }
        return try result.get()
    }

    private func enqueue(_ job: @escaping @Sendable (inout Link) -> Void) {
        queued.add(1, ordering: .acquiringAndReleasing)
        queue.async {
            self.link.withLock { job(&$0) }
            self.queued.subtract(1, ordering: .acquiringAndReleasing)
        }
    }
}

/// A reply awaited on the lane for a caller that has gone to sleep: whichever of the two arrives
/// second, the result or the caller, hands the one to the other.
final class ReplySlot: Sendable {
    private let state = Mutex<(result: Result<[UInt8], LabError>?, waiter: CheckedContinuation<Result<[UInt8], LabError>, Never>?)>((nil, nil))

    func fill(_ result: Result<[UInt8], LabError>) {
        let waiter = state.withLock { state in
            state.result = result
            return state.waiter.take()
        }
        waiter?.resume(returning: result)
    }

    var result: Result<[UInt8], LabError> {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    if state.result == nil { state.waiter = continuation }
                    return state.result
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
