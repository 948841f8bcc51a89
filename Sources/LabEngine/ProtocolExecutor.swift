import Foundation
public import LabCore
public import Logging
import Synchronization

/// What one run of a protocol produced.
public struct RunResult: Sendable {
    public var runID: Int64
    public var outcome: RunOutcome
    public var outputs: [String: ExprValue]
    public var error: String?
}

/// Interprets a protocol IR against connected instruments, step by step, through one exhaustive
/// switch. Every exit — success, failure, a stop requested through `control`, or cancellation of
/// the caller's task — attempts every `finally` step and then commands every instrument to its
/// safe state. Every reading is stored through the recorder before its step completes.
public struct ProtocolExecutor: Sendable {
    public var definition: ProtocolDefinition
    public var instruments: [String: any Instrument]
    public var clock: any LabClock
    public var recorder: any RunRecorder
    public var logger: Logger
    /// Abort and halt requests from outside the run.
    public var control: RunControl
    /// Instruments no step may write to now (an asserted interlock holds them in their safe state).
    public var holds = InstrumentHolds()
    /// Decides a branch given the step id and what its condition evaluated to; `simulate
    /// --all-branches` uses it to force the side not yet taken.
    public var branchDecision: @Sendable (_ stepID: Int, _ evaluated: Bool) -> Bool = { $1 }

    public init(definition: ProtocolDefinition, instruments: [String: any Instrument], clock: any LabClock,
                recorder: any RunRecorder, logger: Logger, control: RunControl = RunControl()) {
        self.definition = definition; self.instruments = instruments; self.clock = clock
        self.recorder = recorder; self.logger = logger; self.control = control
    }

    public func run(parameters given: [String: ExprValue], start: RunStart) async throws -> RunResult {
        let parameters = try definition.resolveParameters(given)
        // Provenance records every value the run used, defaults included.
        var start = start
        start.parameters = parameters.map { ParameterValue(name: $0.key, value: $0.value) }.sorted { $0.name < $1.name }
        // Each device says what it is now (the one behind an address may have been swapped). One that
        // does not answer is stored without its answer, and the run says so; it does not fail for that.
        var unidentified: [String] = []
        for role in start.instruments.keys.sorted() {
            guard let instrument = instruments[role] else { continue }
            do { start.instruments[role] = try await instrument.identifyDevice() } catch {
                unidentified.append("\(role): no answer to the identity query \(instrument.identity.deviceQuery ?? ""): \(error)")
            }
        }
        // Text channels (a serial number, a firmware version) are recorded as the run starts: a
        // measurement is a number. One that does not answer is noted, and the run goes on.
        var texts: [String] = []
        for role in start.instruments.keys.sorted() {
            guard let reader = instruments[role] as? any TextReadable else { continue }
            for channel in reader.textChannels {
                do { texts.append("\(role).\(channel) = '\(try await reader.readText(channel))'") } catch {
                    texts.append("\(role).\(channel): no answer: \(error)")
                }
            }
        }
        let runID = try await recorder.beginRun(start)
        for message in unidentified + texts { try await recorder.note(RunEvent(.log, message, monotonicTime: clock.now), run: runID) }
        let initial = RunState(runID: runID, environment: ExprEnvironment(parameters: parameters))
        // Transitions are recorded in the order they happened, by one consumer.
        let (transitions, input) = AsyncStream.makeStream(of: RunEvent.self)
        control.onTransition { [clock] transition in
            input.yield(RunEvent(.transition, "\(transition.from.name) → \(transition.to.name): \(transition.why)", monotonicTime: clock.now))
        }
        let recordTransitions = Task { [recorder] in
            for await event in transitions { try? await recorder.note(event, run: runID) }
        }
        let (state, error) = await withTaskCancellationHandler {
            await supervise(from: initial)
        } onCancel: {
            control.stop(.abort, by: "the cancellation of the run's task")
        }
        var outcome = RunOutcome.completed
        var failure: String?
        if let error {
            let stopped = control.request
            outcome = stopped != nil || error is CancellationError ? .aborted : .failed
            failure = stopped.map { "\($0.stop == .halt ? "halted" : "aborted") by \($0.by)" }
                ?? (outcome == .aborted ? "aborted: the run's task was cancelled" : String(describing: error))
            // A stop request says who asked; the CancellationError it causes says nothing.
            let reason = stopped == nil ? "error" : "stopped"
            logger.warning("run ended early", metadata: ["run": "\(runID)", "outcome": "\(outcome)", reason: "\(failure ?? "")"])
        }
        return try await Task { [self, outcome, failure] in
            var (outcome, failure) = (outcome, failure)
            if let failure { try? await recorder.note(RunEvent(.fault, failure, monotonicTime: clock.now), run: runID) }
            if let cleanupError = await cleanup(state), failure == nil {
                outcome = .failed
                failure = cleanupError
            }
            _ = try? control.send(.finished)
            input.finish()
            await recordTransitions.value
            let outputs = outcome == .completed ? state.outputs : [:]
            let numeric = outputs.compactMapValues { value -> Quantity? in
                switch value {
                case .quantity(let q): q
                case .bool(let b): Quantity(b ? 1 : 0)
                case .text: nil
                }
            }
            try await recorder.finishRun(runID, outcome: outcome, outputs: numeric, error: failure)
            return RunResult(runID: runID, outcome: outcome, outputs: outputs, error: failure)
        }.value
    }

