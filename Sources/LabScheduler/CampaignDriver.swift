import Foundation
public import LabCore
public import LabEngine
public import Logging

/// A campaign run by the daemon: it asks its advisor (the planner, on the planner's own actor, or a
/// sweep) for as many experiments as the lab can run at once, queues them, and tells the advisor
/// each result as its run ends, until the budget is spent or a stop rule holds. With approval, its
/// proposals wait in the queue until a person approves or rejects them.
public actor CampaignDriver {
    public struct Settings: Sendable {
        public var campaignID: Int64
        public var definition: ProtocolDefinition
        public var rules: CampaignRules
        /// Parameter values the advisor searches, as the protocol's values (coordinates → values).
        public var owner: String
        public var project: String?
        public var needsApproval: Bool
        /// How many of its runs the lab can run at the same time.
        public var capacity: Int

        public init(campaignID: Int64, definition: ProtocolDefinition, rules: CampaignRules, owner: String,
                    project: String?, needsApproval: Bool, capacity: Int) {
            self.campaignID = campaignID; self.definition = definition; self.rules = rules; self.owner = owner
            self.project = project; self.needsApproval = needsApproval; self.capacity = capacity
        }
    }

    public enum State: String, Sendable { case running, stopped, finished, failed }

    public let settings: Settings
    private let advisor: any Advisor
    private let scheduler: Scheduler
    private let logger: Logger
    private var progress: CampaignProgress
    private var retries: [Suggestion]
    /// Queue entry → the suggestion it runs.
    private var pending: [Int64: Suggestion] = [:]
    private var asking = false
    public private(set) var state = State.running
    public private(set) var reason: String?
    private var observer: UUID?
    private let onReport: @Sendable (ExperimentReport) -> Void
    private let onEnd: @Sendable (State, String?) -> Void

    /// `onReport` hears each finished experiment; `onEnd` hears once that the campaign finished or
    /// failed by itself (not when it is stopped).
    public init(settings: Settings, advisor: any Advisor, scheduler: Scheduler, logger: Logger,
                history: [FinishedRun] = [], retries: [Suggestion] = [],
                onReport: @escaping @Sendable (ExperimentReport) -> Void = { _ in },
                onEnd: @escaping @Sendable (State, String?) -> Void = { _, _ in }) async throws {
        self.settings = settings; self.advisor = advisor; self.scheduler = scheduler; self.logger = logger
        self.retries = retries; self.onReport = onReport; self.onEnd = onEnd
        progress = CampaignProgress(rules: settings.rules)
        for past in history where progress.reports.count < settings.rules.budget {
            let outcome = settings.rules.outcome(of: past)
            try await advisor.replay(past.values, outcome: outcome)
            if progress.record(past, outcome: outcome) { state = .finished; reason = "a stop rule held before the restart" }
        }
    }

    public var reports: [ExperimentReport] { progress.reports }
    public var best: Double? { progress.best }
    public var waiting: [Int64] { pending.keys.sorted() }

    /// Starts observing the queue and fills it.
    public func start() async {
        observer = await scheduler.observe { [weak self] finished in
            guard let self, finished.entry.submission.campaignID == self.settings.campaignID else { return }
            Task { await self.ended(finished) }
        }
        await fill()
    }

    /// Stops proposing; what is queued for it and not yet started is cancelled, a running run goes on.
    public func stop(by who: String) async {
        guard state == .running else { return }
        state = .stopped
        reason = "stopped by \(who)"
        for id in pending.keys.sorted() { await scheduler.cancelIfWaiting(id, by: "\(who) (campaign stopped)") }
        await finish()
    }

    private func finish() async {
        if let observer, pending.isEmpty {
            await scheduler.stopObserving(observer)
            self.observer = nil
            if state == .finished || state == .failed { onEnd(state, reason) }
        }
    }

    /// Keeps as many experiments queued as the lab can run at once, within the budget.
    private func fill() async {
        guard state == .running, !asking else { return }
        asking = true
        defer { asking = false }
        while state == .running, pending.count < settings.capacity,
              progress.reports.count + pending.count < settings.rules.budget {
            let suggestion: Suggestion
            do {
                if !retries.isEmpty { suggestion = retries.removeFirst() } else { suggestion = try await advisor.suggest() }
            } catch {
                // A sweep that has run out of points, or a planner that cannot propose: the campaign ends.
                state = pending.isEmpty ? .finished : state
                reason = "\(error)"
                logger.info("campaign has no more proposals", metadata: ["campaign": "\(settings.campaignID)", "why": "\(error)"])
                break
            }
            do {
                let entry = try await scheduler.submit([submission(for: suggestion)])[0]
                pending[entry.id] = suggestion
            } catch {
                state = .failed
                reason = "cannot queue a proposal: \(error)"
                logger.error("campaign cannot queue", metadata: ["campaign": "\(settings.campaignID)", "error": "\(error)"])
            }
        }
        if state == .running, pending.isEmpty, progress.reports.count + pending.count >= settings.rules.budget {
            state = .finished
            reason = "budget spent"
        }
        await finish()
    }

    private func submission(for suggestion: Suggestion) -> Submission {
        var values = settings.rules.fixed
        for spec in settings.definition.parameters {
            if let x = suggestion.values[spec.name] { values[spec.name] = spec.value(coordinate: x) }
        }
        return Submission(protocolSource: settings.definition.source, protocolName: settings.definition.name,
                          parameters: values, owner: settings.owner, project: settings.project,
                          campaignID: settings.campaignID, proposalID: suggestion.proposalID, chosenBy: suggestion.chosenBy,
                          needsApproval: settings.needsApproval)
    }

    private func ended(_ finished: Scheduler.Finished) async {
        guard let suggestion = pending.removeValue(forKey: finished.entry.id) else { return }
        switch finished.entry.state {
        case .rejected, .cancelled, .aborted, .interrupted:
            // Not run, or stopped by a person or a shutdown: no result, and it does not count against
            // the budget; the planner forgets it. (After a crash, resuming runs it again: see Campaigns.)
            await advisor.withdraw(suggestion.values)
        default:
            let run = FinishedRun(runID: finished.result?.runID ?? 0, values: suggestion.values, chosenBy: suggestion.chosenBy,
                                  outcome: finished.result?.outcome ?? .failed, outputs: finished.result?.outputs ?? [:],
                                  error: finished.result?.error ?? finished.entry.note)
            let outcome = settings.rules.outcome(of: run)
            do { try await advisor.observe(suggestion.values, outcome: outcome) } catch {
                logger.error("advisor refused a result", metadata: ["campaign": "\(settings.campaignID)", "error": "\(error)"])
            }
            if progress.record(run, outcome: outcome), state == .running {
                state = .finished
                reason = "a stop rule held"
                for id in pending.keys.sorted() { await scheduler.cancelIfWaiting(id, by: "campaign \(settings.campaignID) (stop rule)") }
            }
            onReport(progress.reports.last!)
        }
        await fill()
    }
}
