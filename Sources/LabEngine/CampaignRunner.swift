import Foundation
public import LabCore
public import Logging

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
    /// The output to optimise; nil for a sweep, which only runs its points.
    public var objective: String?
    public var maximize: Bool
    public var budget: Int
    /// Values held for every run, overriding the protocol's defaults.
    public var fixed: [String: ExprValue]
    public var stopAfterNoImprovement: Int?
    public var stopAtTarget: Double?
    public var stopOnFailure: Bool

    public init(objective: String?, maximize: Bool = true, budget: Int, fixed: [String: ExprValue] = [:],
                stopAfterNoImprovement: Int? = nil, stopAtTarget: Double? = nil, stopOnFailure: Bool = false) {
        self.objective = objective; self.maximize = maximize; self.budget = budget; self.fixed = fixed
        self.stopAfterNoImprovement = stopAfterNoImprovement; self.stopAtTarget = stopAtTarget
        self.stopOnFailure = stopOnFailure
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

    public func run(onExperiment: @Sendable (ExperimentReport) -> Void = { _ in }) async throws -> [ExperimentReport] {
        let definition = executor.definition
        var reports: [ExperimentReport] = []
        var best: Double?
        var sinceImprovement = 0
        for index in 1...rules.budget {
            try Task.checkCancellation()
            let suggestion = try await advisor.suggest()
            // The advisor chooses the parameters it searches; the executor fills the others from the
            // fixed values and the defaults, and records every value the run used.
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
            var value: Double?
            if result.outcome == .completed, let objective = rules.objective, case .quantity(let q)? = result.outputs[objective] {
                value = q.value
            }
            try await advisor.observe(suggestion.values, outcome: value.map { rules.maximize ? $0 : -$0 })
            if let value, best.map({ rules.maximize ? value > $0 : value < $0 }) ?? true {
                best = value
                sinceImprovement = 0
            } else {
                sinceImprovement += 1
            }
            let report = ExperimentReport(index: index, runID: result.runID, parameters: suggestion.values,
                                          chosenBy: suggestion.chosenBy, objective: value, bestSoFar: best,
                                          outcome: result.outcome, error: result.error)
            reports.append(report)
            onExperiment(report)
            if rules.stopOnFailure && result.outcome == .failed { break }
            if let limit = rules.stopAfterNoImprovement, sinceImprovement >= limit { break }
            if let target = rules.stopAtTarget, let best, rules.maximize ? best >= target : best <= target { break }
        }
        return reports
    }
}
