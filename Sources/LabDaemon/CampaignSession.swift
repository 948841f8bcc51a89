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
        let lab = try LabConfig.load(path: campaign.labPath)
        let definition = try ProtocolParser.load(path: campaign.protocolPath, drivers: lab.drivers)
        guard definition.outputs.contains(where: { $0.name == campaign.objective }) else {
            throw LabError(.unknownReference, "\(campaign.source.path): objective '\(campaign.objective)' is not an output of \(definition.name)")
        }
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
        let campaignID = try database.createCampaign(name: campaign.name, spec: campaign.source, objective: campaign.objective,
                                                     direction: campaign.direction.rawValue, seed: campaign.seed)

        // The planner searches the real parameters; the others run at their defaults (issue #4 adds the rest).
        var dimensions: [SearchSpace.Dimension] = []
        for spec in definition.parameters {
            if case .real(_, let lower, let upper, _) = spec.kind {
                dimensions.append(.init(name: spec.name, lower: lower, upper: upper))
            } else if spec.defaultValue == nil {
                throw LabError(.invalidFile, "the planner searches real parameters only so far; give $\(spec.name) a default",
                               at: spec.location)
            }
        }
        let space = SearchSpace(dimensions)
        let advisor = BayesianOptimizer(space: space, initialPoints: campaign.initialPoints, seed: campaign.seed)
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock,
                                        recorder: database, logger: logger)
        let runner = CampaignRunner(executor: executor, advisor: advisor, campaignID: campaignID,
                                    objective: campaign.objective, maximize: campaign.direction == .maximize,
                                    budget: budget ?? campaign.budget, operatorName: ProcessInfo.processInfo.userName,
                                    softwareVersion: softwareVersion)
        let experiments = try await runner.run(onExperiment: onExperiment)
        return Summary(campaignID: campaignID, databasePath: databasePath, experiments: experiments,
                       initialPoints: campaign.initialPoints, maximize: campaign.direction == .maximize)
    }
}
