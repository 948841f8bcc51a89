public import Foundation
public import LabCore
public import LabEngine
public import Logging

/// The daemon's queue and instrument locks. Submissions are validated, committed and then
/// scheduled; each started entry runs under its own `RunControl` in a task of its own, with the
/// instruments the policy gave it, and releases them when its run has ended (after `finally` and
/// the safe states). Nothing here waits on a client or on the planner.
public actor Scheduler {
    /// What the scheduler needs from the world, injected so that tests and benchmarks can build it alone.
    public struct Environment: Sendable {
        public var store: any QueueStore
        public var recorder: any RunRecorder
        /// The lab's connected instruments, by instance name.
        public var instruments: [String: any Instrument]
        /// The lab's instruments by instance name → driver type.
        public var pool: [String: String]
        /// Instrument → station, for those that belong to one (used only together).
        public var stations: [String: String]
        /// Compiles a stored protocol text against the lab (cached by the caller if it likes).
        public var compile: @Sendable (SourceText) throws -> ProtocolDefinition
        public var clock: any LabClock
        public var logger: Logger
        public var softwareVersion: String
        /// Estimates a run's duration in seconds (a simulation); nil when it cannot.
        public var estimate: (@Sendable (ProtocolDefinition, [String: ExprValue]) async -> Double?)?

        public init(store: any QueueStore, recorder: any RunRecorder, instruments: [String: any Instrument],
                    pool: [String: String], stations: [String: String] = [:], compile: @escaping @Sendable (SourceText) throws -> ProtocolDefinition,
                    clock: any LabClock, logger: Logger, softwareVersion: String,
                    estimate: (@Sendable (ProtocolDefinition, [String: ExprValue]) async -> Double?)? = nil) {
            self.store = store; self.recorder = recorder; self.instruments = instruments; self.pool = pool
            self.stations = stations
            self.compile = compile; self.clock = clock; self.logger = logger; self.softwareVersion = softwareVersion
            self.estimate = estimate
        }
    }

    /// A run that ended, as campaigns and subscribers learn of it.
    public struct Finished: Sendable {
        public var entry: QueueEntry
        public var result: RunResult?
    }

    /// What the scheduler keeps of an open entry: enough to order, schedule and forecast it. The
    /// rest of a waiting entry (its parameter values, owner, notes) stays in the database until it
    /// starts, so the daemon's memory does not grow with the length of the queue.
    struct Slot: Sendable {
        var id: Int64
        var state: QueueState
        var priority: Int
        var position: Double
        var notBefore: Date?
        var protocolSHA256: String
        var estimatedSeconds: Double?

        init(_ entry: QueueEntry) {
            id = entry.id; state = entry.state; priority = entry.submission.priority; position = entry.position
            notBefore = entry.submission.notBefore; protocolSHA256 = entry.submission.protocolSource.sha256
            estimatedSeconds = entry.estimatedSeconds
        }
    }

    private struct Running {
        var control: RunControl
        var task: Task<Void, Never>
        var started: Double
        var instruments: [String]
    }

    private let environment: Environment
    private var slots: [Int64: Slot] = [:]
    /// Role → driver type, by protocol SHA-256: every entry of one protocol shares it.
    private var needs: [String: [String: String]] = [:]
    /// Instruments held by running entries: instance → entry.
    private var busy: [String: Int64] = [:]
    private var running: [Int64: Running] = [:]
    private var accepting = true
    private var wakeUp: Task<Void, Never>?
    private var observers: [UUID: @Sendable (Finished) -> Void] = [:]
    private var toEstimate: [Int64] = []
    private var estimateCursor = 0
    private var estimating = false
    private var knownEstimates: [EstimateKey: Double] = [:]
    /// Instruments nothing may start on, and no paused run resume with: instance → why.
    private var blocked: [String: String] = [:]
    private var transitionObservers: [@Sendable (_ entry: Int64, RunLifecycle.Transition) -> Void] = []
    private let transitions: AsyncStream<(Int64, RunLifecycle.Transition)>
    private let transitionInput: AsyncStream<(Int64, RunLifecycle.Transition)>.Continuation

    public init(_ environment: Environment) {
        self.environment = environment
        (transitions, transitionInput) = AsyncStream.makeStream()
    }

    /// Loads the queue left by an earlier process. Nothing it held starts by itself unless its owner
    /// asked for `autostart` (the store holds the others), and a run that was running is interrupted.
    public func start() async throws {
        try await environment.store.recoverAfterRestart()
        for entry in try await environment.store.openEntries() {
            remember(entry)
        }
        // One consumer, so that a run's transitions are stored in the order they happened.
        let transitions = self.transitions
        Task { [weak self] in
            for await (id, transition) in transitions { await self?.store(transition, of: id) }
        }
        schedule()
    }

    // MARK: Submitting

    /// Validates every submission against the lab, then commits them all in one transaction (or
    /// none): what is returned is acknowledged. A request id already stored returns the stored entry.
    public func submit(_ submissions: [Submission]) async throws -> [QueueEntry] {
        guard accepting else { throw LabError(.aborted, "the daemon is shutting down and accepts no new work") }
        for (index, submission) in submissions.enumerated() {
            try check(submission, item: submissions.count > 1 ? index : nil)
        }
        let stored = try await environment.store.enqueue(submissions)
        for entry in stored where slots[entry.id] == nil && !entry.state.isFinal {
            remember(entry)
        }
        schedule()
        return stored
    }

    /// Checks that a submission compiles, that its parameter values are valid, and that the lab
    /// has enough instruments of each type it needs.
    private func check(_ submission: Submission, item: Int?) throws {
        let prefix = item.map { "item \($0): " } ?? ""
        do {
            let definition = try environment.compile(submission.protocolSource)
            _ = try definition.resolveParameters(submission.parameters)
            var counts: [String: Int] = [:]
            for role in definition.instruments { counts[role.driver, default: 0] += 1 }
            for (type, n) in counts.sorted(by: { $0.key < $1.key }) {
                let have = environment.pool.values.filter { $0 == type }.count
                guard have >= n else {
                    throw LabError(.unknownReference, "\(definition.name) needs \(n) \(type) instrument(s); the lab has \(have)")
                }
            }
        } catch var error as LabError where !prefix.isEmpty {
            error.message = prefix + error.message
            throw error
        }
    }

    // MARK: A person's requests

    public enum Action: String, Sendable {
        case hold, release, cancel, approve, reject
    }

    /// Applies a person's request to an entry; returns the entry after. A cancel of a running or paused entry
    /// aborts its run (`finally`, then the safe states) and returns once it is asked to.
    public func apply(_ action: Action, to id: Int64, by who: String) async throws -> QueueEntry {
        guard let entry = try await current(id) else { throw LabError(.notFound, "there is no run \(id) in the queue") }
        let (from, to): (Set<QueueState>, QueueState) = switch action {
        case .hold: ([.queued], .held)
        case .release: ([.held], .queued)
        case .cancel: ([.queued, .held, .awaitingApproval], .cancelled)
        case .approve: ([.awaitingApproval], .queued)
        case .reject: ([.awaitingApproval], .rejected)
        }
        if action == .cancel, let run = running[id] {
            run.control.stop(.abort, by: "a cancel from \(who)")
            var aborting = entry
            aborting.note = "being aborted: cancel by \(who) ('finally', then the safe states)"
            return aborting
        }
        guard from.contains(entry.state) else {
            throw LabError(.conflict, "run \(id) is \(entry.state.rawValue); \(action.rawValue) applies to an entry that is \(from.map(\.rawValue).sorted().joined(separator: " or "))")
        }
        guard let changed = try await environment.store.transition(id, from: from, to: to, note: "\(action.rawValue) by \(who)") else {
            throw LabError(.conflict, "run \(id) changed meanwhile; look again")
        }
        if changed.state.isFinal {
            slots[id] = nil
            notify(Finished(entry: changed, result: nil))
        } else {
            slots[id]?.state = changed.state
        }
        schedule()
        return changed
    }

    /// Cancels an entry that has not started; one that is running goes on.
    public func cancelIfWaiting(_ id: Int64, by who: String) async {
        guard slots[id] != nil, running[id] == nil else { return }
        _ = try? await apply(.cancel, to: id, by: who)
    }

    /// Moves an entry: a new priority, and before another entry of the queue (or to the end).
    public func move(_ id: Int64, priority: Int?, before other: Int64?) async throws -> QueueEntry {
        guard var slot = slots[id], running[id] == nil else {
            throw LabError(.conflict, "run \(id) is not waiting in the queue")
        }
        if let priority { slot.priority = priority }
        if let other {
            guard let target = slots[other], running[other] == nil else {
                throw LabError(.conflict, "run \(other) is not waiting in the queue")
            }
            let earlier = slots.values.filter { $0.position < target.position }.map(\.position).max() ?? target.position - 1
            slot.position = (earlier + target.position) / 2
            slot.priority = priority ?? target.priority
        }
        try await environment.store.setPosition(id, priority: slot.priority, position: slot.position)
        slots[id] = slot
        schedule()
        guard let entry = try await current(id) else { throw LabError(.notFound, "there is no run \(id) in the queue") }
        return entry
    }

    // MARK: Looking

    /// Entries waiting or running (read from the database), in the order they would start.
    public func open() async throws -> [QueueEntry] {
        try await startOrder().map(\.entry)
    }

    public func entry(_ id: Int64) async throws -> QueueEntry? { try await current(id) }

    /// Calls `observer` for every entry that ends from now on (a campaign learns its results so).
    @discardableResult
    public func observe(_ observer: @escaping @Sendable (Finished) -> Void) -> UUID {
        let token = UUID()
        observers[token] = observer
        return token
    }

    public func stopObserving(_ token: UUID) { observers[token] = nil }

    /// The open entries in the order they would start, each with its expected window: running first,
    /// then by expected start, then those without a window (held, awaiting approval, or behind a run
    /// of unknown length) in queue order. Priority alone misleads: a high-priority entry due tonight
    /// starts after a low-priority one due now.
    public func startOrder(now: Date = Date()) async throws -> [(entry: QueueEntry, window: Forecast.Window?)] {
        let windows = forecast(now: now)
        let order = Dictionary(uniqueKeysWithValues: ordered(slots.values).enumerated().map { ($0.element.id, $0.offset) })
        func key(_ slot: Slot) -> (Int, Date, Int) {
            let position = order[slot.id] ?? .max
            if running[slot.id] != nil { return (0, windows[slot.id]?.start ?? now, position) }
            if let window = windows[slot.id] { return (1, window.start, position) }
            return (2, .distantFuture, position)
        }
        let stored = Dictionary(try await environment.store.openEntries().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return slots.values.sorted { key($0) < key($1) }.compactMap { slot in
            guard var entry = stored[slot.id] else { return nil }
            entry.state = slot.state
            entry.estimatedSeconds = slot.estimatedSeconds
            entry.note = liveNote(slot) ?? entry.note
            return (entry, windows[slot.id])
        }
    }

    /// Why a waiting entry cannot start whatever else ends: every instrument of a type it needs is blocked.
    private func blockedReason(_ slot: Slot) -> String? {
        for type in Set((needs[slot.protocolSHA256] ?? [:]).values).sorted() {
            let instances = environment.pool.filter { $0.value == type }.keys.sorted()
            if !instances.isEmpty, instances.allSatisfy({ blocked[$0] != nil }) {
                return "waiting: " + instances.map { "\($0) is blocked, \(blocked[$0]!)" }.joined(separator: "; ")
            }
        }
        return nil
    }

    /// When each open entry is expected to start and end: the policy replayed on the estimated
    /// durations, from the runs now running (a run past its estimate is expected to end now).
    public func forecast(now: Date = Date()) -> [Int64: Forecast.Window] {
        let rate = environment.clock.rate
        var items: [Forecast.Item] = []
        for slot in ordered(slots.values) {
            let duration = slot.estimatedSeconds.map { $0 / rate }
            if let run = running[slot.id] {
                items.append(.init(id: slot.id, needs: needs[slot.protocolSHA256] ?? [:], duration: duration,
                                   runningFor: (environment.clock.now - run.started) / rate, instruments: run.instruments))
            } else if slot.state == .queued {
                items.append(.init(id: slot.id, needs: needs[slot.protocolSHA256] ?? [:], duration: duration,
                                   notBefore: slot.notBefore.map { $0.timeIntervalSince(now) }))
            }
        }
        return Forecast.windows(items, pool: environment.pool, stations: environment.stations, now: now)
    }

    // MARK: Run control

    /// Passes a person's pause, resume, abort or halt to a running or paused run; returns the run's
    /// state after, and what the transition was (nil when it changed nothing). A resume is refused while one of the run's instruments is blocked (lost, or
    /// under an alert not yet acknowledged), saying what to do.
    public func control(_ id: Int64, _ event: RunLifecycle.Event) async throws -> (state: RunLifecycle.State, why: String?) {
        guard let run = running[id] else {
            guard let entry = try await current(id) else { throw LabError(.notFound, "there is no run \(id)") }
            throw LabError(.conflict, entry.state.isFinal
                ? "run \(id) has ended (\(entry.state.rawValue)); only a running or paused run can be paused, resumed, aborted or halted"
                : "run \(id) has not started (\(entry.state.rawValue)): `serendip cancel \(id)` takes it off the queue")
        }
        if case .resume = event, case .paused = run.control.lifecycle.state {
            // One line per reason, naming the instruments it blocks.
            var reasons: [String: [String]] = [:]
            for name in run.instruments { if let why = blocked[name] { reasons[why, default: []].append(name) } }
            guard reasons.isEmpty else {
                // Everything that stands in the way, at once: also a step a resume would repeat.
                let repeats = run.control.lifecycle.unrepeatable.map {
                    "; then, the step at \($0.location) is marked not repeatable: resume with --repeat-step to do it again"
                } ?? ""
                throw LabError(.conflict, "run \(id) cannot resume yet: "
                    + reasons.sorted { $0.key < $1.key }.map { "\($0.value.joined(separator: ", ")): \($0.key)" }.joined(separator: "; ")
                    + repeats)
            }
        }
        let transition = try run.control.send(event)
        return (run.control.lifecycle.state, transition?.why)
    }

    /// A fault in the lab (an instrument lost, an interlock): every run holding one of `instruments`
    /// pauses at once, its other instruments sent to their safe state.
    public func fault(_ reason: RunLifecycle.PauseReason, instruments: Set<String>) {
        for run in running.values where !instruments.isDisjoint(with: run.instruments) {
            _ = try? run.control.send(.fault(reason))
        }
    }

    /// Instruments no run may write to (not even its `finally`) while a condition holds, and why.
    public nonisolated let holds = InstrumentHolds()

    /// The instruments nothing may start on and no paused run resume with, and why; replaces the earlier set.
    public func setBlocked(_ instruments: [String: String]) {
        blocked = instruments
        schedule()
    }

    /// The control of a running or paused run: its state, and a door for transitions to be watched.
    public func runControl(_ id: Int64) -> RunControl? { running[id]?.control }

    /// The runs holding an instrument (running or paused).
    public func runs(holding instrument: String) -> [Int64] {
        running.filter { $0.value.instruments.contains(instrument) }.map(\.key).sorted()
    }

    private func store(_ transition: RunLifecycle.Transition, of id: Int64) async {
        switch (transition.from, transition.to) {
        case (_, .paused(let reason)):
            slots[id]?.state = .paused
            _ = try? await environment.store.transition(id, from: [.running, .paused], to: .paused, note: reason.description)
        case (.paused, .running), (.paused, .stopping):
            slots[id]?.state = .running
            _ = try? await environment.store.transition(id, from: [.paused], to: .running, note: transition.why)
        case (.running, .pausing), (.pausing, .running), (.running, .stopping), (.pausing, .stopping):
            // Still running (until its next checkpoint, or until it has stopped): the note says what is under way.
            _ = try? await environment.store.transition(id, from: [.running], to: .running, note: transition.why)
        default:
            break
        }
        for observer in transitionObservers { observer(id, transition) }
    }

    /// Calls `observer` with every transition of a run (paused, resumed, aborting…), once its entry's
    /// state is stored: the daemon raises alerts from it.
    public func observeTransitions(_ observer: @escaping @Sendable (_ entry: Int64, RunLifecycle.Transition) -> Void) {
        transitionObservers.append(observer)
    }

    // MARK: Shutting down

    /// Accepts nothing new and starts nothing more; every running run pauses at its next checkpoint,
    /// or at once after `checkpointWait` seconds, with its instruments in their safe state. Returns
    /// once every run is paused or has ended; the paused ones are stored as paused.
    public func pauseForShutdown(checkpointWait: Double, by who: String) async {
        accepting = false
        wakeUp?.cancel()
        let runs = running
        for run in runs.values { _ = try? run.control.send(.pause(now: false, .shutdown(by: who))) }
        let deadline = ContinuousClock.now + .seconds(checkpointWait)
        var forced = false
        while !runs.values.allSatisfy({ $0.control.isParked || $0.control.lifecycle.state == .finished || $0.control.lifecycle.stop != nil }) {
            if !forced, ContinuousClock.now >= deadline {
                forced = true
                for run in runs.values { _ = try? run.control.send(.fault(.shutdown(by: who))) }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        // Runs that stop (abort, halt) are waited for; the paused ones are stored as paused.
        for (id, run) in runs {
            if case .paused(let reason) = run.control.lifecycle.state {
                _ = try? await environment.store.transition(id, from: [.running, .paused], to: .paused, note: reason.description)
            } else {
                await run.task.value
            }
        }
    }

    /// Escalates a shutdown already under way (a second signal): skip what is left of `finally`.
    public func halt(by who: String) {
        for run in running.values { run.control.stop(.halt, by: who) }
    }

    /// Waits for every run that is stopping (or stops now) to end.
    public func waitForStoppingRuns() async {
        for run in running.values where run.control.lifecycle.stop != nil { await run.task.value }
    }

    // MARK: Scheduling

    /// An entry as stored, with what only the scheduler knows (running, its estimate).
    private func current(_ id: Int64) async throws -> QueueEntry? {
        guard var entry = try await environment.store.entry(id) else { return nil }
        if let slot = slots[id] {
            entry.state = slot.state
            entry.estimatedSeconds = slot.estimatedSeconds ?? entry.estimatedSeconds
            entry.note = liveNote(slot) ?? entry.note
        }
        return entry
    }

    /// What only this process knows about an entry: why a waiting one is kept off its instruments,
    /// why a run is paused or stopping (the stored note may lag: it cannot be written while the disk is full).
    private func liveNote(_ slot: Slot) -> String? {
        if slot.state == .queued { return blockedReason(slot) }
        return running[slot.id]?.control.lifecycle.state.note
    }

    private func remember(_ entry: QueueEntry) {
        let sha = entry.submission.protocolSource.sha256
        if needs[sha] == nil, let definition = try? environment.compile(entry.submission.protocolSource) {
            needs[sha] = Dictionary(uniqueKeysWithValues: definition.instruments.map { ($0.role, $0.driver) })
        }
        slots[entry.id] = Slot(entry)
        if entry.estimatedSeconds == nil { estimateLater(entry) }
    }

    private func ordered(_ list: some Sequence<Slot>) -> [Slot] {
        list.sorted { ($0.priority, -$0.position) > ($1.priority, -$1.position) }
    }

    /// Starts what the policy allows now, and wakes up again at the next earliest-start time.
    private func schedule() {
        guard accepting else { return }
        let now = Date()
        let waiting = ordered(slots.values.filter { $0.state == .queued })
        let eligible = waiting.filter { ($0.notBefore ?? now) <= now }
        let free = environment.pool.filter { busy[$0.key] == nil && blocked[$0.key] == nil }
        let candidates = eligible.compactMap { slot in needs[slot.protocolSHA256].map { SchedulePolicy.Candidate(id: slot.id, needs: $0) } }
        for start in SchedulePolicy.starts(candidates, free: free, stations: environment.stations) { launch(start) }
        wakeUp?.cancel()
        if let next = waiting.compactMap(\.notBefore).filter({ $0 > now }).min() {
            wakeUp = Task { [weak self] in
                try? await Task.sleep(for: .seconds(max(0.001, next.timeIntervalSinceNow)))
                guard !Task.isCancelled else { return }
                await self?.scheduleAgain()
            }
        }
    }

    private func scheduleAgain() { schedule() }

    /// Takes the entry's instruments now; its submission is read from the database as it starts.
    private func launch(_ start: SchedulePolicy.Start) {
        guard slots[start.id] != nil else { return }
        slots[start.id]?.state = .running
        let instances = start.assignment.values.sorted()
        for instance in instances { busy[instance] = start.id }
        let control = RunControl()
        let holds = self.holds
        let input = transitionInput
        control.onTransition { input.yield((start.id, $0)) }
        let environment = self.environment
        let task = Task { [weak self] in
            let result: Result<RunResult, any Error>
            do {
                guard let entry = try await environment.store.entry(start.id) else {
                    throw LabError(.notFound, "run \(start.id) is no longer in the queue")
                }
                result = await Self.execute(entry, on: start.assignment, control: control, holds: holds, environment)
            } catch {
                result = .failure(error)
            }
            await self?.finished(start.id, result)
        }
        running[start.id] = Running(control: control, task: task, started: environment.clock.now, instruments: instances)
    }

    /// Runs one entry; a failure before its run began is recorded on the entry itself.
    private static func execute(_ entry: QueueEntry, on assignment: [String: String], control: RunControl, holds: InstrumentHolds,
                                _ environment: Environment) async -> Result<RunResult, any Error> {
        do {
            let definition = try environment.compile(entry.submission.protocolSource)
            let instruments = try assignment.mapValues { instance in
                guard let instrument = environment.instruments[instance] else {
                    throw LabError(.instrumentLost, "instrument \(instance) is not connected")
                }
                return instrument
            }
            var executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: environment.clock,
                                            recorder: environment.recorder, logger: environment.logger, control: control)
            executor.holds = holds
            let s = entry.submission
            let start = RunStart(campaignID: s.campaignID, protocolName: definition.name, protocolSource: definition.source,
                                 parameters: [], chosenBy: s.chosenBy, proposalID: s.proposalID,
                                 instruments: instruments.mapValues(\.identity), operatorName: s.owner,
                                 softwareVersion: environment.softwareVersion, startedAt: Date(),
                                 startedMonotonic: environment.clock.now, queueEntryID: entry.id)
            return .success(try await executor.run(parameters: s.parameters, start: start))
        } catch {
            return .failure(error)
        }
    }

    private func finished(_ id: Int64, _ result: Result<RunResult, any Error>) async {
        if let run = running.removeValue(forKey: id) { for instance in run.instruments { busy[instance] = nil } }
        slots[id] = nil
        switch result {
        case .success(let run):
            // The store committed the entry's end with the run's.
            if let entry = try? await environment.store.entry(id) { notify(Finished(entry: entry, result: run)) }
        case .failure(let error):
            environment.logger.error("queue entry could not run", metadata: ["entry": "\(id)", "error": "\(error)"])
            let changed = try? await environment.store.transition(id, from: [.queued, .running, .paused], to: .failed, note: "\(error)")
            if let changed { notify(Finished(entry: changed, result: nil)) }
        }
        schedule()
    }

    private func notify(_ finished: Finished) {
        for observer in observers.values { observer(finished) }
    }

    /// Fills in entries' duration estimates in the background, one at a time: nothing waits on
    /// them, and ten thousand submissions do not start ten thousand simulations at once. Entries
    /// of one protocol with the same values share one simulation.
    private func estimateLater(_ entry: QueueEntry) {
        guard environment.estimate != nil, entry.estimatedSeconds == nil else { return }
        if let known = knownEstimates[EstimateKey(entry)] { return estimated(entry.id, known) }
        toEstimate.append(entry.id)
        guard !estimating else { return }
        estimating = true
        let environment = self.environment
        Task.detached(priority: .background) { [weak self] in
            while let self, let id = await self.nextToEstimate() {
                guard let entry = try? await environment.store.entry(id) else { continue }
                if let known = await self.known(EstimateKey(entry)) { await self.estimated(id, known); continue }
                guard let definition = try? environment.compile(entry.submission.protocolSource),
                      let seconds = await environment.estimate?(definition, entry.submission.parameters) else { continue }
                try? await environment.store.setEstimate(id, seconds: seconds)
                await self.estimated(id, seconds, key: EstimateKey(entry))
            }
        }
    }

    private struct EstimateKey: Hashable {
        var protocolSHA256: String
        var parameters: [String: ExprValue]
        init(_ entry: QueueEntry) { protocolSHA256 = entry.submission.protocolSource.sha256; parameters = entry.submission.parameters }
    }

    private func known(_ key: EstimateKey) -> Double? { knownEstimates[key] }

    private func nextToEstimate() -> Int64? {
        while estimateCursor < toEstimate.count {
            let id = toEstimate[estimateCursor]
            estimateCursor += 1
            if let slot = slots[id], slot.estimatedSeconds == nil { return id }
        }
        toEstimate = []
        estimateCursor = 0
        estimating = false
        return nil
    }

    private func estimated(_ id: Int64, _ seconds: Double, key: EstimateKey? = nil) {
        slots[id]?.estimatedSeconds = seconds
        if let key { knownEstimates[key] = seconds }
    }
}
