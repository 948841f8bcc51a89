public import LabCore

/// Where a run is, and what each request or fault does to it: the whole transition table, as a
/// value that returns the actions to take. No I/O here; `RunControl` holds one and the executor
/// acts on what it returns.
///
/// - running: steps execute.
/// - pausing: a deferred pause is asked for; the steps go on to the next `checkpoint`, where the run pauses.
/// - paused: no step runs; the run's instruments are in their safe state; it waits for a person to
///   resume it (from its last checkpoint), abort it or halt it.
/// - stopping: an abort (`finally`, then the safe states) or a halt (the safe states only) is under way.
/// - finished: the run has ended.
public struct RunLifecycle: Sendable, Equatable {
    public enum Stop: Int, Sendable, Comparable, Codable {
        case abort = 1, halt = 2
        public static func < (a: Stop, b: Stop) -> Bool { a.rawValue < b.rawValue }
    }

    /// Why a run is paused, as a lab manager reads it.
    public enum PauseReason: Sendable, Equatable, Codable {
        /// A person asked (`serendip pause`).
        case requested(by: String)
        /// An instrument stopped answering: a closed connection, an unplugged adapter, no reply in time.
        case instrumentLost(instrument: String, detail: String)
        /// A watched condition of the lab config fired; latched until acknowledged.
        case interlock(name: String, detail: String)
        /// An instrument holds another value than the one written to it.
        case readBack(instrument: String, detail: String)
        /// The run's data could not be stored (a full disk, an I/O error): nothing more is measured
        /// until a person has made room and resumes it.
        case storage(detail: String)
        /// The daemon is stopping (SIGTERM).
        case shutdown(by: String)

        /// The short name a client shows: `paused(instrument_lost)`.
        public var code: String {
            switch self {
            case .requested: "requested"
            case .instrumentLost: "instrument_lost"
            case .interlock: "interlock"
            case .readBack: "read_back"
            case .storage: "storage"
            case .shutdown: "shutdown"
            }
        }

        public var description: String {
            switch self {
            case .requested(let by): "paused by \(by)"
            case .instrumentLost(let instrument, let detail): "instrument \(instrument) lost: \(detail)"
            case .interlock(let name, let detail): "interlock \(name): \(detail)"
            case .readBack(let instrument, let detail): "read-back mismatch on \(instrument): \(detail)"
            case .storage(let detail): "cannot store the run's data: \(detail)"
            case .shutdown(let by): "the daemon is stopping (\(by))"
            }
        }

        /// A fault pauses at once, wherever the steps are; a person's or a shutdown's pause may wait for a checkpoint.
        var isFault: Bool {
            switch self {
            case .instrumentLost, .interlock, .readBack, .storage: true
            case .requested, .shutdown: false
            }
        }

        /// The instrument that is gone: commanding its safe state would only wait for its timeout.
        var lostInstrument: String? {
            if case .instrumentLost(let instrument, _) = self { return instrument }
            return nil
        }
    }

    public enum State: Sendable, Equatable {
        case running
        case pausing(PauseReason)
        case paused(PauseReason)
        case stopping(Stop, by: String)
        case finished

        /// What a person reads beside the state name: why it is paused or stopping.
        public var note: String? {
            switch self {
            case .pausing(let reason): "pauses at the next checkpoint: " + reason.description
            case .paused(let reason): reason.description
            case .stopping(let stop, let by): "\(stop == .halt ? "halt" : "abort") asked by \(by)"
            case .running, .finished: nil
            }
        }

        /// `running`, `pausing`, `paused(instrument_lost)`, `aborting`, `halting`, `finished`.
        public var name: String {
            switch self {
            case .running: "running"
            case .pausing: "pausing"
            case .paused(let reason): "paused(\(reason.code))"
            case .stopping(.abort, _): "aborting"
            case .stopping(.halt, _): "halting"
            case .finished: "finished"
            }
        }
    }

    /// A step the protocol marks `repeatable: false`, done since the last checkpoint: rewinding to
    /// that checkpoint would do it twice.
    public struct Unrepeatable: Sendable, Equatable {
        public var location: SourceLocation
        /// The protocol's choice for an immediate pause or a fault after this step: abort instead of pausing.
        public var abortsOnPause: Bool

        public init(location: SourceLocation, abortsOnPause: Bool) {
            self.location = location; self.abortsOnPause = abortsOnPause
        }
    }

    public enum Event: Sendable, Equatable {
        /// A pause asked for: `now` stops at once and rewinds on resume, otherwise at the next checkpoint.
        case pause(now: Bool, PauseReason)
        /// A fault: pauses at once (or aborts, if the protocol says so for the step just done).
        case fault(PauseReason)
        /// `repeatingUnrepeatable`: the person knows that going back to the checkpoint repeats a step
        /// marked `repeatable: false` (done before a fault paused the run), and wants it so.
        case resume(by: String, repeatingUnrepeatable: Bool = false)
        case stop(Stop, by: String)
        case checkpointReached(String)
        case unrepeatableDone(Unrepeatable)
        case finished
    }

    public enum Action: Sendable, Equatable {
        /// Cancel what runs now: the steps, the wait of a paused run, or what is left of `finally` on a halt.
        case interrupt
        /// Once the steps have stopped: every instrument of the run to its safe state, but the lost ones.
        case commandSafeStates(except: String?)
        /// Before going on from the last checkpoint: the values the protocol had commanded there, written again.
        case restoreAndRewind
    }