    /// Runs the steps, and through every pause: a paused run waits with its instruments in their safe
    /// state, and a resumed one writes again what the protocol had commanded at its last checkpoint
    /// and goes on from there. Returns the state reached, with the error that ended the steps early.
    private func supervise(from initial: RunState) async -> (RunState, (any Error)?) {
        let checkpoints = Checkpoints(initial)
        var from = initial
        while true {
            // The steps run in a task of their own, so that a pause or stop cancels them while what
            // follows still runs uncancelled.
            let body = Task { [self, from] in await steps(from: from, checkpoints) }
            control.watch { state in
                switch state {
                case .paused, .stopping: body.cancel()
                case .running, .pausing, .finished: break
                }
            }
            let (state, error) = await body.value
            control.watch(nil)
            guard let error else { return (state, nil) }
            if let fault = error as? InstrumentFault {
                _ = try? control.send(.fault(fault.reason))
            }
            var rewind = false
            while true {
                // A request may come while the actions run (a resume during the safe states): take
                // actions until none is left, then look at the state.
                let actions = control.takeActions()
                for action in actions {
                    switch action {
                    case .commandSafeStates(let lost): await commandSafeStates(except: lost, " (paused)", state)
                    case .restoreAndRewind: rewind = true
                    case .interrupt: break
                    }
                }
                if !actions.isEmpty { continue }
                guard case .paused = control.lifecycle.state else { break }
                await control.waitWhilePaused()
            }
            guard rewind, control.lifecycle.state == .running else { return (state, error) }
            from = checkpoints.last
            do {
                try await restore(from)
            } catch {
                // Restoring met the fault again (the instrument is still gone): pause again, from the same checkpoint.
                if let fault = error as? InstrumentFault { _ = try? control.send(.fault(fault.reason)) }
                else { return (state, error) }
                continue
            }
        }
    }

    /// The protocol's steps and outputs from a checkpoint (or the start); returns the state reached,
    /// with the error that ended them early.
    private func steps(from start: RunState, _ checkpoints: Checkpoints) async -> (RunState, (any Error)?) {
        var state = start
        state.path = []
        state.checkpoints = checkpoints
        do {
            try await execute(definition.steps, &state, resume: start.path.isEmpty ? nil : start.path[...])
            for output in definition.outputs {
                state.outputs[output.name] = try state.environment.evaluate(output.expression)
            }
            return (state, nil)
        } catch {
            return (state, error)
        }
    }

    /// Writes again, in the order first written, what the protocol had commanded by the checkpoint.
    private func restore(_ checkpoint: RunState) async throws {
        for ref in checkpoint.commandOrder {
            guard let value = checkpoint.commanded[ref] else { continue }
            try await write(ref, value, checkpoint, restoring: true)
        }
    }

    /// Sends every instrument of the run (but `lost`) to its safe state, all at once: a device that
    /// hangs until its timeout must not keep the heater next to it on. Returns the first failure.
    @discardableResult
    private func commandSafeStates(except lost: String? = nil, _ why: String, _ state: RunState) async -> String? {
        let failures = await withTaskGroup(of: String?.self) { group in
            for (role, instrument) in instruments.sorted(by: { $0.key < $1.key }) where instrument.identity.name != lost {
                group.addTask { [self] in
                    do {
                        try await instrument.goToSafeState()
                        try? await note(.safeState, "\(role) in safe state\(why)", state)
                        return nil
                    } catch {
                        try? await note(.fault, "safe state of \(role) failed: \(error)", state)
                        return "safe state of \(role): \(error)"
                    }
                }
            }
            return await group.reduce(into: [String]()) { if let failure = $1 { $0.append(failure) } }
        }
        return failures.sorted().first
    }

