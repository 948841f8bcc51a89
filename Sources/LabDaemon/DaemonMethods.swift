import Foundation
import LabAPI
import LabCore
import LabEngine
import LabScheduler
public import LabServer
import LabSpec
import LabStorage

/// The daemon's method table: the queue and campaign methods over its scheduler and campaigns,
/// beside the run methods and `server.info` (docs/api.md). Each method only translates between the
/// wire and the scheduler; validation, ordering and persistence live below it.
extension Daemon {
    public var methods: [RPCMethod] {
        let methods = queueMethods + runControlMethods + alertMethods + campaignMethods + RPCDispatcher.runMethods(database)
        return methods + [RPCDispatcher.infoMethod(version: Self.softwareVersion, names: methods.map(\.name))]
    }

    private var queueMethods: [RPCMethod] {
        [
            .method("queue.add", mutates: true) { (p: QueueItemParams, caller) in
                let entry = try await self.submit([p], caller: caller)[0]
                return await self.wire(entry)
            },
            .method("queue.add_many", mutates: true) { (p: QueueAddManyParams, caller) in
                let entries = try await self.submit(p.items, caller: caller, protocolFile: p.protocolFile)
                let windows = await self.scheduler.forecast()
                return entries.map { self.wire($0, windows[$0.id]) }
            },
            .method("queue.list") { (p: QueueListParams, _) in
                var listed = try await self.scheduler.startOrder()
                if p.all == true {
                    let open = Set(listed.map(\.entry.id))
                    listed += try self.database.queueEntries().filter { !open.contains($0.id) }.map { ($0, nil) }
                }
                if let campaign = p.campaign { listed = listed.filter { $0.entry.submission.campaignID == campaign } }
                return listed.map { self.wire($0.entry, $0.window) }
            },
            .method("queue.get") { (p: RunRef, _) in
                guard let entry = try await self.scheduler.entry(p.run) else { throw RPCError.notFound("there is no run \(p.run)") }
                return await self.wire(entry)
            },
            .method("queue.move", mutates: true) { (p: QueueMoveParams, _) in
                await self.wire(try await self.request { try await self.scheduler.move(p.run, priority: p.priority, before: p.before) })
            },
            action("queue.hold", .hold), action("queue.release", .release), action("queue.cancel", .cancel),
            action("queue.approve", .approve), action("queue.reject", .reject),
        ]
    }

    private func action(_ name: String, _ action: Scheduler.Action) -> RPCMethod {
        .method(name, mutates: true) { (p: RunRef, caller) in
            await self.wire(try await self.request { try await self.scheduler.apply(action, to: p.run, by: caller.user) })
        }
    }

    /// `runs.pause`, `runs.resume`, `runs.abort`, `runs.halt`: a person's requests to a running or paused run.
    private var runControlMethods: [RPCMethod] {
        func control<P: RPCParams>(_ name: String, run: @escaping @Sendable (P) -> Int64,
                                   _ event: @escaping @Sendable (P, String) -> RunLifecycle.Event) -> RPCMethod {
            .method(name, mutates: true) { (p: P, caller) in
                let request = event(p, "\(caller.user) (\(name))")
                // A run paused because its data could not be stored goes on only if writing may start again.
                if case .resume = request { self.database.retryWrites() }
                let (state, why) = try await self.request { try await self.scheduler.control(run(p), request) }
                return WireRunControl(run: run(p), state: state.name, note: why ?? state.note)
            }
        }
        return [
            control("runs.pause", run: { (p: PauseParams) in p.run }) { p, who in .pause(now: p.now ?? false, .requested(by: who)) },
            control("runs.resume", run: { (p: ResumeParams) in p.run }) { p, who in .resume(by: who, repeatingUnrepeatable: p.repeatStep ?? false) },
            control("runs.abort", run: { (p: RunRef) in p.run }) { _, who in .stop(.abort, by: who) },
            control("runs.halt", run: { (p: RunRef) in p.run }) { _, who in .stop(.halt, by: who) },
        ]
    }

    /// `alerts.list`, `alerts.ack`.
    private var alertMethods: [RPCMethod] {
        [
            .method("alerts.list") { (p: AlertListParams, _) in
                var alerts: [WireAlert] = []
                for alert in try await self.database.alerts(latchedOnly: !(p.all ?? false)) { alerts.append(await self.wire(alert)) }
                return alerts
            },
            .method("alerts.ack", mutates: true) { (p: AlertRef, caller) in
                await self.wire(try await self.request { try await self.acknowledgeAlert(p.alert, by: caller.user) })
            },
        ]
    }

    private func wire(_ alert: Alert) async -> WireAlert {
        var paused: [Int64] = []
        for run in alert.runIDs {
            if case .paused? = await scheduler.runControl(run)?.lifecycle.state { paused.append(run) }
        }
        return WireAlert(alert: alert.id, kind: alert.kind.rawValue, subject: alert.subject, message: alert.message,
                         state: !alert.isLatched ? "acknowledged" : alert.isCleared ? "cleared" : "active",
                         raisedAt: Self.time(alert.raisedAt), runs: alert.runIDs, pausedRuns: paused, instrument: alert.instrument,
                         clearedAt: alert.clearedAt.map(Self.time), acknowledgedAt: alert.acknowledgedAt.map(Self.time),
                         acknowledgedBy: alert.acknowledgedBy)
    }

