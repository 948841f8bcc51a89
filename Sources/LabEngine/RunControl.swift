import Synchronization

/// A request from outside a run to stop it: a signal today, an API call tomorrow. Requests only
/// escalate (an abort can become a halt, never the reverse) and remember who or what asked.
///
/// - abort: stop starting steps, cancel the current one, run `finally`, then the safe states;
/// - halt: as abort, but skip `finally` (or cut it short), still commanding the safe states.
public final class RunControl: Sendable {
    public enum Stop: Int, Sendable, Comparable {
        case abort = 1, halt = 2
        public static func < (a: Stop, b: Stop) -> Bool { a.rawValue < b.rawValue }
    }

    public struct Request: Sendable, Equatable {
        public var stop: Stop
        /// Who or what asked, as a person reads it: "SIGTERM from process 4711 (user alice)".
        public var by: String
    }

    private struct State {
        var request: Request?
        var observer: (@Sendable (Stop) -> Void)?
    }

    private let state = Mutex(State())

    public init() {}

    public var request: Request? { state.withLock { $0.request } }

    /// Asks the run to stop; a weaker request than one already made changes nothing.
    public func stop(_ stop: Stop, by: String) {
        let observer: (@Sendable (Stop) -> Void)? = state.withLock { s in
            if let current = s.request, current.stop >= stop { return nil }
            s.request = Request(stop: stop, by: by)
            return s.observer
        }
        observer?(stop)
    }

    /// The executor's hook for the phase it is in (steps, then `finally`); called at once if a stop
    /// was already requested. Replaces the previous observer; nil removes it.
    func watch(_ observer: (@Sendable (Stop) -> Void)?) {
        let pending: Stop? = state.withLock { s in
            s.observer = observer
            return s.request?.stop
        }
        if let pending, let observer { observer(pending) }
    }
}