    /// What a transition did, recorded with the run: from, to, and who asked and why.
    public struct Transition: Sendable, Equatable {
        public var from: State
        public var to: State
        public var why: String
    }

    public private(set) var state: State = .running
    /// Since the last checkpoint (or the start): the first step that must not be repeated.
    public private(set) var unrepeatable: Unrepeatable?

    public init() {}

    /// Applies an event: the actions to take, the transition to record (nil when nothing changed),
    /// or an error saying why the event does not apply now.
    public mutating func handle(_ event: Event) -> Result<(actions: [Action], transition: Transition?), LabError> {
        let from = state
        var actions: [Action] = []
        var why: String
        switch (state, event) {
        case (.running, .pause(false, let reason)):
            state = .pausing(reason)
            why = "\(Self.asker(reason)) asked for a pause at the next checkpoint"
        case (.running, .pause(true, let reason)), (.pausing, .pause(true, let reason)):
            if let step = unrepeatable {
                if step.abortsOnPause {
                    state = .stopping(.abort, by: Self.asker(reason))
                    actions = [.interrupt]
                    why = "\(Self.asker(reason)) asked for an immediate pause; the step at \(step.location) must not be repeated "
                        + "and the protocol says to abort then"
                } else {
                    state = .pausing(reason)
                    why = "\(Self.asker(reason)) asked for an immediate pause; deferred to the next checkpoint because the step at "
                        + "\(step.location) must not be repeated"
                }
            } else {
                state = .paused(reason)
                actions = [.interrupt, .commandSafeStates(except: nil)]
                why = reason.description
            }
        case (.pausing(let pending), .pause(false, _)):
            return .failure(LabError(.conflict, "the run is already pausing (\(pending.description)); it pauses at its next checkpoint"))
        case (.running, .fault(let reason)), (.pausing, .fault(let reason)):
            if let step = unrepeatable, step.abortsOnPause {
                state = .stopping(.abort, by: reason.description)
                actions = [.interrupt]
                why = "\(reason.description); the step at \(step.location) must not be repeated and the protocol says to abort then"
            } else {
                state = .paused(reason)
                actions = [.interrupt, .commandSafeStates(except: reason.lostInstrument)]
                why = reason.description
                if let step = unrepeatable {
                    why += "; resuming would repeat the step at \(step.location), which is marked not repeatable (resume --repeat-step)"
                }
            }
        case (.paused(let current), .fault(let reason)):
            // A fault while paused outranks a person's pause: resuming then waits for the fault too.
            guard !current.isFault, reason.isFault else { return .success(([], nil)) }
            state = .paused(reason)
            why = reason.description
        case (.paused(let current), .pause):
            return .failure(LabError(.conflict, "the run is already paused (\(current.description))"))
        case (.running, .checkpointReached):
            unrepeatable = nil
            return .success(([], nil))
        case (.pausing(let reason), .checkpointReached(let name)):
            unrepeatable = nil
            state = .paused(reason)
            actions = [.interrupt, .commandSafeStates(except: nil)]
            why = "\(reason.description): paused at checkpoint '\(name)'"
        case (.running, .unrepeatableDone(let step)), (.pausing, .unrepeatableDone(let step)):
            if unrepeatable == nil { unrepeatable = step }
            return .success(([], nil))
        case (.paused, .resume(let by, let repeating)):
            if let step = unrepeatable, !repeating {
                return .failure(LabError(.conflict, "resuming goes back to the last checkpoint and would do the step at \(step.location) "
                    + "again, which the protocol marks not repeatable: check the instrument, then resume with --repeat-step "
                    + "(API: repeat_step) to do it again, or abort the run"))
            }
            state = .running
            unrepeatable = nil
            actions = [.interrupt, .restoreAndRewind]
            why = "resumed by \(by) from the last checkpoint"
        case (.pausing, .resume(let by, _)):
            state = .running
            why = "pause withdrawn by \(by)"
        case (.running, .resume):
            return .failure(LabError(.conflict, "the run is running, not paused"))
        case (.running, .stop(let stop, let by)), (.pausing, .stop(let stop, let by)), (.paused, .stop(let stop, let by)):
            state = .stopping(stop, by: by)
            actions = [.interrupt]
            why = "\(stop == .halt ? "halt" : "abort") asked by \(by)"
        case (.stopping(.abort, _), .stop(.halt, let by)):
            state = .stopping(.halt, by: by)
            actions = [.interrupt]
            why = "halt asked by \(by) while aborting: what is left of 'finally' is skipped"
        case (.stopping, .stop), (.stopping, .fault), (.stopping, .checkpointReached), (.stopping, .unrepeatableDone),
             (.paused, .checkpointReached), (.paused, .unrepeatableDone):
            return .success(([], nil))
        case (.stopping(let stop, _), .pause), (.stopping(let stop, _), .resume):
            return .failure(LabError(.conflict, "the run is \(stop == .halt ? "halting" : "aborting")"))
        case (.finished, .finished):
            return .success(([], nil))
        case (_, .finished):
            state = .finished
            why = "ended"
        case (.finished, _):
            return .failure(LabError(.conflict, "the run has ended"))
        }
        return .success((actions, Transition(from: from, to: state, why: why)))
    }

    /// The abort or halt under way, if any.
    public var stop: (Stop, by: String)? {
        if case .stopping(let stop, let by) = state { return (stop, by) }
        return nil
    }

    private static func asker(_ reason: PauseReason) -> String {
        switch reason {
        case .requested(let by), .shutdown(let by): by
        default: reason.description
        }
    }
}