    /// Attempts every `finally` step (unless the run was halted), then sends every instrument to its
    /// safe state. Returns the first error. A halt requested while `finally` runs cuts it short.
    private func cleanup(_ state: RunState) async -> String? {
        var firstError: String?
        if control.request?.stop != .halt {
            let steps = Task { [self] in await finallySteps(state) }
            control.watch { if case .stopping(.halt, _) = $0 { steps.cancel() } }
            firstError = await steps.value
        } else if !definition.finally.isEmpty {
            try? await note(.fault, "finally skipped: halted by \(control.request!.by)", state)
        }
        control.watch(nil)
        let safeStateError = await commandSafeStates("", state)
        return firstError ?? safeStateError
    }

    /// Each top-level `finally` step is attempted even when an earlier one failed: a pump that would
    /// not stop must not keep the gas flowing. Returns the first failure.
    private func finallySteps(_ initial: RunState) async -> String? {
        var state = initial
        var firstError: String?
        for step in definition.finally {
            if Task.isCancelled {
                try? await note(.fault, "finally cut short: halted by \(control.request?.by ?? "a halt request")", state)
                break
            }
            do {
                try await execute([step], &state)
            } catch where !Task.isCancelled {
                // The error names the step's place in the protocol file.
                let message = "finally step failed: \(error)"
                firstError = firstError ?? message
                try? await note(.fault, message, state)
            } catch {}
        }
        return firstError
    }

    struct RunState: Sendable {
        var runID: Int64
        var environment: ExprEnvironment
        var outputs: [String: ExprValue] = [:]
        var stepID = 0
        /// Where the steps are: one frame per block entered, innermost last.
        var path: [Frame] = []
        /// What the protocol has commanded so far, to write again when a paused run resumes.
        var commanded: [ChannelRef: ExprValue] = [:]
        var commandOrder: [ChannelRef] = []
        /// Where checkpoints are kept (shared by the run's attempts).
        var checkpoints: Checkpoints?

        init(runID: Int64, environment: ExprEnvironment) {
            self.runID = runID; self.environment = environment
        }
    }

    /// The step at `index` of a block, with what a resume needs to re-enter it: the loop's iteration,
    /// the side of an `if` taken, and the bindings a loop or include replaced.
    struct Frame: Sendable {
        var index: Int
        var iteration = 0
        var taken: Bool?
        var outer: [String: ExprValue]?
    }

    /// The run's last checkpoint: a copy of its state there (the start until the first checkpoint).
    final class Checkpoints: Sendable {
        private let latest: Mutex<RunState>
        init(_ start: RunState) { latest = Mutex(start) }
        var last: RunState { latest.withLock { $0 } }
        func save(_ state: RunState) { latest.withLock { $0 = state } }
    }

    /// A call to an instrument that failed because the instrument is gone or disagrees with what was
    /// written: the run pauses rather than fails.
    struct InstrumentFault: Error, CustomStringConvertible {
        var reason: RunLifecycle.PauseReason
        var error: LabError
        var description: String { error.description }
    }

    /// Runs one instrument call; a lost link or a read-back mismatch becomes an `InstrumentFault`.
    private func call<T: Sendable>(_ role: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as LabError {
            let name = instruments[role]?.identity.name ?? role
            switch error.code {
            case .instrumentLost, .timeout, .transport:
                throw InstrumentFault(reason: .instrumentLost(instrument: name, detail: error.message), error: error)
            case .readBackMismatch:
                throw InstrumentFault(reason: .readBack(instrument: name, detail: error.message), error: error)
            default:
                throw error
            }
        }
    }

