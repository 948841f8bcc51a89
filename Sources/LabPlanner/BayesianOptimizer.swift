import Foundation
public import LabCore

/// The planner as an `Advisor` for the campaign loop. An actor, so fitting never runs on the
/// engine's executor.
public actor BayesianOptimizer: Advisor {
    public private(set) var planner: Planner

    public init(space: PlannerSpace, options: Planner.Options = Planner.Options(), seed: UInt64) {
        planner = Planner(space: space, options: options, seed: seed)
    }

    public func suggest() throws -> Suggestion {
        let proposal = try planner.propose(1)[0]
        // Every proposal so far is either observed or still pending.
        let number = planner.observations.count + planner.pending.count
        return Suggestion(values: proposal.values, chosenBy: proposal.chosenBy, proposalID: "bo-\(number)")
    }

    public func observe(_ values: [String: Double], outcome: Outcome?) {
        planner.observe(values, outcome: outcome)
    }

    public func withdraw(_ values: [String: Double]) {
        planner.withdraw(values)
    }
}
