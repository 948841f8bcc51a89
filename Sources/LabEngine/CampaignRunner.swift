import Foundation
public import LabCore

/// One finished experiment of a campaign, as a person watching wants to see it.
public struct ExperimentReport: Sendable {
    public var index: Int
    public var runID: Int64
    public var parameters: [String: Double]
    public var chosenBy: String
    public var objective: Double?
    public var bestSoFar: Double?
    public var outcome: RunOutcome
    public var error: String?
}

/// What a campaign optimises and when it stops.
public struct CampaignRules: Sendable {
    public struct Objective: Sendable, Hashable {
        public var output: String
        public var maximize: Bool
        public init(output: String, maximize: Bool) { self.output = output; self.maximize = maximize }
    }

    /// The outputs to optimise; none for a sweep, which only runs its points.
    public var objectives: [Objective]
    public var budget: Int
    /// Values held for every run, overriding the protocol's defaults.
    public var fixed: [String: ExprValue]
    /// Conditions on outputs (`purity >= 95`) a result should meet.
    public var outcomeConstraints: [Expr]
    /// An output giving the standard deviation of the (single) objective, when it is measured.
    public var noiseOutput: String?
    /// Proposals asked for at once; they run one after the other.
    public var batchSize: Int
    public var stopAfterNoImprovement: Int?
    public var stopAtTarget: Double?
    public var stopOnFailure: Bool

    public init(objectives: [Objective], budget: Int, fixed: [String: ExprValue] = [:], outcomeConstraints: [Expr] = [],
                noiseOutput: String? = nil, batchSize: Int = 1, stopAfterNoImprovement: Int? = nil,
                stopAtTarget: Double? = nil, stopOnFailure: Bool = false) {
        self.objectives = objectives; self.budget = budget; self.fixed = fixed
        self.outcomeConstraints = outcomeConstraints; self.noiseOutput = noiseOutput; self.batchSize = batchSize
        self.stopAfterNoImprovement = stopAfterNoImprovement; self.stopAtTarget = stopAtTarget
        self.stopOnFailure = stopOnFailure
    }

    /// What a run tells the advisor: nil unless it completed with every objective.
    public func outcome(of run: FinishedRun) -> Outcome? {
        run.outcome == .completed ? outcome(of: run.outputs) : nil
    }

    /// What a completed run's outputs tell the advisor; nil if an objective is missing.
    public func outcome(of outputs: [String: ExprValue]) -> Outcome? {
        func number(_ name: String) -> Double? {
            if case .quantity(let q)? = outputs[name], q.value.isFinite { return q.value }
            return nil
        }
        var objectives: [Double] = []
        for objective in self.objectives {
            guard let value = number(objective.output) else { return nil }
            objectives.append(objective.maximize ? value : -value)
        }
        // Outputs are named bare in a constraint, as series are in protocol expressions.
        let environment = ExprEnvironment(series: outputs.compactMapValues { value in
            if case .quantity(let q) = value { return Series(unit: q.unit, values: [q.value], times: [0]) }
            return nil
        })
        var slacks: [Double] = []
        for constraint in outcomeConstraints {
            guard case .binary(let op, let lhs, let rhs) = constraint,
                  let difference = try? environment.quantity(.binary(.subtract, lhs, rhs)).value else { return nil }
            switch op {
            case .less, .lessEqual: slacks.append(-difference)
            case .equal: slacks.append(-abs(difference))
            default: slacks.append(difference)
            }
        }
        let noise = noiseOutput.flatMap(number).map { $0 * $0 }
        return Outcome(objectives: objectives, constraintSlacks: slacks, noiseVariance: noise)
    }
}

/// A finished run of a campaign: what the loop, the stop rules and the advisor learn from it. Read
/// back from the database, the runs of a campaign that stopped let it be resumed.
public struct FinishedRun: Sendable {
    public var runID: Int64
    /// The advisor's numbers for the parameters it chose.
    public var values: [String: Double]
    public var chosenBy: String
    public var outcome: RunOutcome
    public var outputs: [String: ExprValue]
    public var error: String?

    public init(runID: Int64, values: [String: Double], chosenBy: String, outcome: RunOutcome, outputs: [String: ExprValue],
                error: String?) {
        self.runID = runID; self.values = values; self.chosenBy = chosenBy; self.outcome = outcome
        self.outputs = outputs; self.error = error
    }
}

/// The closed loop: ask the advisor, run the protocol, store everything, tell the advisor.
public struct CampaignRunner: Sendable {
    public var executor: ProtocolExecutor
    public var advisor: any Advisor
    public var campaignID: Int64
    public var rules: CampaignRules
    public var operatorName: String
    public var softwareVersion: String