    /// Runs a block's steps; `resume` is the path of a checkpoint inside it to go on from (after it).
    private func execute(_ steps: [Step], _ state: inout RunState, resume: ArraySlice<Frame>? = nil) async throws {
        let depth = state.path.count
        var first = 0
        var inner: ArraySlice<Frame>?
        if let resume, let frame = resume.first {
            if resume.count == 1 { first = frame.index + 1 }   // the checkpoint itself: go on after it
            else { first = frame.index; inner = resume.dropFirst() }
        }
        state.path.append(resume?.first ?? Frame(index: 0))
        defer { state.path.removeLast() }
        for index in first..<steps.count {
            try Task.checkCancellation()
            let step = steps[index]
            let resuming = index == first ? inner : nil
            if resuming == nil { state.path[depth] = Frame(index: index) }
            state.stepID = step.id
            if !step.repeatable {
                _ = try? control.send(.unrepeatableDone(.init(location: step.location, abortsOnPause: step.abortsOnPause)))
            }
            do {
                if let timeout = step.timeout {
                    try await withTimeout(seconds(timeout, state.environment), step, &state, resuming)
                } else {
                    try await execute(step, &state, resume: resuming)
                }
            } catch let error as LabError where error.location == nil {
                var located = error
                located.location = step.location
                throw located
            }
        }
    }

