import Foundation
public import LabCore

/// The planner as an `Advisor` for the campaign loop. An actor, so fitting never runs on the
/// engine's executor.
public actor BayesianOptimizer: Advisor {
    public private(set) var planner: Planner
    private var proposals = 0

    public init(space: PlannerSpace, options: Planner.Options = Planner.Options(), seed: UInt64) {
        planner = Planner(space: space, options: options, seed: seed)
    }

    /// Resumes from a planner saved earlier (it is Codable).
    public init(resuming planner: Planner) {
        self.planner = planner
        proposals = planner.observations.count + planner.pending.count
    }

    public func paretoFront() -> [(values: [String: Double], objectives: [Double])] { planner.paretoFront() }

    public func suggest() throws -> Suggestion {
        let proposal = try planner.propose(1)[0]
        proposals += 1
        return Suggestion(values: proposal.values, chosenBy: proposal.chosenBy, proposalID: "bo-\(proposals)")
    }

    public func observe(_ values: [String: Double], outcome: Outcome?) {
        planner.observe(values, outcome: outcome)
    }
}
