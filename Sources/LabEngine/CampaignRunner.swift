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

/// The closed loop: ask the advisor, run the protocol, store everything, tell the advisor.
public struct CampaignRunner: Sendable {
    public var executor: ProtocolExecutor
    public var advisor: any Advisor
    public var campaignID: Int64
    public var objective: String
    public var maximize: Bool
    public var budget: Int
    public var operatorName: String
    public var softwareVersion: String

    public init(executor: ProtocolExecutor, advisor: any Advisor, campaignID: Int64, objective: String, maximize: Bool,
                budget: Int, operatorName: String, softwareVersion: String) {
        self.executor = executor; self.advisor = advisor; self.campaignID = campaignID; self.objective = objective
        self.maximize = maximize; self.budget = budget; self.operatorName = operatorName
        self.softwareVersion = softwareVersion
    }

    public func run(onExperiment: @Sendable (ExperimentReport) -> Void = { _ in }) async throws -> [ExperimentReport] {
        let definition = executor.definition
        var reports: [ExperimentReport] = []
        var best: Double?
        for index in 1...budget {
            try Task.checkCancellation()
            let suggestion = try await advisor.suggest()
            // The advisor chooses the parameters it searches; the executor fills the others from their
            // defaults and records every value the run used.
            let chosen = Dictionary(uniqueKeysWithValues: definition.parameters.compactMap { spec in
                suggestion.values[spec.name].map { (spec.name, ExprValue.quantity(Quantity($0, spec.unit))) }
            })
            let start = RunStart(
                campaignID: campaignID, protocolName: definition.name, protocolSource: definition.source,
                parameters: [], chosenBy: suggestion.chosenBy, proposalID: suggestion.proposalID,
                instruments: executor.instruments.mapValues(\.identity), operatorName: operatorName,
                softwareVersion: softwareVersion, startedAt: Date(), startedMonotonic: executor.clock.now)
            let result = try await executor.run(parameters: chosen, start: start)
            if result.outcome == .aborted { throw CancellationError() }
            var value: Double?
            if result.outcome == .completed, case .quantity(let q)? = result.outputs[objective] { value = q.value }
            try await advisor.observe(suggestion.values, outcome: value.map { maximize ? $0 : -$0 })
            if let value { best = best.map { maximize ? max($0, value) : min($0, value) } ?? value }
            let report = ExperimentReport(index: index, runID: result.runID, parameters: suggestion.values,
                                          chosenBy: suggestion.chosenBy, objective: value, bestSoFar: best,
                                          outcome: result.outcome, error: result.error)
            reports.append(report)
            onExperiment(report)
        }
        return reports
    }
}