    public init(executor: ProtocolExecutor, advisor: any Advisor, campaignID: Int64, rules: CampaignRules,
                operatorName: String, softwareVersion: String) {
        self.executor = executor; self.advisor = advisor; self.campaignID = campaignID; self.rules = rules
        self.operatorName = operatorName; self.softwareVersion = softwareVersion
    }

    /// Runs until the budget is spent, a stop rule holds, or a stop is requested through the
    /// executor's control (then it throws `CancellationError` once the current run has ended).
    /// `history`, for a resumed campaign, is told to the advisor first and counts against the budget
    /// and the stop rules, as if the campaign had never stopped; `retries`, the experiments a crash
    /// or a stop cut short, are run again next, before the advisor is asked for anything new.
    public func run(history: [FinishedRun] = [], retries: [Suggestion] = [],
                    onExperiment: @Sendable (ExperimentReport) -> Void = { _ in }) async throws -> [ExperimentReport] {
        var progress = CampaignProgress(rules: rules)
        for past in history where progress.reports.count < rules.budget {
            let outcome = rules.outcome(of: past)
            try await advisor.replay(past.values, outcome: outcome)
            let stop = progress.record(past, outcome: outcome)
            onExperiment(progress.reports.last!)
            if stop { return progress.reports }
        }
        var retries = retries[...]
        while progress.reports.count < rules.budget {
            var batch: [(Suggestion, retried: Bool)] = []
            while batch.count < min(rules.batchSize, rules.budget - progress.reports.count) {
                if let retry = retries.popFirst() { batch.append((retry, true)) } else { batch.append((try await advisor.suggest(), false)) }
            }
            for (suggestion, retried) in batch {
                let result = try await run(suggestion)
                let finished = FinishedRun(runID: result.runID, values: suggestion.values, chosenBy: suggestion.chosenBy,
                                           outcome: result.outcome, outputs: result.outputs, error: result.error)
                let outcome = rules.outcome(of: finished)
                // A retried experiment was suggested before the stop: tell it as such (a sweep moves past it).
                if retried { try await advisor.replay(suggestion.values, outcome: outcome) }
                else { try await advisor.observe(suggestion.values, outcome: outcome) }
                let stop = progress.record(finished, outcome: outcome)
                onExperiment(progress.reports.last!)
                if stop { return progress.reports }
            }
        }
        return progress.reports
    }

    /// One run of the protocol at a suggestion: the advisor chooses the parameters it searches; the
    /// executor fills the others from the fixed values and the defaults, and records every value used.
    private func run(_ suggestion: Suggestion) async throws -> RunResult {
        // No new run once a stop was asked for, nor once the caller's task was cancelled.
        if executor.control.request != nil { throw CancellationError() }
        try Task.checkCancellation()
        let definition = executor.definition
        var chosen = rules.fixed
        for spec in definition.parameters {
            if let x = suggestion.values[spec.name] { chosen[spec.name] = spec.value(coordinate: x) }
        }
        let start = RunStart(
            campaignID: campaignID, protocolName: definition.name, protocolSource: definition.source,
            parameters: [], chosenBy: suggestion.chosenBy, proposalID: suggestion.proposalID,
            instruments: executor.instruments.mapValues(\.identity), operatorName: operatorName,
            softwareVersion: softwareVersion, startedAt: Date(), startedMonotonic: executor.clock.now)
        let result = try await executor.run(parameters: chosen, start: start)
        if result.outcome == .aborted { throw CancellationError() }
        return result
    }
}

/// The experiments of a campaign so far, the best result, and whether a stop rule now holds.
public struct CampaignProgress: Sendable {
    public let rules: CampaignRules
    public private(set) var reports: [ExperimentReport] = []
    public private(set) var best: Double?
    private var sinceImprovement = 0

    public init(rules: CampaignRules) { self.rules = rules }

    /// Adds one finished run; true when the campaign should stop after it.
    public mutating func record(_ run: FinishedRun, outcome: Outcome?) -> Bool {
        let primary = rules.objectives.first
        // The first objective as the protocol computed it, for people and stop rules.
        let value = outcome.flatMap { o in primary.map { o.objectives[0] * ($0.maximize ? 1 : -1) } }
        let counts = outcome?.meetsConstraints ?? false
        if let value, counts, let primary, best.map({ primary.maximize ? value > $0 : value < $0 }) ?? true {
            best = value
            sinceImprovement = 0
        } else {
            sinceImprovement += 1
        }
        reports.append(ExperimentReport(index: reports.count + 1, runID: run.runID, parameters: run.values,
                                        chosenBy: run.chosenBy, objective: value, bestSoFar: best,
                                        outcome: run.outcome, error: run.error))
        if rules.stopOnFailure && run.outcome == .failed { return true }
        if let limit = rules.stopAfterNoImprovement, sinceImprovement >= limit { return true }
        if let target = rules.stopAtTarget, let best, let primary, primary.maximize ? best >= target : best <= target {
            return true
        }
        return false
    }
}
