import Foundation
public import LabCore
import LabDrivers
import LabTransport
public import LabEngine
public import LabScheduler
public import LabSpec
public import LabStorage
public import LabServer
public import Logging
import Synchronization

/// `serendip serve`: one lab, one data directory, one process. Opening it takes the directory's
/// lock, opens the database, makes the instruments of any run a killed daemon left running safe,
/// connects the lab and loads the queue (holding what was queued unless its owner asked for
/// autostart). `Daemon.run` then serves until it is told to stop.
public final class Daemon: Sendable {
    public struct Options: Sendable {
        public var labPath: String
        public var dataDirectory: String
        public var logger: Logger
        /// On SIGTERM: how long a running run may go on to its next checkpoint before it is paused where it is.
        public var checkpointWait: Double
        /// How often an instrument nobody is talking to is checked, and the bounds of the backoff
        /// with which a lost one is tried again (seconds).
        public var probeInterval: Double = 1
        public var reconnectBackoff: ClosedRange<Double> = 0.05...5

        public init(labPath: String, dataDirectory: String, logger: Logger = Logger(label: "serendip"), checkpointWait: Double = 10) {
            self.labPath = labPath; self.dataDirectory = dataDirectory; self.logger = logger; self.checkpointWait = checkpointWait
        }
    }

    /// The files of a data directory.
    public struct Layout: Sendable {
        public var directory: String
        public var database: String { directory + "/serendip.sqlite" }
        public var socket: String { directory + "/serendip.sock" }

        public init(_ directory: String) { self.directory = directory }
    }

    public let layout: Layout
    public let lab: LabConfig
    public let database: LabDatabase
    public let scheduler: Scheduler
    public let campaigns: Campaigns
    let safety: SafetyWatch
    public let logger: Logger
    let checkpointWait: Double
    private let lock: DatabaseLock
    private let simulators: SimulatedLab?

    public static let softwareVersion = CampaignSession.softwareVersion

    public init(_ options: Options) async throws {
        let layout = Layout(options.dataDirectory)
        self.layout = layout
        logger = options.logger
        checkpointWait = options.checkpointWait
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: layout.directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw LabError(.storage, "\(layout.directory) is a file, not a directory: give --data a directory (it is created if missing)")
        }
        do {
            try FileManager.default.createDirectory(atPath: layout.directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw LabError(.storage, "cannot create the data directory \(layout.directory): \(error.localizedDescription)")
        }
        lock = try DatabaseLock(database: layout.database)
        lab = try LabConfig.load(path: options.labPath)
        database = try LabDatabase(path: layout.database)
        let clock = ScaledClock(rate: lab.simulation.speed)
        let simulators = try lab.instruments.values.contains { $0.connection == .simulated } ? SimulatedLab(config: lab, clock: clock) : nil
        self.simulators = simulators
        // Before anything else: whatever a killed daemon left running is made safe.
        try await RestartRecovery.makeSafe(database: database, lab: lab, simulators: simulators, logger: logger)
        try database.stopRunningCampaigns()
        let instruments = try InstrumentConnector.connect(lab, simulators: simulators, traffic: { [database] in database.trafficTap(for: $0) })
        let compiled = ProtocolCache(drivers: lab.drivers)
        scheduler = Scheduler(Scheduler.Environment(
            store: database, recorder: database, instruments: instruments, pool: lab.instruments.mapValues(\.driver.name),
            stations: lab.stations,
            compile: { try compiled.definition($0) }, clock: clock, logger: logger, softwareVersion: Self.softwareVersion,
            estimate: { [lab] definition, parameters in await RunEstimate.seconds(definition, parameters, lab: lab) }))
        safety = SafetyWatch(database: database, scheduler: scheduler, lab: lab, instruments: instruments, logger: logger,
                             hub: InstrumentHub(instruments: instruments, logger: logger, backoff: options.reconnectBackoff,
                                                probeInterval: options.probeInterval))
        await scheduler.observeTransitions { [safety] in safety.transitioned(entry: $0, $1) }
        // Before any run starts: an asserted interlock or an unacknowledged alert blocks its instruments.
        await safety.start()
        try await scheduler.start()
        campaigns = Campaigns(database: database, lab: lab, scheduler: scheduler, logger: logger)
        try database.appendAudit(actor: "daemon", action: "daemon started", subject: "daemon", detail: LabDatabase.auditDetail([
            "lab": lab.name, "lab_file": options.labPath, "version": Self.softwareVersion,
            "pid": Int(ProcessInfo.processInfo.processIdentifier), "user": ProcessInfo.processInfo.userName,
        ]))
        logger.info("daemon ready", metadata: ["lab": "\(lab.name)", "data": "\(layout.directory)",
                                               "instruments": "\(lab.instruments.keys.sorted())"])
    }

    /// A person's acknowledgement of an alert whose condition has cleared: its instruments are no
    /// longer blocked by it, and the runs it paused may be resumed.
    public func acknowledgeAlert(_ id: Int64, by person: String) async throws -> Alert {
        try await safety.acknowledge(id, by: person)
    }

    /// Stops proposing and starting; every running run pauses at its next checkpoint (at once after
    /// `checkpointWait` seconds) with its instruments in their safe state; everything recorded is
    /// committed. A paused run is not resumed by the next daemon: it is recorded as interrupted.
    public func shutDown(by who: String, checkpointWait: Double? = nil) async {
        logger.info("daemon stopping", metadata: ["by": "\(who)"])
        await campaigns.shutDown()
        await scheduler.pauseForShutdown(checkpointWait: checkpointWait ?? self.checkpointWait, by: who)
        await scheduler.waitForStoppingRuns()
        await safety.stop()
        try? await database.flush()
        simulators?.stop()
        do {
            try database.appendAudit(actor: who, action: "daemon stopped", subject: "daemon", detail: nil)
        } catch {
            logger.error("cannot write the audit log", metadata: ["error": "\(error)"])
        }
        // Everything into the database file itself: a copy of serendip.sqlite alone, taken while no
        // daemon runs, then holds every run (the -wal is left empty).
        do { try database.checkpointWAL() } catch { logger.warning("cannot checkpoint the database", metadata: ["error": "\(error)"]) }
    }

    /// The method table as served: every mutating request is written to the audit log.
    public var dispatcher: RPCDispatcher { RPCDispatcher(methods, audit: database) }
}

/// Protocols compiled against the lab, once per text.
final class ProtocolCache: Sendable {
    private let drivers: [String: DriverSpec]
    private let cache = Mutex<[String: ProtocolDefinition]>([:])

    init(drivers: [String: DriverSpec]) { self.drivers = drivers }

    func definition(_ source: SourceText) throws -> ProtocolDefinition {
        if let known = cache.withLock({ $0[source.sha256] }) { return known }
        let definition = try ProtocolParser.parse(source.text, path: source.path, drivers: drivers)
        cache.withLock { $0[source.sha256] = definition }
        return definition
    }
}
