public import LabCore
import Synchronization

/// The door into a running run: pause, resume, abort and halt requests from people and signals,
/// and faults from the lab (a lost instrument, an interlock). Each goes through the run's
/// `RunLifecycle`; an `interrupt` is delivered at once to whatever the executor is doing, the other
/// actions wait for the executor to take them once its steps have stopped.
public final class RunControl: Sendable {
    public typealias Stop = RunLifecycle.Stop

    public struct Request: Sendable, Equatable {
        public var stop: Stop
        /// Who or what asked, as a person reads it: "SIGTERM from process 4711 (user alice)".
        public var by: String
    }

    private struct State {
        var lifecycle = RunLifecycle()
        /// The executor's hook for the phase it is in, told of the state after every interrupt.
        var observer: (@Sendable (RunLifecycle.State) -> Void)?
        var pending: [RunLifecycle.Action] = []
        var listeners: [@Sendable (RunLifecycle.Transition) -> Void] = []
        /// Paused, with the safe states commanded: waiting for a person.
        var parked = false
    }

    private let state = Mutex(State())

    public init() {}

    public var lifecycle: RunLifecycle { state.withLock { $0.lifecycle } }

    /// The abort or halt asked for, if any.
    public var request: Request? {
        state.withLock { s in s.lifecycle.stop.map { Request(stop: $0.0, by: $0.by) } }
    }

    /// Applies a request or a fault; throws (`conflict`) when it does not apply in the run's state.
    @discardableResult
    public func send(_ event: RunLifecycle.Event) throws(LabError) -> RunLifecycle.Transition? {
        let (result, observer, listeners, now) = state.withLock { s in
            let result = s.lifecycle.handle(event)
            if case .success(let (actions, _)) = result {
                s.pending += actions.filter { $0 != .interrupt }
            }
            return (result, s.observer, s.listeners, s.lifecycle.state)
        }
        let (actions, transition) = try result.get()
        if let transition { for listener in listeners { listener(transition) } }
        if actions.contains(.interrupt) { observer?(now) }
        return transition
    }

    /// Asks the run to stop; a weaker request than one already made changes nothing.
    public func stop(_ stop: Stop, by: String) {
        _ = try? send(.stop(stop, by: by))
    }

    /// Calls `listener` with every transition from now on (the daemon records them and raises alerts).
    public func onTransition(_ listener: @escaping @Sendable (RunLifecycle.Transition) -> Void) {
        state.withLock { $0.listeners.append(listener) }
    }

    /// The executor's hook for the phase it is in: called at once with the current state, then after
    /// every interrupt. Replaces the previous observer; nil removes it.
    func watch(_ observer: (@Sendable (RunLifecycle.State) -> Void)?) {
        let now = state.withLock { s in
            s.observer = observer
            return s.lifecycle.state
        }
        observer?(now)
    }

    /// The actions left for the executor, in the order the transitions asked for them.
    func takeActions() -> [RunLifecycle.Action] {
        state.withLock { s in
            defer { s.pending = [] }
            return s.pending
        }
    }

    /// Whether the run is paused and settled there: its steps stopped, its safe states commanded.
    public var isParked: Bool { state.withLock { $0.parked } }

    /// Returns once the run is no longer paused (resumed, aborted or halted).
    func waitWhilePaused() async {
        state.withLock { $0.parked = true }
        defer { state.withLock { $0.parked = false } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = Mutex(false)
            watch { state in
                if case .paused = state { return }
                guard !resumed.withLock({ done in defer { done = true }; return done }) else { return }
                continuation.resume()
            }
        }
        watch(nil)
    }
}
