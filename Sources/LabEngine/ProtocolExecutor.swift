import Foundation
public import LabCore
public import Logging

/// What one run of a protocol produced.
public struct RunResult: Sendable {
    public var runID: Int64
    public var outcome: RunOutcome
    public var outputs: [String: Quantity]
    public var error: String?
}

/// Interprets a protocol IR against connected instruments, step by step. Every exit — success,
/// failure, abort (task cancellation) — runs the `finally` block and then commands every instrument
/// to its safe state. Every reading is stored through the recorder before the step completes.
public struct ProtocolExecutor: Sendable {
    public var definition: ProtocolDefinition
    public var instruments: [String: any Instrument]
    public var clock: any LabClock
    public var recorder: any RunRecorder
    public var logger: Logger

    public init(definition: ProtocolDefinition, instruments: [String: any Instrument], clock: any LabClock,
                recorder: any RunRecorder, logger: Logger) {
        self.definition = definition; self.instruments = instruments; self.clock = clock
        self.recorder = recorder; self.logger = logger
    }

    public func run(parameters: [String: Quantity], start: RunStart) async throws -> RunResult {
        for spec in definition.parameters {
            guard let q = parameters[spec.name] else { throw LabError(.unknownReference, "no value for parameter $\(spec.name)") }
            let value = try q.converted(to: spec.unit).value
            guard spec.contains(value) else {
                throw LabError(.outOfLimits, "$\(spec.name) = \(value) \(spec.unit) is outside \(spec.lower)…\(spec.upper)")
            }
        }
        let runID = try await recorder.beginRun(start)
        var state = RunState(runID: runID, environment: ExprEnvironment(parameters: parameters))
        var outcome = RunOutcome.completed
        var failure: String?
        do {
            try await execute(definition.steps, &state)
            for output in definition.outputs {
                state.outputs[output.name] = try state.environment.quantity(output.expression)
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
            try await recorder.finishRun(runID, outcome: outcome, outputs: outputs, error: failure)
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
                try? await recorder.note(RunEvent(.safeState, "\(role) in safe state", monotonicTime: clock.now), run: state.runID)
            } catch {
                firstError = firstError ?? "safe state of \(role): \(error)"
                try? await recorder.note(RunEvent(.fault, "safe state of \(role) failed: \(error)", monotonicTime: clock.now), run: state.runID)
            }
        }
        return firstError
    }

    struct RunState: Sendable {
        var runID: Int64
        var environment: ExprEnvironment
        var outputs: [String: Quantity] = [:]
        var stepIndex = 0
    }

    private func execute(_ steps: [Step], _ state: inout RunState) async throws {
        for step in steps {
            try Task.checkCancellation()
            state.stepIndex += 1
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
            let (instrument, info) = try channel(ref)
            let value = try state.environment.quantity(expr)
            let wire: Value = info.isBoolean ? .bool(value.value != 0) : .real(try value.unit == .one
                ? value.value : value.converted(to: info.unit).value)
            try await note(.command, "\(ref) = \(wire) \(info.isBoolean ? "" : info.unit.symbol)", state)
            try await instrument.write(ref.channel, wire)
        case .waitUntil(let wait):
            try await waitUntil(wait, &state)
        case .hold(let expr):
            try await clock.sleep(seconds: try seconds(expr, state.environment))
        case .measure(let measure):
            try await self.measure(measure, &state)
        case .log(let text):
            try await note(.log, text, state)
        case .branch(let condition, let then, let otherwise):
            let taken = try state.environment.condition(condition)
            try await note(.branch, "if \(condition): \(taken ? "then" : "else")", state)
            try await execute(taken ? then : otherwise, &state)
        }
    }

    private func waitUntil(_ wait: WaitUntil, _ state: inout RunState) async throws {
        let (instrument, info) = try channel(wait.channel)
        let target = try state.environment.quantity(wait.target).converted(to: info.unit).value
        let tolerance = try state.environment.quantity(wait.tolerance).convertedDifference(to: info.unit).value
        let deadline = clock.now + (try seconds(wait.timeout, state.environment))
        let poll = try seconds(wait.pollEvery, state.environment)
        var readings: [MeasurementRecord] = []
        defer { state.environment.series[wait.channel.description, default: []] += readings.map { Quantity($0.value, info.unit) } }
        while true {
            let value = try await instrument.read(wait.channel.channel).asDouble
            readings.append(record(wait.channel, series: wait.channel.description, value, info.unit, state))
            if abs(value - target) <= tolerance { break }
            guard clock.now + poll <= deadline else {
                try await recorder.record(readings, run: state.runID)
                throw LabError(.timeout, "\(wait.channel) did not come within \(tolerance) \(info.unit) of \(target) \(info.unit) in time (last \(value))")
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
            readings.append(record(measure.channel, series: measure.name, value, info.unit, state))
        }
        // One step's measurements in one transaction; the step completes only once they are durable.
        try await recorder.record(readings, run: state.runID)
        state.environment.series[measure.name, default: []] += readings.map { Quantity($0.value, info.unit) }
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
        MeasurementRecord(stepIndex: state.stepIndex, channel: ref, instrument: instruments[ref.instrument]!.identity.name,
                          series: series, value: value, unit: unit.symbol, wallTime: Date(), monotonicTime: clock.now)
    }

    private func note(_ kind: RunEvent.Kind, _ message: String, _ state: RunState) async throws {
        try await recorder.note(RunEvent(kind, message, monotonicTime: clock.now), run: state.runID)
    }
}
