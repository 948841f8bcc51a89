import Foundation
public import LabCore
public import Logging

/// What one run of a protocol produced.
public struct RunResult: Sendable {
    public var runID: Int64
    public var outcome: RunOutcome
    public var outputs: [String: ExprValue]
    public var error: String?
}

/// Interprets a protocol IR against connected instruments, step by step, through one exhaustive
/// switch. Every exit — success, failure, abort (task cancellation) — runs the `finally` block and
/// then commands every instrument to its safe state. Every reading is stored through the recorder
/// before its step completes.
public struct ProtocolExecutor: Sendable {
    public var definition: ProtocolDefinition
    public var instruments: [String: any Instrument]
    public var clock: any LabClock
    public var recorder: any RunRecorder
    public var logger: Logger
    /// Decides a branch given the step id and what its condition evaluated to; `simulate
    /// --all-branches` uses it to force the side not yet taken.
    public var branchDecision: @Sendable (_ stepID: Int, _ evaluated: Bool) -> Bool = { $1 }

    public init(definition: ProtocolDefinition, instruments: [String: any Instrument], clock: any LabClock,
                recorder: any RunRecorder, logger: Logger) {
        self.definition = definition; self.instruments = instruments; self.clock = clock
        self.recorder = recorder; self.logger = logger
    }

