public import LabCore
import LabSpec
public import Logging

/// Keeps watch over a lab's connected instruments, by instance name. On `start()` each device
/// watchdog a driver file declares is armed, then fed while the hub runs; an instrument without one
/// is probed every `probeInterval`, so a loss is seen even while no run talks to it. A lost
/// instrument (reported by the engine, or found by a probe or a feed) is probed again with a
/// backoff doubling within `backoff`; when it answers, its watchdog is armed again and it is
/// reported connected. The hub only observes and reconnects: pausing runs and raising alerts is the
/// engine's, through `onChange`.
public actor InstrumentHub {
    public enum Health: Sendable, Equatable { case connected; case lost(error: String) }

    private let instruments: [String: any Instrument]
    private let logger: Logger
    private let backoff: ClosedRange<Double>
    private let probeInterval: Double
    private var states: [String: Health]
    private var observers: [@Sendable (String, Health) -> Void] = []
    /// One watcher per instrument; a new one (with a new generation) after each loss report, so a
    /// watcher that was cancelled mid-probe cannot change what a newer one found.
    private var watchers: [String: (generation: Int, task: Task<Void, Never>)] = [:]
    private var generation = 0
    private var running = false

    public init(instruments: [String: any Instrument], logger: Logger, backoff: ClosedRange<Double> = 0.05...5,
                probeInterval: Double = 1) {
        self.instruments = instruments
        self.logger = logger
        self.backoff = backoff
        self.probeInterval = probeInterval
        states = instruments.mapValues { _ in .connected }
    }

    /// Arms the watchdogs (their first feed), then keeps feeding them and probing the others.
    public func start() {
        guard !running else { return }
        running = true
        for name in instruments.keys { startWatching(name) }
    }

    /// Stops probing and feeding: the devices' watchdogs run out as they would under a hung daemon.
    public func stop() {
        running = false
        for (_, watcher) in watchers { watcher.task.cancel() }
        watchers = [:]
    }

    /// The engine saw a call to `name` fail with `.instrumentLost` or `.timeout`.
    public func reportLost(_ name: String, error: String) {
        guard states[name] != nil else { return }
        markLost(name, error)
        if running { startWatching(name) }
    }

    public func health(_ name: String) -> Health {
        states[name] ?? .lost(error: "no instrument '\(name)' in this lab")
    }

    /// Called with each change: an instrument lost, or back (`.connected`).
    public func onChange(_ observer: @escaping @Sendable (String, Health) -> Void) {
        observers.append(observer)
    }

    /// Whether an error means the link is gone (rather than the device refusing a request).
    public static func isLoss(_ error: any Error) -> Bool {
        guard let error = error as? LabError else { return false }
        return error.code == .instrumentLost || error.code == .timeout
    }

    private func startWatching(_ name: String) {
        watchers[name]?.task.cancel()
        generation += 1
        let mine = generation
        watchers[name] = (mine, Task { await self.watch(name, generation: mine) })
    }

    private func isCurrent(_ name: String, _ generation: Int) -> Bool {
        running && watchers[name]?.generation == generation && !Task.isCancelled
    }

    private func watch(_ name: String, generation: Int) async {
        guard let instrument = instruments[name] as? any DriverBackedInstrument else { return }
        var delay = backoff.lowerBound
        while isCurrent(name, generation) {
            if states[name] == .connected {
                do {
                    // A feed is a probe too: its reply says the device is there.
                    if instrument.spec.watchdog != nil { try await instrument.feedWatchdog() } else { try await instrument.probe() }
                } catch where Self.isLoss(error) {
                    if isCurrent(name, generation) { markLost(name, String(describing: error)) }
                    continue
                } catch {}
                let interval = instrument.spec.watchdog?.feedEvery ?? probeInterval
                do { try await Task.sleep(for: .seconds(interval)) } catch { return }
            } else {
                do { try await Task.sleep(for: .seconds(delay)) } catch { return }
                guard isCurrent(name, generation) else { return }
                do {
                    try await instrument.probe()
                    try await instrument.feedWatchdog()
                } catch where Self.isLoss(error) {
                    delay = min(delay * 2, backoff.upperBound)
                    continue
                } catch {
                    // The device answered, if only to refuse: it is there.
                }
                guard isCurrent(name, generation) else { return }
                delay = backoff.lowerBound
                set(name, .connected)
            }
        }
    }

    private func markLost(_ name: String, _ error: String) {
        guard states[name] == .connected else { return }
        set(name, .lost(error: error))
    }

    private func set(_ name: String, _ health: Health) {
        states[name] = health
        switch health {
        case .connected: logger.info("instrument back", metadata: ["instrument": "\(name)"])
        case .lost(let error): logger.info("instrument lost", metadata: ["instrument": "\(name)", "error": "\(error)"])
        }
        for observer in observers { observer(name, health) }
    }
}