    /// Runs a step that has a `timeout`: past it, the step is cancelled and fails.
    private func withTimeout(_ limit: Double, _ step: Step, _ state: inout RunState, _ resume: ArraySlice<Frame>?) async throws {
        let start = state
        let result = try await withThrowingTaskGroup(of: RunState?.self) { group in
            group.addTask { [self] in
                var inner = start
                try await execute(step, &inner, resume: resume)
                return inner
            }
            group.addTask { [clock] in
                try await clock.sleep(seconds: limit)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
        guard let result else {
            throw LabError(.timeout, "the step took longer than its timeout of \(Self.number(limit)) s", at: step.location)
        }
        state = result
    }

    private func execute(_ step: Step, _ state: inout RunState, resume: ArraySlice<Frame>?) async throws {
        let frame = state.path.count - 1
        switch step.action {
        case .set(let ref, let expr):
            let value = try state.environment.evaluate(expr)
            try await write(ref, value, state)
            if step.repeatable { remember(ref, value, &state) }
        case .ramp(let ramp):
            try await self.ramp(ramp, &state)
        case .waitUntil(let wait):
            try await waitUntil(wait, &state)
        case .hold(let expr):
            try await wait(seconds(expr, state.environment), "hold", state)
        case .measure(let measure):
            try await self.measure(measure, &state)
        case .log(let text):
            try await note(.log, text, state)
        case .annotate(let notes):
            try await note(.annotation, notes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "), state)
        case .checkpoint(let name):
            try await note(.checkpoint, name, state)
            // Everything before a checkpoint is committed before the run may rewind to it: data
            // whose commit failed after it would otherwise be lost, not measured again.
            try await durably { try await recorder.flush() }
            state.checkpoints?.save(state)
            // A pause waiting for this checkpoint takes effect here: the control interrupts the steps.
            _ = try? control.send(.checkpointReached(name))
            try Task.checkCancellation()
        case .branch(let condition, let then, let otherwise):
            let taken: Bool
            if resume != nil, let known = state.path[frame].taken {
                taken = known
            } else {
                taken = branchDecision(step.id, try state.environment.condition(condition))
                state.path[frame].taken = taken
                try await note(.branch, "if \(condition): \(taken ? "then" : "else")", state)
            }
            try await execute(taken ? then : otherwise, &state, resume: resume)
        case .parallel(let branches):
            try await parallel(branches, &state)
        case .loop(let variable, let values, let body, let until):
            if resume == nil {
                state.path[frame].outer = variable.map { name in state.environment.parameters[name].map { [name: $0] } ?? [:] }
            }
            let saved = variable.flatMap { state.path[frame].outer?[$0] }
            for iteration in (resume == nil ? 0 : state.path[frame].iteration)..<values.count {
                let resuming = resume != nil && iteration == state.path[frame].iteration ? resume : nil
                state.path[frame].iteration = iteration
                if let variable { state.environment.parameters[variable] = try state.environment.evaluate(values[iteration]) }
                try await execute(body, &state, resume: resuming)
                if let until, try state.environment.condition(until) { break }
            }
            if let variable { state.environment.parameters[variable] = saved }
        case .scope(let name, let bindings, let body):
            // A sub-protocol sees its own parameters, bound from the caller's values; series are shared.
            if resume == nil {
                var inner = [String: ExprValue]()
                for (parameter, expr) in bindings { inner[parameter] = try state.environment.evaluate(expr) }
                state.path[frame].outer = state.environment.parameters
                try await note(.log, "include \(name)", state)
                state.environment.parameters = inner
            }
            let saved = state.path[frame].outer ?? [:]
            defer { state.environment.parameters = saved }
            try await execute(body, &state, resume: resume)
        }
    }

    /// Keeps what a `set` or `ramp` commanded to a state the instrument holds (a setpoint, a switch),
    /// for a resume to write again; a write-only command (a dispense) is never sent again.
    private func remember(_ ref: ChannelRef, _ value: ExprValue, _ state: inout RunState) {
        guard instruments[ref.instrument]?.channelInfo(ref.channel)?.readable == true else { return }
        if state.commanded.updateValue(value, forKey: ref) == nil { state.commandOrder.append(ref) }
    }

    private func write(_ ref: ChannelRef, _ value: ExprValue, _ state: RunState, restoring: Bool = false) async throws {
        let (instrument, info) = try channel(ref)
        let wire: Value
        switch value {
        case .bool(let b) where info.isBoolean: wire = .bool(b)
        case .quantity(let q) where !info.isBoolean:
            wire = .real(try q.inUnit(info.unit))
        default:
            throw LabError(.invalidFile, "\(ref) cannot be set to \(value)")
        }
        let command = "\(ref) = \(wire)\(info.isBoolean ? "" : " \(info.unit.symbol)")" + (restoring ? " (restored on resume)" : "")
        if let why = holds.reason(instrument.identity.name) {
            throw LabError(.accessDenied, "\(command) not sent: \(instrument.identity.name) is held in its safe state (\(why))")
        }
        // Recorded once the outcome is known, so the record never claims a write that failed.
        do {
            try await call(ref.instrument) { try await instrument.write(ref.channel, wire) }
        } catch {
            try? await note(.fault, "command \(command) failed: \(error)", state)
            throw error
        }
        try await note(.command, command, state)
    }

    /// Moves a setpoint from its current value to the target at the given rate, one write per interval.
    private func ramp(_ ramp: Ramp, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(ramp.channel)
        let target = try state.environment.quantity(ramp.target).inUnit(info.unit)
        let rate = try state.environment.quantity(ramp.rate)
        let perSecond = abs(rate.value * rate.unit.scale / info.unit.scale)
        let interval = try seconds(ramp.every, state.environment)
        guard perSecond > 0, interval > 0 else { throw LabError(.invalidFile, "a ramp needs a positive rate and interval") }
        var current = try await call(ramp.channel.instrument) { try await instrument.read(ramp.channel.channel) }.asDouble
        while abs(target - current) > 1e-9 {
            // Each step waits its interval first, so that no step outruns the rate (a channel's
            // max_rate is checked against the time since the previous write).
            try await wait(interval, "ramp interval", state)
            let step = min(perSecond * interval, abs(target - current))
            current += target > current ? step : -step
            try await write(ramp.channel, .quantity(Quantity(current, info.unit)), state)
            remember(ramp.channel, .quantity(Quantity(current, info.unit)), &state)
        }
    }

    private func waitUntil(_ wait: WaitUntil, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(wait.channel)
        let target = try state.environment.quantity(wait.target).inUnit(info.unit)
        let tolerance = try state.environment.quantity(wait.tolerance)
        let within = tolerance.unit == .one ? tolerance.value : try tolerance.convertedDifference(to: info.unit).value
        let deadline = clock.now + (try seconds(wait.timeout, state.environment))
        let poll = try seconds(wait.pollEvery, state.environment)
        try await keeping(series: wait.channel.description, info.unit, &state) { state, readings in
            while true {
                // A timeout is decided by a reading taken at or after the deadline, never by an
                // earlier one whose reply came late: the last poll waits only until the deadline.
                let taken = clock.now
                let value = try await call(wait.channel.instrument) { try await instrument.read(wait.channel.channel) }.asDouble
                readings.append(record(wait.channel, series: wait.channel.description, value, info.unit, state))
                if abs(value - target) <= within { return }
                guard taken < deadline else {
                    let message = "\(wait.channel) did not come within \(Self.number(within)) \(info.unit) of "
                        + "\(Self.number(target)) \(info.unit) in time (last \(Self.number(value)) \(info.unit))"
                    guard wait.onTimeout == .continue else { throw LabError(.timeout, message) }
                    return try await note(.fault, message + "; continuing", state)
                }
                try await self.wait(min(poll, max(0, deadline - clock.now)), "poll of \(wait.channel)", state)
            }
        }
    }

    /// Four significant digits: a reading's full binary expansion (31.991750717163086) is noise to a reader.
    static func number(_ x: Double) -> String { String(format: "%.4g", x) }

    private func measure(_ measure: Measure, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(measure.channel)
        if let layout = info.array { return try await measureArrays(measure, instrument, info.unit, layout, &state) }
        let interval = try measure.every.map { try seconds($0, state.environment) } ?? 0
        try await keeping(series: measure.name, info.unit, &state) { state, readings in
            var seen = state.environment
            // Per reading only what changes: a fast instrument streams thousands a second.
            let name = instrument.identity.name, unit = info.unit.symbol
            readings.reserveCapacity(measure.count)
            for i in 0..<measure.count {
                if i > 0, interval > 0 { try await wait(interval, "interval of \(measure.name)", state) }
                let value = try await call(measure.channel.instrument) { try await instrument.read(measure.channel.channel) }.asDouble
                guard value.isFinite else { throw LabError(.notANumber, "\(measure.channel) returned \(value)") }
                readings.append(MeasurementRecord(stepIndex: state.stepID, channel: measure.channel, instrument: name, series: measure.name,
                                                  value: value, unit: unit, wallTime: Date(), monotonicTime: clock.now))
                if let until = measure.until {
                    seen.series[measure.name, default: Series(unit: info.unit)].append(value, at: readings.last!.monotonicTime)
                    if try seen.condition(until) { return }
                }
            }
        }
    }

    /// One whole array per reading (a spectrum), stored as one record with its axis; no series value.
    private func measureArrays(_ measure: Measure, _ instrument: any Instrument, _ unit: LabUnit, _ layout: ArrayLayout,
                               _ state: inout RunState) async throws {
        guard let reader = instrument as? any ArrayReadable else {
            throw LabError(.accessDenied, "\(measure.channel) is an array channel, and \(instrument.identity.name) cannot read arrays")
        }
        let interval = try measure.every.map { try seconds($0, state.environment) } ?? 0
        try await keeping(series: measure.name, unit, &state) { state, readings in
            let name = instrument.identity.name, unit = unit.symbol
            for i in 0..<measure.count {
                if i > 0, interval > 0 { try await wait(interval, "interval of \(measure.name)", state) }
                let values = try await call(measure.channel.instrument) { try await reader.readArray(measure.channel.channel) }
                guard values.count == layout.length else {
                    throw LabError(.protocolViolation, "\(measure.channel) returned \(values.count) values, its driver file says \(layout.length)")
                }
                readings.append(MeasurementRecord(stepIndex: state.stepID, channel: measure.channel, instrument: name, series: measure.name,
                                                  value: .nan, unit: unit, wallTime: Date(), monotonicTime: clock.now,
                                                  array: ArrayReading(values: values, axis: layout.axis)))
            }
        }
    }

    /// Runs a reading loop, then stores what it read in one transaction and adds it to the step's
    /// series — also when the loop fails part-way: every reading the instrument gave is kept.
    private func keeping(series: String, _ unit: LabUnit, _ state: inout RunState,
                         _ body: (RunState, inout [MeasurementRecord]) async throws -> Void) async throws {
        var readings: [MeasurementRecord] = []
        let runID = state.runID
        do {
            try await body(state, &readings)
        } catch {
            try? await durably { [readings] in try await recorder.record(readings, run: runID) }
            append(readings, to: series, unit, &state)
            throw error
        }
        // The step completes only once its readings are durable.
        try await durably { [readings] in try await recorder.record(readings, run: runID) }
        append(readings, to: series, unit, &state)
    }

    /// Sleeps on the run's clock and notes it when the wait lasted noticeably longer than commanded
    /// (a starved process, a stalled machine): the stored timings then say what really happened.
    private func wait(_ seconds: Double, _ what: @autoclosure () -> String, _ state: RunState) async throws {
        let started = clock.now
        try await clock.sleep(seconds: seconds)
        let actual = clock.now - started
        // 5 % or a quarter of a wall-clock second, whichever is more, in this clock's seconds.
        if actual - seconds > max(0.05 * seconds, 0.25 * clock.rate) {
            try await note(.timing, String(format: "%@ lasted %.3g s instead of %.3g s", what(), actual, seconds), state)
        }
    }

    private func parallel(_ branches: [[Step]], _ state: inout RunState) async throws {
        let start = state
        var finished: [RunState] = []
        if let virtual = clock as? VirtualClock {
            // Simulated time: each branch from the same start; the block ends with the longest.
            let t0 = virtual.now
            var end = t0
            for branch in branches {
                virtual.rewind(to: t0)
                var branchState = start
                try await execute(branch, &branchState)
                finished.append(branchState)
                end = max(end, virtual.now)
            }
            virtual.rewind(to: end)
        } else {
            finished = try await withThrowingTaskGroup(of: RunState.self) { group in
                for branch in branches {
                    group.addTask { [self] in
                        var branchState = start
                        try await execute(branch, &branchState)
                        return branchState
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        // Branches use disjoint instruments; what they commanded is kept, their new readings are merged in time order.
        for branch in finished {
            for ref in branch.commandOrder where start.commanded[ref] != branch.commanded[ref] {
                remember(ref, branch.commanded[ref]!, &state)
            }
            for (name, series) in branch.environment.series {
                let before = start.environment.series[name]?.values.count ?? 0
                for i in before..<series.values.count {
                    state.environment.series[name, default: Series(unit: series.unit)].append(series.values[i], at: series.times[i])
                }
            }
        }
        for name in state.environment.series.keys {
            let s = state.environment.series[name]!
            let order = s.times.indices.sorted { s.times[$0] < s.times[$1] }
            state.environment.series[name] = Series(unit: s.unit, values: order.map { s.values[$0] }, times: order.map { s.times[$0] })
        }
    }

    private func append(_ readings: [MeasurementRecord], to name: String, _ unit: LabUnit, _ state: inout RunState) {
        // Arrays are stored, not kept as series: expressions read numbers.
        for r in readings where r.array == nil {
            state.environment.series[name, default: Series(unit: unit)].append(r.value, at: r.monotonicTime)
        }
    }

    private func channel(_ ref: ChannelRef) throws(LabError) -> (any Instrument, ChannelInfo) {
        guard let instrument = instruments[ref.instrument] else {
            throw LabError(.unknownReference, "no instrument bound to role '\(ref.instrument)'")
        }
        guard let info = instrument.channelInfo(ref.channel) else {
            throw LabError(.unknownReference, "\(ref.instrument) (\(instrument.identity.driver)) has no channel '\(ref.channel)'")
        }
        return (instrument, info)
    }

    private func seconds(_ expr: Expr, _ environment: ExprEnvironment) throws -> Double {
        let q = try environment.quantity(expr)
        guard let s = q.seconds, s.isFinite, s >= 0 else { throw LabError(.invalidFile, "\(expr) = \(q) is not a duration") }
        return s
    }

    private func record(_ ref: ChannelRef, series: String, _ value: Double, _ unit: LabUnit, _ state: RunState) -> MeasurementRecord {
        MeasurementRecord(stepIndex: state.stepID, channel: ref, instrument: instruments[ref.instrument]!.identity.name,
                          series: series, value: value, unit: unit.symbol, wallTime: Date(), monotonicTime: clock.now)
    }

    private func note(_ kind: RunEvent.Kind, _ message: String, _ state: RunState) async throws {
        let event = RunEvent(kind, message, monotonicTime: clock.now)
        try await durably { try await recorder.note(event, run: state.runID) }
    }

    /// Stores through the recorder in a task of its own: what happened is recorded even while the
    /// run is being aborted (storage refuses work in a cancelled task). Storage that fails (a full
    /// disk, an I/O error) pauses the run like a lost instrument: nothing more is measured that
    /// could not be kept, and the run goes on from its last checkpoint once resumed.
    private func durably(_ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await Task { try await body() }.value
        } catch let error as LabError where error.code == .storage {
            throw InstrumentFault(reason: .storage(detail: error.message), error: error)
        }
    }
}

extension Quantity {
    /// The value in `unit`; a bare number is taken to be in it already.
    func inUnit(_ unit: LabUnit) throws(LabError) -> Double {
        self.unit == .one ? value : try converted(to: unit).value
    }
}
