import Foundation
public import LabCore
import LabDrivers
import LabEngine
import LabScheduler
import LabSpec
import LabStorage
import Logging

/// What the daemon does about faults in the lab, in one place: a lost instrument, an interlock that
/// fires, a read-back that disagrees. Each pauses the runs it concerns (their other instruments sent
/// to their safe state), raises a latched alert, and blocks its instruments — nothing starts on them
/// and no paused run resumes with them — until the alert is acknowledged after its condition cleared.
/// Events are handled one at a time, in the order they happened.
actor SafetyWatch {
    enum Event: Sendable {
        case health(String, InstrumentHub.Health)
        case interlock(InterlockSpec, asserted: Bool, detail: String)
        case transition(entry: Int64, RunLifecycle.Transition)
    }

    private let database: LabDatabase
    private let scheduler: Scheduler
    private let lab: LabConfig
    private let instruments: [String: any Instrument]
    private let hub: InstrumentHub
    private let interlocks: InterlockMonitor
    private let logger: Logger
    private let events: AsyncStream<Event>
    private let input: AsyncStream<Event>.Continuation
    private var handling: Task<Void, Never>?
    /// Conditions that hold now, known before their alerts are stored: instruments lost (→ why),
    /// interlocks asserted (→ what was read).
    private var lost: [String: String] = [:]
    private var asserted: [String: (spec: InterlockSpec, detail: String)] = [:]

    init(database: LabDatabase, scheduler: Scheduler, lab: LabConfig, instruments: [String: any Instrument], logger: Logger,
         hub: InstrumentHub) {
        self.database = database; self.scheduler = scheduler; self.lab = lab; self.instruments = instruments
        self.logger = logger
        self.hub = hub
        interlocks = InterlockMonitor(interlocks: lab.interlocks, instruments: instruments, logger: logger)
        (events, input) = AsyncStream.makeStream()
    }

    /// Reads every interlock once (so that a start is refused at once if one is asserted), then
    /// starts watching: the hub's probes and watchdog feeds, the interlocks' polls.
    func start() async {
        let input = self.input
        handling = Task { [events] in for await event in events { await self.handle(event) } }
        await hub.onChange { input.yield(.health($0, $1)) }
        await interlocks.onChange { input.yield(.interlock($0, asserted: $1, detail: $2)) }
        await interlocks.check()
        await hub.start()
        // An instrument an earlier daemon lost is watched until it answers, so its alert can clear.
        for alert in (try? await database.alerts()) ?? [] where alert.kind == .instrumentLost && !alert.isCleared {
            await hub.reportLost(alert.subject, error: "not seen since the daemon started")
        }
        await interlocks.start()
        await updateBlocked()
    }

    func stop() async {
        await hub.stop()
        await interlocks.stop()
    }

    /// The scheduler's report of a run's transition.
    nonisolated func transitioned(entry: Int64, _ transition: RunLifecycle.Transition) {
        input.yield(.transition(entry: entry, transition))
    }

    /// A person's acknowledgement; once none of a run's alerts is latched, it may be resumed.
    func acknowledge(_ id: Int64, by person: String) async throws -> Alert {
        let alert = try await database.acknowledgeAlert(id, by: person)
        await updateBlocked()
        return alert
    }

    private func handle(_ event: Event) async {
        // Block first: no run may start on the instruments between the fault and its alert.
        switch event {
        case .health(let name, .lost(let error)): lost[name] = error
        case .health(let name, .connected): lost[name] = nil
        case .interlock(let spec, true, let detail): asserted[spec.name] = (spec, detail)
        case .interlock(let spec, false, _): asserted[spec.name] = nil
        case .transition: break
        }
        scheduler.holds.set(asserted.values.reduce(into: [:]) { held, state in
            for name in state.spec.stops { held[name] = "interlock \(state.spec.name): \(state.detail)" }
        })
        await updateBlocked()
        do {
            switch event {
            case .health(let name, .lost(let error)):
                let runs = await scheduler.runs(holding: name)
                try await raise(.instrumentLost, subject: name, message: "lost: \(error)", runs: runs, instrument: name)
                await scheduler.fault(.instrumentLost(instrument: name, detail: error), instruments: [name])
            case .health(let name, .connected):
                // Back: whatever it was left doing while it could not be reached (a run aborted during
                // the outage, a setpoint from before), it goes to its safe state. A run that held it is paused.
                try? await instruments[name]?.goToSafeState()
                try await database.markAlertCleared(.instrumentLost, subject: name)
            case .interlock(let spec, true, let detail):
                var runs: [Int64] = []
                for name in spec.stops { runs += await scheduler.runs(holding: name) }
                try await raise(.interlock, subject: spec.name, message: detail, runs: runs,
                                instrument: spec.instrument)
                await scheduler.fault(.interlock(name: spec.name, detail: detail), instruments: Set(spec.stops))
                // Every instrument it stops goes to its safe state now, whoever holds it: a run that is
                // aborting does not pause, and its `finally` may not write to them while the interlock holds.
                await withTaskGroup(of: Void.self) { group in
                    for name in spec.stops { if let instrument = instruments[name] { group.addTask { try? await instrument.goToSafeState() } } }
                }
            case .interlock(let spec, false, _):
                try await database.markAlertCleared(.interlock, subject: spec.name)
            case .transition(let entry, let transition):
                guard case .paused(let reason) = transition.to else { break }
                switch reason {
                case .instrumentLost(let name, let detail):
                    // The run found it first: blocked now, before its alert (the hub's own report of
                    // the loss comes later, and a resume in between was let through); the hub watches
                    // it from now on until it is back.
                    lost[name] = detail
                    await updateBlocked()
                    try await raise(.instrumentLost, subject: name, message: "lost: \(detail)", runs: [entry], instrument: name)
                    await hub.reportLost(name, error: detail)
                case .readBack(let name, let detail):
                    try await raise(.readBack, subject: name, message: detail, runs: [entry], instrument: name)
                    // Nothing to wait for: a person looks at the device, then acknowledges.
                    try await database.markAlertCleared(.readBack, subject: name)
                case .interlock(let name, _):
                    if let alert = try await database.alerts().first(where: { $0.kind == .interlock && $0.subject == name }) {
                        try await raise(.interlock, subject: name, message: alert.message, runs: [entry], instrument: alert.instrument)
                    }
                case .storage(let detail):
                    // Not an alert: alerts are stored in the database that cannot be written.
                    logger.error("a run is paused: its data cannot be stored", metadata: ["run": "\(entry)", "error": "\(detail)"])
                case .requested, .shutdown:
                    break
                }
            }
        } catch {
            logger.error("could not record an alert", metadata: ["error": "\(error)"])
        }
        await updateBlocked()
    }

    private func raise(_ kind: Alert.Kind, subject: String, message: String, runs: [Int64], instrument: String?) async throws {
        // The run and the hub often report one loss each: the log says it once.
        let known = try await database.alerts().contains { $0.kind == kind && $0.subject == subject && !$0.isCleared }
        var alert = try await database.raiseAlert(kind, subject: subject, message: message, instrument: instrument)
        for run in runs { alert = try await database.raiseAlert(kind, subject: subject, message: message, run: run) }
        if known { return }
        logger.warning("alert raised", metadata: ["alert": "\(alert.id)", "kind": "\(kind.rawValue)", "subject": "\(subject)",
                                                  "message": "\(message)"])
    }

    /// A lost instrument, an asserted interlock's instruments, and those of every latched alert (an
    /// interlock's: those it stops; the others': their instrument) are blocked.
    private func updateBlocked() async {
        var blocked: [String: String] = [:]
        for (name, error) in lost { blocked[name] = "lost (\(error))" }
        for (name, state) in asserted.sorted(by: { $0.key < $1.key }) {
            for instrument in state.spec.stops where blocked[instrument] == nil {
                blocked[instrument] = "interlock \(name) holds (\(state.detail))"
            }
        }
        let latched = (try? await database.alerts()) ?? []
        for alert in latched.reversed() {
            let names = alert.kind == .interlock
                ? lab.interlocks.first { $0.name == alert.subject }?.stops ?? []
                : alert.instrument.map { [$0] } ?? []
            let why = "alert \(alert.id) (\(alert.message)) is "
                + (alert.isCleared ? "not acknowledged: `serendip ack \(alert.id)`" : "still active; acknowledge it once it has cleared")
            for name in names where blocked[name] == nil { blocked[name] = why }
        }
        await scheduler.setBlocked(blocked)
    }
}