    private var campaignMethods: [RPCMethod] {
        [
            .method("campaign.start", mutates: true) { (p: CampaignStartParams, caller) in
                let id = try await self.request {
                    guard (p.budget ?? 1) >= 1 else { throw RPCError.invalidParams("budget must be at least 1") }
                    return try await self.campaigns.start(text: p.campaign.text, path: p.campaign.path, protocolText: p.protocolFile?.text,
                                                          owner: caller.user, needsApproval: p.approval ?? false, budget: p.budget)
                }
                return try await self.campaignStatus(id)
            },
            .method("campaign.stop", mutates: true) { (p: CampaignRef, caller) in
                try await self.request { try await self.campaigns.stop(p.campaign, by: caller.user) }
                return try await self.campaignStatus(p.campaign)
            },
            .method("campaign.resume", mutates: true) { (p: CampaignRef, caller) in
                try await self.request { try await self.campaigns.resume(p.campaign, by: caller.user) }
                return try await self.campaignStatus(p.campaign)
            },
            .method("campaign.get") { (p: CampaignRef, _) in try await self.campaignStatus(p.campaign) },
            .method("campaign.list") { (_: NoParams, _) in
                var list: [WireCampaign] = []
                for stored in try await self.campaigns.list() {
                    var status = try await self.campaignStatus(stored.id)
                    status.experiments = []   // the list is a summary; campaign.get has them
                    list.append(status)
                }
                return list
            },
        ]
    }

    // MARK: Translating

    /// Queues submissions from the wire: each protocol compiled against the lab, all or none.
    private func submit(_ items: [QueueItemParams], caller: RPCCaller, protocolFile shared: WireFile? = nil) async throws -> [QueueEntry] {
        var submissions: [Submission] = []
        // A thousand runs of one protocol are one text: it is compiled once, and shared.
        var compiled: [WireFile: ProtocolDefinition] = [:]
        for (index, item) in items.enumerated() {
            let which = items.count > 1 ? "item \(index): " : ""
            guard let file = item.protocolFile ?? shared else { throw RPCError.invalidParams("\(which)no protocol: give the item's `protocol`, or the call's") }
            let definition = try compiled[file] ?? request {
                try ProtocolParser.parse(file.text, path: file.path, drivers: lab.drivers)
            }
            compiled[file] = definition
            var notBefore: Date?
            if let text = item.notBefore {
                guard let date = try? Date(text, strategy: .iso8601) else {
                    throw RPCError.invalidParams("\(which)not_before must be an ISO 8601 time such as 2026-11-30T14:00:00Z, not '\(text)'")
                }
                notBefore = date
            }
            submissions.append(Submission(
                protocolSource: definition.source, protocolName: definition.name, parameters: item.parameters ?? [:],
                priority: item.priority ?? 0, notBefore: notBefore, owner: caller.user, project: item.project,
                requestID: item.requestID, autostart: item.autostart ?? false))
        }
        return try await request { try await scheduler.submit(submissions) }
    }

    /// Runs a request, turning what the layers below throw into the API's errors.
    private func request<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ValidationError {
            throw RPCError.invalidFile(error.description, error.diagnostics.map {
                WireDiagnostic(file: $0.location.file, line: $0.location.line, column: $0.location.column, message: $0.message, hint: $0.hint)
            })
        } catch let error as LabError {
            switch error.code {
            case .notFound: throw RPCError.notFound(error.message)
            case .conflict: throw RPCError.conflict(error.message)
            case .aborted: throw RPCError.shuttingDown(error.message)
            default: throw RPCError.invalidParams(error.description)
            }
        }
    }

    private func request<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ValidationError {
            throw RPCError.invalidFile(error.description, error.diagnostics.map {
                WireDiagnostic(file: $0.location.file, line: $0.location.line, column: $0.location.column, message: $0.message, hint: $0.hint)
            })
        }
    }

    private func wire(_ entry: QueueEntry) async -> WireEntry {
        wire(entry, await scheduler.forecast()[entry.id])
    }

    private func wire(_ entry: QueueEntry, _ window: Forecast.Window?) -> WireEntry {
        let s = entry.submission
        return WireEntry(run: entry.id, state: entry.state.rawValue, protocolName: s.protocolName, parameters: s.parameters,
                         priority: s.priority, owner: s.owner, project: s.project, campaign: s.campaignID, proposal: s.proposalID,
                         chosenBy: s.chosenBy, note: entry.note, submittedAt: Self.time(entry.submittedAt),
                         notBefore: s.notBefore.map(Self.time), estimatedSeconds: entry.estimatedSeconds,
                         expectedStart: window.map { Self.time($0.start) }, expectedEnd: window?.end.map(Self.time))
    }

    private func campaignStatus(_ id: Int64) async throws -> WireCampaign {
        guard let status = try await campaigns.status(id) else { throw RPCError.notFound("there is no campaign \(id)") }
        return WireCampaign(campaign: id, name: status.name, state: status.state, note: status.note, objective: status.objective,
                            experiments: status.experiments.map { report in
            WireExperiment(index: report.index, run: report.runID, parameters: status.values(report.parameters),
                           chosenBy: report.chosenBy, objective: report.objective, best: report.bestSoFar,
                           outcome: report.outcome.rawValue, error: report.error)
        }, best: status.best, waiting: status.waiting)
    }

    static func time(_ date: Date) -> String { date.formatted(.iso8601) }
}
