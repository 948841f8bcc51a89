import Foundation
import LabCore
import LabDrivers
public import LabEngine
import LabPlanner
import LabSpec
import LabStorage
public import Logging

/// One campaign run in process, without the daemon: simulators → instruments → database → campaign
/// loop, started in that order and stopped in reverse. The tests of the campaign loop use it; the
/// daemon runs campaigns through its queue (`Campaigns`) and shares `plan` and `history` from here.
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

    /// Runs a campaign file against its lab, simulating every `simulate: true` instrument. With
    /// `resume`, continues that stored campaign instead of starting a new one (see `history`).
    public static func run(campaignPath: String, databasePath: String, budget: Int? = nil, resume: Int64? = nil,
                           control: RunControl = RunControl(),
                           logger: Logger = Logger(label: "serendip"),
                           onExperiment: @escaping @Sendable (ExperimentReport) -> Void = { _ in }) async throws -> Summary {
        let campaign = try CampaignSpec.load(path: campaignPath)
        let lab = campaign.lab, definition = campaign.definition
        let (advisor, rules, initialPoints) = try plan(campaign, budget: budget)
        let clock = ScaledClock(rate: lab.simulation.speed)
        let simulators = try SimulatedLab(config: lab, clock: clock)
        defer { simulators.stop() }

        let lock = try DatabaseLock(database: databasePath)
        defer { withExtendedLifetime(lock) {} }
        let database = try LabDatabase(path: databasePath, auditActor: "campaign process of \(ProcessInfo.processInfo.userName)")
        // Before anything else: whatever a killed process left running is made safe.
        try await RestartRecovery.makeSafe(database: database, lab: lab, simulators: simulators, logger: logger)
        let instruments = try InstrumentConnector.connect(lab, simulators: simulators, for: definition)
        // The first objective; the stored campaign text holds every one.
        let primary = rules.objectives.first
        let direction = primary.map { $0.maximize ? "maximize" : "minimize" }
        let (campaignID, (history, retries)) = if let resume {
            (resume, try Self.history(of: resume, in: database, for: campaign))
        } else {
            (try database.createCampaign(name: campaign.name, spec: campaign.source, objective: primary?.output,
                                         direction: direction, seed: campaign.seed), ([FinishedRun](), [Suggestion]()))
        }
        logger.info(resume == nil ? "campaign started" : "campaign resumed",
                    metadata: ["campaign": "\(campaignID)", "earlier results": "\(history.count)"])
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock,
                                        recorder: database, logger: logger, control: control)
        let runner = CampaignRunner(executor: executor, advisor: advisor, campaignID: campaignID, rules: rules,
                                    operatorName: ProcessInfo.processInfo.userName, softwareVersion: softwareVersion)
        let experiments = try await runner.run(history: history, retries: retries, onExperiment: onExperiment)
        return Summary(campaignID: campaignID, databasePath: databasePath, experiments: experiments,
                       initialPoints: initialPoints, maximize: rules.objectives.first?.maximize ?? true)
    }

    /// The finished runs of a stored campaign, to tell the advisor again, and the experiments that a
    /// crash or a stop cut short after the last of them, to run again first. Only completed and
    /// failed runs gave a result; an interrupted or aborted run did not, so its experiment is run
    /// again exactly as it was proposed. Refused if the campaign file or the protocol changed since,
    /// because the stored numbers would then mean something else.
    static func history(of id: Int64, in database: LabDatabase, for campaign: CampaignSpec) throws
        -> (finished: [FinishedRun], retries: [Suggestion]) {
        guard let stored = try database.campaign(id) else {
            throw LabError(.unknownReference, "there is no campaign \(id) in this database; the log line 'campaign started' gives each campaign's number")
        }
        guard stored.specSHA256 == campaign.source.sha256 else {
            throw LabError(.invalidFile, "campaign \(id) ('\(stored.name)') was started from a different text than \(campaign.source.path); resume it with the file as it was, or start a new campaign")
        }
        let definition = campaign.definition
        let searched: [String] = switch campaign.plan {
        case .optimize(let optimization): optimization.parameters
        case .sweep(let sweep): sweep.axes.map(\.name)
        }
        func values(of run: StoredCampaign.Run) throws -> [String: Double] {
            guard run.protocolSHA256 == definition.source.sha256 else {
                throw LabError(.invalidFile, "run \(run.id) of campaign \(id) used a different version of \(definition.source.path); resume with the protocol as it was, or start a new campaign")
            }
            var values: [String: Double] = [:]
            for name in searched {
                guard let value = run.parameters[name], let x = definition.parameter(named: name)?.coordinate(of: value) else {
                    throw LabError(.storage, "run \(run.id) of campaign \(id) has no stored value for parameter '\(name)'")
                }
                values[name] = x
            }
            return values
        }
        let gaveResult = { (run: StoredCampaign.Run) in run.outcome == .completed || run.outcome == .failed }
        let finished = try stored.runs.filter(gaveResult).map { run in
            FinishedRun(runID: run.id, values: try values(of: run), chosenBy: run.chosenBy, outcome: run.outcome,
                        outputs: run.outputs, error: run.error)
        }
        // Cut short after the last result: each distinct experiment once (a retry may itself have been cut short).
        let lastResult = stored.runs.last(where: gaveResult)?.id ?? 0
        var retries: [Suggestion] = []
        for run in stored.runs where run.id > lastResult && !gaveResult(run) {
            let x = try values(of: run)
            guard !retries.contains(where: { $0.values == x }) else { continue }
            let original = run.chosenBy.components(separatedBy: " (again after").first!
            retries.append(Suggestion(values: x, chosenBy: "\(original) (again after run \(run.id) was \(run.outcome.rawValue))",
                                      proposalID: run.proposalID ?? "retry-\(run.id)"))
        }
        return (finished, retries)
    }

    /// The advisor and rules a campaign's plan asks for. What the planner cannot do yet is refused
    /// here, by name, rather than half done.
    static func plan(_ campaign: CampaignSpec, budget: Int?) throws -> (any Advisor, CampaignRules, initialPoints: Int) {
        let definition = campaign.definition
        switch campaign.plan {
        case .sweep(let sweep):
            let points = sweep.points(seed: campaign.seed)
            let rules = CampaignRules(objectives: [], budget: min(budget ?? points.count, points.count), fixed: campaign.fixed)
            return (SweepAdvisor(points: points, definition: definition), rules, 0)
        case .optimize(let optimization):
            let space = PlannerSpace(optimization.parameters.compactMap { name in
                definition.parameter(named: name).map(Self.plannerParameter)
            }, constraints: optimization.parameterConstraints)
            var options = Planner.Options()
            options.initialPoints = optimization.initialPoints
            options.initialDesign = switch optimization.initialDesign {
            case .sobol: .sobol
            case .latin_hypercube: .latinHypercube
            case .random: .random
            }
            options.failures = optimization.onFailure == .worst ? .worst : .avoid
            options.outputTransform = switch optimization.transform {
            case .auto: .auto
            case .none: .none
            case .log: .log
            case .power: .power
            }
            options.expectBest = optimization.expectBest == .anywhere ? .anywhere : .inside
            if let beta = optimization.ucbBeta { options.acquisition = .upperConfidenceBound(beta: beta) }
            var noiseOutput: String?
            switch optimization.noise {
            case .inferred: options.noise = .inferred
            case .noiseFree: options.noise = .noiseFree
            case .measured(let output): (options.noise, noiseOutput) = (.known, output)
            }
            let advisor = BayesianOptimizer(space: space, options: options, seed: campaign.seed)
            let rules = CampaignRules(objectives: optimization.objectives.map { .init(output: $0.output, maximize: $0.maximize) },
                                      budget: budget ?? optimization.budget, fixed: campaign.fixed,
                                      outcomeConstraints: optimization.outcomeConstraints, noiseOutput: noiseOutput,
                                      batchSize: optimization.batchSize ?? 1,
                                      stopAfterNoImprovement: optimization.stopAfterNoImprovement,
                                      stopAtTarget: optimization.stopAtTarget, stopOnFailure: optimization.onFailure == .stop)
            return (advisor, rules, optimization.initialPoints)
        }
    }

    /// How the planner sees a protocol parameter: booleans as the whole numbers 0 and 1, choices
    /// as categories (the numbers `ParameterSpec.value(coordinate:)` reads back).
    static func plannerParameter(_ spec: ParameterSpec) -> PlannerSpace.Parameter {
        switch spec.kind {
        case .real(_, let lower, let upper, let logScale): .real(name: spec.name, lower: lower, upper: upper, logScale: logScale)
        case .integer(let lower, let upper): .integer(name: spec.name, lower: lower, upper: upper)
        case .boolean: .integer(name: spec.name, lower: 0, upper: 1)
        case .choice(let options): .categorical(name: spec.name, options: options)
        }
    }
}
