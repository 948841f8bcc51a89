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

    private let environment: Environment
    private var entries: [Int64: QueueEntry] = [:]
    /// Role → driver type, by protocol SHA-256: ten thousand entries of one protocol share it.
    private var needs: [String: [String: String]] = [:]
    /// One copy of each protocol text, shared by the entries that run it.
    private var texts: [String: SourceText] = [:]
    /// Instruments held by running entries: instance → entry.
    private var busy: [String: Int64] = [:]
    private var running: [Int64: (control: RunControl, task: Task<Void, Never>, started: Double, instruments: [String])] = [:]
    private var accepting = true
    private var wakeUp: Task<Void, Never>?
    private var observers: [UUID: @Sendable (Finished) -> Void] = [:]
    private var toEstimate: [Int64] = []
    private var estimateCursor = 0
    private var estimating = false
    private var knownEstimates: [EstimateKey: Double] = [:]

    public init(_ environment: Environment) {
        self.environment = environment
    }

    /// Loads the queue left by an earlier process. Nothing it held starts by itself unless its owner
    /// asked for `autostart` (the store holds the others), and a run that was running is interrupted.
    public func start() async throws {
        try await environment.store.recoverAfterRestart()
        for entry in try await environment.store.openEntries() {
            remember(entry)
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
        for entry in stored where entries[entry.id] == nil && !entry.state.isFinal {
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
        case hold, release, cancel, approve, reject, remove
    }

    /// Applies a person's request to an entry; returns the entry after. A cancel of a running entry
    /// aborts its run (`finally`, then the safe states) and returns once it is asked to.
    public func apply(_ action: Action, to id: Int64, by who: String) async throws -> QueueEntry {
        guard let entry = try await current(id) else { throw LabError(.notFound, "there is no run \(id) in the queue") }
        let (from, to): (Set<QueueState>, QueueState) = switch action {
        case .hold: ([.queued], .held)
        case .release: ([.held], .queued)
        case .cancel, .remove: ([.queued, .held, .awaitingApproval], .cancelled)
        case .approve: ([.awaitingApproval], .queued)
        case .reject: ([.awaitingApproval], .rejected)
        }
        if action == .cancel, entry.state == .running, let run = running[id] {
            run.control.stop(.abort, by: "cancelled by \(who)")
            return entry
        }
        guard from.contains(entry.state) else {
            throw LabError(.conflict, "run \(id) is \(entry.state.rawValue); \(action.rawValue) applies to an entry that is \(from.map(\.rawValue).sorted().joined(separator: " or "))")
        }
        guard let changed = try await environment.store.transition(id, from: from, to: to, note: "\(action.rawValue) by \(who)") else {
            throw LabError(.conflict, "run \(id) changed meanwhile; look again")
        }
        if changed.state.isFinal { forget(id); notify(Finished(entry: changed, result: nil)) } else { entries[id] = changed }
        schedule()
        return changed
    }

    /// Cancels an entry that has not started; one that is running goes on.
    public func cancelIfWaiting(_ id: Int64, by who: String) async {
        guard let entry = entries[id], entry.state != .running else { return }
        _ = try? await apply(.cancel, to: id, by: who)
    }

    /// Moves an entry: a new priority, and before another entry of the queue (or to the end).
    public func move(_ id: Int64, priority: Int?, before other: Int64?) async throws -> QueueEntry {
        guard var entry = entries[id], !entry.state.isFinal, entry.state != .running else {
            throw LabError(.conflict, "run \(id) is not waiting in the queue")
        }
        if let priority { entry.submission.priority = priority }
        if let other {
            guard let target = entries[other] else { throw LabError(.conflict, "run \(other) is not waiting in the queue") }
            let earlier = entries.values.filter { $0.position < target.position }.map(\.position).max() ?? target.position - 1
            entry.position = (earlier + target.position) / 2
            entry.submission.priority = priority ?? target.submission.priority
        }
        try await environment.store.setPosition(id, priority: entry.submission.priority, position: entry.position)
        entries[id] = entry
        schedule()
        return entry
    }

    // MARK: Looking

    /// Entries waiting or running, in the order they would start.
    public var open: [QueueEntry] { ordered(entries.values) }

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
    public func startOrder(now: Date = Date()) -> [(entry: QueueEntry, window: Forecast.Window?)] {
        let windows = forecast(now: now)
        func key(_ entry: QueueEntry, _ position: Int) -> (Int, Date, Int) {
            if entry.state == .running { return (0, windows[entry.id]?.start ?? now, position) }
            if let window = windows[entry.id] { return (1, window.start, position) }
            return (2, .distantFuture, position)
        }
        return open.enumerated().sorted { key($0.element, $0.offset) < key($1.element, $1.offset) }
            .map { ($0.element, windows[$0.element.id]) }
    }

    /// When each open entry is expected to start and end: the policy replayed on the estimated
    /// durations, from the runs now running (a run past its estimate is expected to end now).
    public func forecast(now: Date = Date()) -> [Int64: Forecast.Window] {
        let rate = environment.clock.rate
        var items: [Forecast.Item] = []
        for entry in open {
            let duration = entry.estimatedSeconds.map { $0 / rate }
            if let run = running[entry.id] {
                items.append(.init(id: entry.id, needs: needs(of: entry) ?? [:], duration: duration,
                                   runningFor: (environment.clock.now - run.started) / rate, instruments: run.instruments))
            } else if entry.state == .queued {
                items.append(.init(id: entry.id, needs: needs(of: entry) ?? [:], duration: duration,
                                   notBefore: entry.submission.notBefore.map { $0.timeIntervalSince(now) }))
            }
        }
        return Forecast.windows(items, pool: environment.pool, stations: environment.stations, now: now)
    }

    // MARK: Shutting down

    /// Accepts nothing new, starts nothing more, and stops every running run with `stop` (abort:
    /// `finally`, then the safe states); returns when all of them have ended.
    public func shutDown(_ stop: RunControl.Stop, by who: String) async {
        accepting = false
        wakeUp?.cancel()
        let tasks = running.values.map(\.task)
        for run in running.values { run.control.stop(stop, by: who) }
        for task in tasks { await task.value }
    }

    /// Escalates a shutdown already under way (a second signal): skip what is left of `finally`.
    public func halt(by who: String) {
        for run in running.values { run.control.stop(.halt, by: who) }
    }

    // MARK: Scheduling

    private func current(_ id: Int64) async throws -> QueueEntry? {
        if let entry = entries[id] { return entry }
        return try await environment.store.entry(id)
    }

    private func remember(_ entry: QueueEntry) {
        var entry = entry
        let sha = entry.submission.protocolSource.sha256
        if let shared = texts[sha] {
            entry.submission.protocolSource = shared
        } else {
            texts[sha] = entry.submission.protocolSource
            if let definition = try? environment.compile(entry.submission.protocolSource) {
                needs[sha] = Dictionary(uniqueKeysWithValues: definition.instruments.map { ($0.role, $0.driver) })
            }
        }
        entries[entry.id] = entry
        if entry.estimatedSeconds == nil { estimateLater(entry) }
    }

    private func forget(_ id: Int64) {
        entries[id] = nil
    }

    private func needs(of entry: QueueEntry) -> [String: String]? { needs[entry.submission.protocolSource.sha256] }

    private func ordered(_ list: some Sequence<QueueEntry>) -> [QueueEntry] {
        list.sorted { ($0.submission.priority, -$0.position) > ($1.submission.priority, -$1.position) }
    }

    /// Starts what the policy allows now, and wakes up again at the next earliest-start time.
    private func schedule() {
        guard accepting else { return }
        let now = Date()
        let waiting = ordered(entries.values.filter { $0.state == .queued })
        let eligible = waiting.filter { ($0.submission.notBefore ?? now) <= now }
        let free = environment.pool.filter { busy[$0.key] == nil }
        let candidates = eligible.compactMap { entry in needs(of: entry).map { SchedulePolicy.Candidate(id: entry.id, needs: $0) } }
        for start in SchedulePolicy.starts(candidates, free: free, stations: environment.stations) { launch(start) }
        wakeUp?.cancel()
        if let next = waiting.compactMap(\.submission.notBefore).filter({ $0 > now }).min() {
            wakeUp = Task { [weak self] in
                try? await Task.sleep(for: .seconds(max(0.001, next.timeIntervalSinceNow)))
                guard !Task.isCancelled else { return }
                await self?.scheduleAgain()
            }
        }
    }

    private func scheduleAgain() { schedule() }

    private func launch(_ start: SchedulePolicy.Start) {
        guard var entry = entries[start.id] else { return }
        entry.state = .running
        entries[start.id] = entry
        let instances = start.assignment.values.sorted()
        for instance in instances { busy[instance] = start.id }
        let control = RunControl()
        let environment = self.environment
        let task = Task { [weak self] in
            let result = await Self.execute(entry, on: start.assignment, control: control, environment)
            await self?.finished(start.id, result)
        }
        running[start.id] = (control, task, environment.clock.now, instances)
    }

    /// Runs one entry; a failure before its run began is recorded on the entry itself.
    private static func execute(_ entry: QueueEntry, on assignment: [String: String], control: RunControl,
                                _ environment: Environment) async -> Result<RunResult, any Error> {
        do {
            let definition = try environment.compile(entry.submission.protocolSource)
            let instruments = try assignment.mapValues { instance in
                guard let instrument = environment.instruments[instance] else {
                    throw LabError(.instrumentLost, "instrument \(instance) is not connected")
                }
                return instrument
            }
            let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: environment.clock,
                                            recorder: environment.recorder, logger: environment.logger, control: control)
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
        var entry = entries[id]
        forget(id)
        switch result {
        case .success(let run):
            entry?.state = QueueState(run.outcome)
            entry?.runID = run.runID
            if let entry { notify(Finished(entry: entry, result: run)) }
        case .failure(let error):
            environment.logger.error("queue entry could not run", metadata: ["entry": "\(id)", "error": "\(error)"])
            let changed = try? await environment.store.transition(id, from: [.queued, .running], to: .failed, note: "\(error)")
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
            while let self, let entry = await self.nextToEstimate() {
                guard let definition = try? environment.compile(entry.submission.protocolSource),
                      let seconds = await environment.estimate?(definition, entry.submission.parameters) else { continue }
                try? await environment.store.setEstimate(entry.id, seconds: seconds)
                await self.estimated(entry.id, seconds, key: EstimateKey(entry))
            }
        }
    }

    private struct EstimateKey: Hashable {
        var protocolSHA256: String
        var parameters: [String: ExprValue]
        init(_ entry: QueueEntry) { protocolSHA256 = entry.submission.protocolSource.sha256; parameters = entry.submission.parameters }
    }

    private func nextToEstimate() -> QueueEntry? {
        while estimateCursor < toEstimate.count {
            let id = toEstimate[estimateCursor]
            estimateCursor += 1
            guard let entry = entries[id], entry.estimatedSeconds == nil else { continue }
            if let known = knownEstimates[EstimateKey(entry)] { estimated(id, known); continue }
            return entry
        }
        toEstimate = []
        estimateCursor = 0
        estimating = false
        return nil
    }

    private func estimated(_ id: Int64, _ seconds: Double, key: EstimateKey? = nil) {
        entries[id]?.estimatedSeconds = seconds
        if let key { knownEstimates[key] = seconds }
    }
}
