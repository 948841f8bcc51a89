public import LabCore
public import LabSpec
public import Logging

/// Watches a lab's interlocks: reads each one's channel at its own interval and reports every change
/// of its state. A read that fails asserts the interlock (an instrument that cannot be read is not
/// known to be safe); while reads fail the interval backs off, up to `maximumBackoff`, so a lost
/// instrument is not hammered. What to do about a change (pause runs, command safe states, raise an
/// alert) is the observer's business.
public actor InterlockMonitor {
    public typealias Observer = @Sendable (InterlockSpec, _ asserted: Bool, _ detail: String) -> Void

    /// The longest wait between two reads of a channel whose reads fail (unless its interval is longer).
    public static let maximumBackoff = 5.0

    private let interlocks: [InterlockSpec]
    private let instruments: [String: any Instrument]
    private let logger: Logger
    private var observers: [Observer] = []
    /// Per interlock name: its detail while asserted, nil while clear; missing until first read.
    private var states: [String: String?] = [:]
    private var failures: [String: Int] = [:]
    private var polling: [Task<Void, Never>] = []

    public init(interlocks: [InterlockSpec], instruments: [String: any Instrument], logger: Logger) {
        self.interlocks = interlocks
        self.instruments = instruments
        self.logger = logger
    }

    /// Called on every change of an interlock's state, and once for each interlock's first reading
    /// (asserted or not), so that an observer learns the state at startup. Observers are called on
    /// the monitor's actor, one change at a time: hand slow work (storage, safe states) to a task.
    public func onChange(_ observer: @escaping Observer) {
        observers.append(observer)
    }

    /// The asserted interlocks now: name → what was read.
    public func asserted() -> [String: String] {
        states.compactMapValues { $0 }
    }

    /// Reads every interlock's channel once, all at once, and reports what changed.
    public func check() async {
        await withTaskGroup(of: Void.self) { group in
            for interlock in interlocks {
                group.addTask { await self.poll(interlock) }
            }
        }
    }

    /// Polls each interlock at its interval until `stop()`.
    public func start() {
        guard polling.isEmpty else { return }
        polling = interlocks.map { interlock in
            Task {
                while !Task.isCancelled {
                    await self.poll(interlock)
                    try? await Task.sleep(for: .seconds(await self.interval(interlock)))
                }
            }
        }
    }

    /// Stops polling; no observer is called after it returns.
    public func stop() async {
        let tasks = polling
        polling = []
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    private func interval(_ interlock: InterlockSpec) -> Double {
        Self.wait(every: interlock.everySeconds, failedReads: failures[interlock.name, default: 0])
    }

    /// The wait before the next read: the interval, doubled per failed read in a row, up to
    /// `maximumBackoff` (or the interval itself, if that is longer).
    static func wait(every: Double, failedReads: Int) -> Double {
        guard failedReads > 0 else { return every }
        return min(every * Double(1 << min(failedReads, 16)), max(every, maximumBackoff))
    }

    private func poll(_ interlock: InterlockSpec) async {
        let asserted: Bool, detail: String
        do {
            guard let instrument = instruments[interlock.instrument] else {
                throw LabError(.instrumentLost, "\(interlock.instrument) is not connected")
            }
            (asserted, detail) = interlock.evaluate(try await instrument.read(interlock.channel))
            failures[interlock.name] = 0
        } catch {
            asserted = true
            detail = "\(interlock.ref) could not be read: \(error)"
            failures[interlock.name, default: 0] += 1
        }
        // After a stop nothing more is reported, even by a read that was under way.
        guard !Task.isCancelled else { return }
        let previous = states[interlock.name]
        guard previous == nil || (previous! != nil) != asserted else { return }
        states[interlock.name] = .some(asserted ? detail : nil)
        if asserted {
            logger.info("interlock asserted", metadata: ["interlock": "\(interlock.name)", "detail": "\(detail)"])
        } else {
            logger.info("interlock clear", metadata: ["interlock": "\(interlock.name)", "detail": "\(detail)"])
        }
        for observer in observers { observer(interlock, asserted, detail) }
    }
}
