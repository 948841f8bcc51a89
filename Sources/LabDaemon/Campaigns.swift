import Foundation
public import LabCore
public import LabEngine
public import LabScheduler
import LabSpec
public import LabStorage
import Logging

/// The campaigns the daemon runs: started, stopped and resumed only when someone asks, each driven
/// through the queue by a `CampaignDriver`.
public actor Campaigns {
    private let database: LabDatabase
    private let lab: LabConfig
    private let scheduler: Scheduler
    private let logger: Logger
    private var drivers: [Int64: CampaignDriver] = [:]

    init(database: LabDatabase, lab: LabConfig, scheduler: Scheduler, logger: Logger) {
        self.database = database; self.lab = lab; self.scheduler = scheduler; self.logger = logger
    }

    /// A campaign file's text (and its protocol's, as the client read them), checked against the
    /// daemon's lab, then started. Returns its number.
    public func start(text: String, path: String, protocolText: String?, owner: String, needsApproval: Bool,
                      budget: Int? = nil) async throws -> Int64 {
        let spec = try CampaignSpec.parse(text, path: path, lab: lab, protocolText: protocolText)
        let (advisor, rules, _) = try CampaignSession.plan(spec, budget: budget)
        let primary = rules.objectives.first
        let id = try database.createDaemonCampaign(
            name: spec.name, spec: spec.source, protocolSource: spec.definition.source, objective: primary?.output,
            direction: primary.map { $0.maximize ? "maximize" : "minimize" }, seed: spec.seed, owner: owner,
            needsApproval: needsApproval, budget: budget)
        try await launch(id, spec: spec, advisor: advisor, rules: rules, owner: owner, needsApproval: needsApproval,
                         history: [], retries: [])
        return id
    }

    /// Goes on with a stopped campaign: its finished runs are told to a fresh advisor, the
    /// experiments cut short are run again first.
    public func resume(_ id: Int64, by who: String) async throws {
        if let driver = drivers[id], await driver.state == .running {
            throw LabError(.conflict, "campaign \(id) is running already")
        }
        guard let stored = try database.daemonCampaign(id) else { throw LabError(.notFound, "there is no campaign \(id)") }
        let spec = try CampaignSpec.parse(stored.specText, path: stored.specPath, lab: lab, protocolText: stored.protocolText)
        // A run of it still going has no result yet, and is not cut short either: wait for it.
        if let busy = try database.queueEntries(states: [.running], campaign: id).first {
            throw LabError(.conflict, "campaign \(id)'s run \(busy.id) is still running; resume the campaign once it has ended")
        }
        let (history, retries) = try CampaignSession.history(of: id, in: database, for: spec)
        try database.setCampaignState(id, "running", note: "resumed by \(who)")
        let (advisor, rules, _) = try CampaignSession.plan(spec, budget: stored.budget)
        try await launch(id, spec: spec, advisor: advisor, rules: rules, owner: stored.owner ?? who, needsApproval: stored.needsApproval,
                         history: history, retries: retries)
    }

    public func stop(_ id: Int64, by who: String) async throws {
        guard let driver = drivers[id], await driver.state == .running else { throw LabError(.conflict, "campaign \(id) is not running") }
        await driver.stop(by: who)
        try database.setCampaignState(id, "stopped", note: "stopped by \(who)")
    }

    /// Where a campaign stands: its state, and what its runs gave so far.
    public struct Status: Sendable {
        public var id: Int64
        public var name: String
        public var state: String
        public var note: String?
        public var objective: String?
        public var experiments: [ExperimentReport]
        public var best: Double?
        public var waiting: [Int64]
        let definition: ProtocolDefinition

        /// An experiment's values as the protocol's (the advisor's numbers are coordinates).
        public func values(_ coordinates: [String: Double]) -> [String: ExprValue] {
            coordinates.reduce(into: [:]) { values, entry in
                if let spec = definition.parameter(named: entry.key) { values[entry.key] = spec.value(coordinate: entry.value) }
            }
        }
    }

    public func status(_ id: Int64) async throws -> Status? {
        guard let stored = try database.daemonCampaign(id) else { return nil }
        let spec = try CampaignSpec.parse(stored.specText, path: stored.specPath, lab: lab, protocolText: stored.protocolText)
        let (_, rules, _) = try CampaignSession.plan(spec, budget: stored.budget)
        if let driver = drivers[id] {
            return Status(id: id, name: stored.name, state: stored.state ?? "stopped", note: stored.note,
                          objective: rules.objectives.first?.output, experiments: await driver.reports, best: await driver.best,
                          waiting: await driver.waiting, definition: spec.definition)
        }
        // Not running in this process: what its stored runs gave.
        var progress = CampaignProgress(rules: rules)
        for run in try CampaignSession.history(of: id, in: database, for: spec).finished { _ = progress.record(run, outcome: rules.outcome(of: run)) }
        return Status(id: id, name: stored.name, state: stored.state ?? "finished", note: stored.note,
                      objective: rules.objectives.first?.output, experiments: progress.reports, best: progress.best, waiting: [],
                      definition: spec.definition)
    }

    public func list() throws -> [DaemonCampaign] { try database.daemonCampaigns() }

    /// Stops every campaign's proposals (the daemon is shutting down): nothing new is queued.
    func shutDown() async {
        for (id, driver) in drivers where await driver.state == .running {
            await driver.stop(by: "the daemon shutting down")
            try? database.setCampaignState(id, "stopped", note: "the daemon stopped; resume it to go on")
        }
    }

    private func launch(_ id: Int64, spec: CampaignSpec, advisor: any Advisor, rules: CampaignRules, owner: String,
                        needsApproval: Bool, history: [FinishedRun], retries: [Suggestion]) async throws {
        let settings = CampaignDriver.Settings(
            campaignID: id, definition: spec.definition, rules: rules, owner: owner, project: nil,
            needsApproval: needsApproval, capacity: max(1, min(Self.batchSize(of: spec) ?? .max, capacity(for: spec.definition))))
        let database = self.database
        let driver = try await CampaignDriver(settings: settings, advisor: advisor, scheduler: scheduler, logger: logger,
                                              history: history, retries: retries,
                                              onEnd: { state, why in try? database.setCampaignState(id, state.rawValue, note: why) })
        drivers[id] = driver
        await driver.start()
    }

    /// The batch size the campaign file sets, if it sets one: without, as many as the lab can run.
    static func batchSize(of spec: CampaignSpec) -> Int? {
        if case .optimize(let optimization) = spec.plan { return optimization.batchSize }
        return nil
    }

    /// How many runs of a protocol the lab can run at once: the policy's answer on an idle lab.
    func capacity(for definition: ProtocolDefinition) -> Int {
        let needs = Dictionary(uniqueKeysWithValues: definition.instruments.map { ($0.role, $0.driver) })
        let pool = lab.instruments.mapValues(\.driver.name)
        let copies = (0..<Int64(pool.count)).map { SchedulePolicy.Candidate(id: $0, needs: needs) }
        return SchedulePolicy.starts(copies, free: pool, stations: lab.stations).count
    }
}