    public func run(parameters given: [String: ExprValue], start: RunStart) async throws -> RunResult {
        let parameters = try definition.resolveParameters(given)
        // Provenance records every value the run used, defaults included.
        var start = start
        start.parameters = parameters.map { ParameterValue(name: $0.key, value: $0.value) }.sorted { $0.name < $1.name }
        let runID = try await recorder.beginRun(start)
        var state = RunState(runID: runID, environment: ExprEnvironment(parameters: parameters))
        var outcome = RunOutcome.completed
        var failure: String?
        do {
            try await execute(definition.steps, &state)
            for output in definition.outputs {
                state.outputs[output.name] = try state.environment.evaluate(output.expression)
            }
        } catch {
            outcome = Task.isCancelled || error is CancellationError ? .aborted : .failed
            failure = String(describing: error)
            logger.warning("run failed", metadata: ["run": "\(runID)", "error": "\(error)"])
        }
        // Cleanup and the final record must happen even when the run's task was cancelled (an abort),
        // so they run in a fresh task that does not inherit the cancellation.
        let finalState = state
        return try await Task { [self, outcome, failure] in
            var (outcome, failure) = (outcome, failure)
            if let failure { try? await recorder.note(RunEvent(.fault, failure, monotonicTime: clock.now), run: runID) }
            if let cleanupError = await cleanup(finalState), failure == nil {
                outcome = .failed
                failure = cleanupError
            }
            let outputs = outcome == .completed ? finalState.outputs : [:]
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

    /// Runs `finally`, then sends every instrument to its safe state. Returns the first error.
    private func cleanup(_ initial: RunState) async -> String? {
        var state = initial
        var firstError: String?
        do { try await execute(definition.finally, &state) } catch { firstError = "finally: \(error)" }
        for (role, instrument) in instruments.sorted(by: { $0.key < $1.key }) {
            do {
                try await instrument.goToSafeState()
                try? await note(.safeState, "\(role) in safe state", state)
            } catch {
                firstError = firstError ?? "safe state of \(role): \(error)"
                try? await note(.fault, "safe state of \(role) failed: \(error)", state)
            }
        }
        return firstError
    }

    struct RunState: Sendable {
        var runID: Int64
        var environment: ExprEnvironment
        var outputs: [String: ExprValue] = [:]
        var stepID = 0
    }

    private func execute(_ steps: [Step], _ state: inout RunState) async throws {
        for step in steps {
            try Task.checkCancellation()
            state.stepID = step.id
            do {
                try await execute(step, &state)
            } catch let error as LabError where error.location == nil {
                var located = error
                located.location = step.location
                throw located
            }
        }
    }

    private func execute(_ step: Step, _ state: inout RunState) async throws {
        switch step.action {
        case .set(let ref, let expr):
            try await write(ref, try state.environment.evaluate(expr), state)
        case .ramp(let ramp):
            try await self.ramp(ramp, &state)
        case .waitUntil(let wait):
            try await waitUntil(wait, &state)
        case .hold(let expr):
            try await clock.sleep(seconds: try seconds(expr, state.environment))
        case .measure(let measure):
            try await self.measure(measure, &state)
        case .log(let text):
            try await note(.log, text, state)
        case .annotate(let notes):
            try await note(.annotation, notes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "), state)
        case .checkpoint(let name):
            try await note(.checkpoint, name, state)
        case .branch(let condition, let then, let otherwise):
            let taken = branchDecision(step.id, try state.environment.condition(condition))
            try await note(.branch, "if \(condition): \(taken ? "then" : "else")", state)
            try await execute(taken ? then : otherwise, &state)
        case .parallel(let branches):
            try await parallel(branches, &state)
        case .loop(let variable, let values, let body, let until):
            let saved = variable.flatMap { state.environment.parameters[$0] }
            for value in values {
                if let variable { state.environment.parameters[variable] = try state.environment.evaluate(value) }
                try await execute(body, &state)
                if let until, try state.environment.condition(until) { break }
            }
            if let variable { state.environment.parameters[variable] = saved }
        case .scope(let name, let bindings, let body):
            // A sub-protocol sees its own parameters, bound from the caller's values; series are shared.
            var inner = [String: ExprValue]()
            for (parameter, expr) in bindings { inner[parameter] = try state.environment.evaluate(expr) }
            let saved = state.environment.parameters
            try await note(.log, "include \(name)", state)
            state.environment.parameters = inner
            defer { state.environment.parameters = saved }
            try await execute(body, &state)
        }
    }

    private func write(_ ref: ChannelRef, _ value: ExprValue, _ state: RunState) async throws {
        let (instrument, info) = try channel(ref)
        let wire: Value
        switch value {
        case .bool(let b) where info.isBoolean: wire = .bool(b)
        case .quantity(let q) where !info.isBoolean:
            wire = .real(try q.inUnit(info.unit))
        default:
            throw LabError(.invalidFile, "\(ref) cannot be set to \(value)")
        }
        try await note(.command, "\(ref) = \(wire)\(info.isBoolean ? "" : " \(info.unit.symbol)")", state)
        try await instrument.write(ref.channel, wire)
    }

    /// Moves a setpoint from its current value to the target at the given rate, one write per interval.
    private func ramp(_ ramp: Ramp, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(ramp.channel)
        let target = try state.environment.quantity(ramp.target).inUnit(info.unit)
        let rate = try state.environment.quantity(ramp.rate)
        let perSecond = abs(rate.value * rate.unit.scale / info.unit.scale)
        let interval = try seconds(ramp.every, state.environment)
        guard perSecond > 0, interval > 0 else { throw LabError(.invalidFile, "a ramp needs a positive rate and interval") }
        var current = try await instrument.read(ramp.channel.channel).asDouble
        while abs(target - current) > 1e-9 {
            let step = min(perSecond * interval, abs(target - current))
            current += target > current ? step : -step
            try await write(ramp.channel, .quantity(Quantity(current, info.unit)), state)
            if abs(target - current) > 1e-9 { try await clock.sleep(seconds: interval) }
        }
    }

    private func waitUntil(_ wait: WaitUntil, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(wait.channel)
        let target = try state.environment.quantity(wait.target).inUnit(info.unit)
        let tolerance = try state.environment.quantity(wait.tolerance)
        let within = tolerance.unit == .one ? tolerance.value : try tolerance.convertedDifference(to: info.unit).value
        let deadline = clock.now + (try seconds(wait.timeout, state.environment))
        let poll = try seconds(wait.pollEvery, state.environment)
        var readings: [MeasurementRecord] = []
        defer { append(readings, to: wait.channel.description, info.unit, &state) }
        while true {
            let value = try await instrument.read(wait.channel.channel).asDouble
            readings.append(record(wait.channel, series: wait.channel.description, value, info.unit, state))
            if abs(value - target) <= within { break }
            guard clock.now + poll <= deadline else {
                try await recorder.record(readings, run: state.runID)
                let message = "\(wait.channel) did not come within \(within) \(info.unit) of \(target) \(info.unit) in time (last \(value))"
                guard wait.onTimeout == .continue else { throw LabError(.timeout, message) }
                return try await note(.fault, message + "; continuing", state)
            }
            try await clock.sleep(seconds: poll)
        }
        try await recorder.record(readings, run: state.runID)
    }

    private func measure(_ measure: Measure, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(measure.channel)
        let interval = try measure.every.map { try seconds($0, state.environment) } ?? 0
        var readings: [MeasurementRecord] = []
        for i in 0..<measure.count {
            if i > 0 { try await clock.sleep(seconds: interval) }
            let value = try await instrument.read(measure.channel.channel).asDouble
            guard value.isFinite else { throw LabError(.notANumber, "\(measure.channel) returned \(value)") }
            let reading = record(measure.channel, series: measure.name, value, info.unit, state)
            readings.append(reading)
            if let until = measure.until {
                append([reading], to: measure.name, info.unit, &state)
                if try state.environment.condition(until) { break }
            }
        }
        // One step's measurements in one transaction; the step completes only once they are durable.
        try await recorder.record(readings, run: state.runID)
        if measure.until == nil { append(readings, to: measure.name, info.unit, &state) }
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
        // Branches use disjoint instruments; their new readings are merged in time order.
        for branch in finished {
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
        for r in readings {
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
        try await recorder.note(RunEvent(kind, message, monotonicTime: clock.now), run: state.runID)
    }
}

extension Quantity {
    /// The value in `unit`; a bare number is taken to be in it already.
    func inUnit(_ unit: LabUnit) throws(LabError) -> Double {
        self.unit == .one ? value : try converted(to: unit).value
    }
}
