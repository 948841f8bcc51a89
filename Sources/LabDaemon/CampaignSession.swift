import Foundation
public import LabCore
import LabDrivers
public import LabEngine
import LabPlanner
import LabServer
import LabSpec
import LabStorage
public import Logging

/// Everything one campaign needs, started in dependency order and stopped in reverse:
/// simulators → instruments → database → campaign loop.
public struct CampaignSession {
    public struct Summary: Sendable {
        public var campaignID: Int64
        public var databasePath: String
        public var experiments: [ExperimentReport]
        public var initialPoints: Int
        public var maximize: Bool

        public var best: ExperimentReport? { experiments.filter { $0.objective != nil }.max(by: better) }
        public var bestInitial: ExperimentReport? {
            experiments.prefix(initialPoints).filter { $0.objective != nil }.max(by: better)
        }

        private func better(_ a: ExperimentReport, _ b: ExperimentReport) -> Bool {
            maximize ? a.objective! < b.objective! : a.objective! > b.objective!
        }
    }

    public static let softwareVersion = "0.1.0"

    /// Runs a campaign file against its lab, simulating every `simulate: true` instrument.
    public static func run(campaignPath: String, databasePath: String, budget: Int? = nil, socketPath: String? = nil,
                           logger: Logger = Logger(label: "serendip"),
                           onExperiment: @escaping @Sendable (ExperimentReport) -> Void = { _ in }) async throws -> Summary {
        let campaign = try CampaignSpec.load(path: campaignPath)
        let lab = campaign.lab, definition = campaign.definition
        let (advisor, rules, initialPoints) = try plan(campaign, budget: budget)
        let clock = ScaledClock(rate: lab.simulation.speed)
        let simulators = try SimulatedLab(config: lab, clock: clock)
        defer { simulators.stop() }
        let instruments = try InstrumentConnector.connect(lab, simulators: simulators, for: definition)

        let lock = try DatabaseLock(database: databasePath)
        defer { withExtendedLifetime(lock) {} }
        let database = try LabDatabase(path: databasePath)
        try database.interruptRunningRuns()
        let server = try socketPath.map {
            try SocketServer(path: $0, dispatcher: RPCDispatcher(database: database, version: softwareVersion))
        }
        defer { server?.stop() }
        let direction = rules.objective.map { _ in rules.maximize ? "maximize" : "minimize" }
        let campaignID = try database.createCampaign(name: campaign.name, spec: campaign.source, objective: rules.objective,
                                                     direction: direction, seed: campaign.seed)
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock,
                                        recorder: database, logger: logger)
        let runner = CampaignRunner(executor: executor, advisor: advisor, campaignID: campaignID, rules: rules,
                                    operatorName: ProcessInfo.processInfo.userName, softwareVersion: softwareVersion)
        let experiments = try await runner.run(onExperiment: onExperiment)
        return Summary(campaignID: campaignID, databasePath: databasePath, experiments: experiments,
                       initialPoints: initialPoints, maximize: rules.maximize)
    }

    /// The advisor and rules a campaign's plan asks for. What the planner cannot do yet is refused
    /// here, by name, rather than half done.
    static func plan(_ campaign: CampaignSpec, budget: Int?) throws -> (any Advisor, CampaignRules, initialPoints: Int) {
        let definition = campaign.definition
        switch campaign.plan {
        case .sweep(let sweep):
            let points = sweep.points(seed: campaign.seed)
            let rules = CampaignRules(objective: nil, budget: min(budget ?? points.count, points.count), fixed: campaign.fixed)
            return (SweepAdvisor(points: points, definition: definition), rules, 0)
        case .optimize(let optimization):
            var missing: [String] = []
            if optimization.objectives.count > 1 { missing.append("several objectives") }
            if !optimization.parameterConstraints.isEmpty || !optimization.outcomeConstraints.isEmpty { missing.append("constraints") }
            if optimization.batchSize > 1 { missing.append("batch_size above 1") }
            if optimization.initialDesign != .latin_hypercube { missing.append("initial_design: \(optimization.initialDesign)") }
            if optimization.onFailure == .avoid { missing.append("on_failure: avoid") }
            var dimensions: [PlannerSpace.Parameter] = []
            for name in optimization.parameters {
                guard case .real(_, let lower, let upper, let logScale)? = definition.parameter(named: name)?.kind else {
                    missing.append("optimising $\(name), which is not a real number")
                    continue
                }
                dimensions.append(.real(name: name, lower: lower, upper: upper, logScale: logScale))
            }
            guard missing.isEmpty else {
                throw LabError(.planner, "\(campaign.source.path) is valid, but this planner does not support \(missing.joined(separator: ", ")) yet",
                               cause: nil)
            }
            let objective = optimization.objectives[0]
            var options = Planner.Options()
            options.initialDesign = .latinHypercube
            options.initialPoints = optimization.initialPoints
            let advisor = BayesianOptimizer(space: PlannerSpace(dimensions), options: options, seed: campaign.seed)
            let rules = CampaignRules(objective: objective.output, maximize: objective.maximize,
                                      budget: budget ?? optimization.budget, fixed: campaign.fixed,
                                      stopAfterNoImprovement: optimization.stopAfterNoImprovement,
                                      stopAtTarget: optimization.stopAtTarget, stopOnFailure: optimization.onFailure == .stop)
            return (advisor, rules, optimization.initialPoints)
        }
    }
}
