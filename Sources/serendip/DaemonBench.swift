import Foundation
import Glibc
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabScheduler
import LabServer
import LabSpec
import LabStorage
import Logging

/// The daemon's figures (issue 11): per-step orchestration overhead with every reading stored, a
/// queued run from submission to its committed end, a 1,000-item submission, and the resident
/// memory of an idle daemon. `serendip bench` prints them as rows; `--daemon-only --json` prints
/// them for scripts/bench_peers.py, which sets them beside Bluesky and bluesky-queueserver.
struct DaemonBench {
    var lab: String
    var countSteps: Int
    var scanSteps: Int
    var repetitions: Int
    var queuedRuns: Int
    var heldRuns: Int

    /// Samples in seconds (memory in bytes), by figure.
    struct Figures: Encodable {
        var countStep: [Double] = []
        var scanStep: [Double] = []
        var runFixed: [Double] = []
        var queueAdd: [Double] = []
        var queuedRun: [Double] = []
        var addMany: [Double] = []
        var idleRSS: Double = 0
        var heldRSS: Double = 0
        /// The anonymous part of each (VmRSS counts the binary's and shared libraries' pages too).
        var idleAnonymous: Double = 0
        var heldAnonymous: Double = 0
        var held = 0
        var countSteps = 0, scanSteps = 0

        enum CodingKeys: String, CodingKey {
            case countStep = "count_step_s", scanStep = "scan_step_s", runFixed = "run_fixed_s", queueAdd = "queue_add_s"
            case queuedRun = "queued_run_s", addMany = "add_many_1000_s", idleRSS = "idle_rss_bytes"
            case heldRSS = "held_rss_bytes", idleAnonymous = "idle_rss_anon_bytes", heldAnonymous = "held_rss_anon_bytes"
            case held = "held_runs", countSteps = "count_steps", scanSteps = "scan_steps"
        }
    }

    func measure() async throws -> Figures {
        var figures = Figures(countSteps: countSteps, scanSteps: scanSteps)
        let config = try LabConfig.load(path: lab)
        try await stepOverhead(config, &figures)
        try await queueLatency(&figures)
        try residentMemory(&figures)
        return figures
    }

    static let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

    // MARK: (a) per-step overhead, in process

    /// Bluesky's `count`: one detector read N times (after its lamp is switched on: the one step more).
    /// Simulated time, so no interval is slept.
    static func countProtocol(_ n: Int) -> String {
        """
        serendip: 1
        name: bench-count
        instruments: { spectro: uv-vis }
        steps:
          - set: spectro.lamp
            to: true
          - measure: { channel: spectro.absorbance, as: a, repeat: \(n), every: 1 s }

        """
    }

    /// Bluesky's `scan`: at each of N points, move (set a setpoint) and read a detector.
    static func scanProtocol(_ n: Int) -> String {
        let points = (0..<n).map { String(format: "%.4f degC", 25 + 100 * Double($0) / Double(max(n, 1))) }
        return """
        serendip: 1
        name: bench-scan
        instruments: { reactor: thermo-reactor, spectro: uv-vis }
        steps:
          - set: spectro.lamp
            to: true
          - for_each: [\(points.joined(separator: ", "))]
            as: t
            steps:
              - set: reactor.setpoint
                to: $t
              - measure: { channel: spectro.absorbance, as: a }

        """
    }

    /// Runs each protocol through the executor against in-process instruments on a virtual clock,
    /// recording into a real SQLite database (WAL, synchronous=FULL, as the daemon's).
    func stepOverhead(_ config: LabConfig, _ figures: inout Figures) async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try LabDatabase(path: directory + "/bench.sqlite")
        let count = try ProtocolParser.parse(Self.countProtocol(countSteps), path: "bench-count.yaml", drivers: config.drivers)
        let scan = try ProtocolParser.parse(Self.scanProtocol(scanSteps), path: "bench-scan.yaml", drivers: config.drivers)
        let single = try ProtocolParser.parse(Self.countProtocol(1), path: "bench-single.yaml", drivers: config.drivers)

        func run(_ definition: ProtocolDefinition) async throws -> Double {
            try await Self.timedRun(definition, config, recorder: database).seconds
        }

        _ = try await run(single)  // warm-up: the database's first pages, the code's first calls
        for _ in 0..<repetitions {
            figures.countStep.append(try await run(count) / Double(countSteps))
            figures.scanStep.append(try await run(scan) / Double(scanSteps))
        }
        for _ in 0..<max(20, repetitions) { figures.runFixed.append(try await run(single)) }
    }

    /// Runs a protocol once through the executor against in-process instruments on a virtual clock,
    /// recording into `recorder`: the wall-clock seconds until its `completed` state was committed.
    static func timedRun(_ definition: ProtocolDefinition, _ config: LabConfig, recorder: LabDatabase) async throws
        -> (result: RunResult, seconds: Double) {
        let clock = VirtualClock()
        let lab = InstrumentConnector.inProcess(config, clock: clock)
        let instruments = Dictionary(uniqueKeysWithValues: definition.instruments.map { ($0.role, lab[$0.role]!) })
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock, recorder: recorder, logger: quiet)
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source, parameters: [],
                             chosenBy: "bench", proposalID: nil, instruments: instruments.mapValues(\.identity),
                             operatorName: "bench", softwareVersion: "bench", startedAt: Date(), startedMonotonic: 0)
        let began = ContinuousClock.now
        let result = try await executor.run(parameters: [:], start: start)
        let elapsed = seconds(ContinuousClock.now - began)
        guard result.outcome == .completed else { throw LabError(.invalidFile, "bench run \(definition.name) ended \(result.outcome): \(result.error ?? "")") }
        return (result, elapsed)
    }

    // MARK: (b, c) the queue, over the socket of an in-process daemon

    static let trivialProtocol = """
        serendip: 1
        name: bench-trivial
        instruments: {}
        steps:
          - log: trivial

        """

    static func item(notBefore: String? = nil) -> [String: Any] {
        var item: [String: Any] = ["protocol": ["path": "bench-trivial.yaml", "text": trivialProtocol]]
        if let notBefore { item["not_before"] = notBefore }
        return item
    }

    /// Far enough ahead that what is queued with it stays queued while it is measured.
    static let farFuture = "2099-01-01T00:00:00Z"

    func queueLatency(_ figures: inout Figures) async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let daemon = try await Daemon(Daemon.Options(labPath: lab, dataDirectory: directory, logger: Self.quiet))
        let server = try SocketServer(path: daemon.layout.socket, dispatcher: daemon.dispatcher)
        // The end of each run as the scheduler reports it: after its `completed` state is committed.
        let ends = Ends()
        let token = await daemon.scheduler.observe { finished in ends.record(finished.entry.id, finished.entry.state) }
        let (queuedRuns, socket) = (self.queuedRuns, daemon.layout.socket)
        let samples = try await Self.onThread { () throws -> ([Double], [Double], [Double]) in
            let client = try RPCClient(socket)
            var acknowledged: [Double] = [], completed: [Double] = []
            for index in 0...queuedRuns {
                let began = ContinuousClock.now
                let entry = try client.call("queue.add", Self.item()) as? [String: Any]
                let replied = ContinuousClock.now
                guard let run = (entry?["run"] as? NSNumber)?.int64Value else { throw LabError(.transport, "queue.add: no run in \(String(describing: entry))") }
                let (end, state) = try ends.wait(run)
                guard state == .completed else { throw LabError(.invalidFile, "bench run \(run) ended \(state.rawValue)") }
                if index > 0 {  // the first is a warm-up
                    acknowledged.append(Self.seconds(replied - began))
                    completed.append(Self.seconds(end - began))
                }
            }
            // Held by not_before, so that the 1,000 do not run meanwhile; the queue grows by 1,000 per call.
            let batch = ["items": (0..<1000).map { _ in Self.item(notBefore: Self.farFuture) }]
            var many: [Double] = []
            for _ in 0..<max(5, queuedRuns / 10) {
                let began = ContinuousClock.now
                let entries = try client.call("queue.add_many", batch) as? [Any]
                many.append(Self.seconds(ContinuousClock.now - began))
                guard entries?.count == 1000 else { throw LabError(.transport, "queue.add_many answered \(entries?.count ?? 0) entries") }
            }
            return (acknowledged, completed, many)
        }
        (figures.queueAdd, figures.queuedRun, figures.addMany) = samples
        await daemon.scheduler.stopObserving(token)
        server.stop()
        await daemon.shutDown(by: "bench")
    }

    /// Run ends by entry, as the scheduler's observer hands them over, waited for by the client thread.
    final class Ends: Sendable {
        private let condition = NSCondition()
        private nonisolated(unsafe) var ends: [Int64: (ContinuousClock.Instant, QueueState)] = [:]

        func record(_ id: Int64, _ state: QueueState) {
            let now = ContinuousClock.now
            condition.lock(); defer { condition.unlock() }
            ends[id] = (now, state)
            condition.broadcast()
        }

        func wait(_ id: Int64, timeout: Double = 60) throws -> (ContinuousClock.Instant, QueueState) {
            let deadline = Date(timeIntervalSinceNow: timeout)
            condition.lock(); defer { condition.unlock() }
            while ends[id] == nil {
                guard condition.wait(until: deadline) else { throw LabError(.timeout, "run \(id) did not end within \(Int(timeout)) s") }
            }
            return ends.removeValue(forKey: id)!
        }
    }

    // MARK: (d) resident memory of a `serendip serve` child

    func residentMemory(_ figures: inout Figures) throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        serve.arguments = ["serve", "--lab", lab, "--data", directory]
        serve.standardOutput = FileHandle.nullDevice
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer {
            if serve.isRunning { kill(serve.processIdentifier, SIGTERM) }
            serve.waitUntilExit()
        }
        let socket = directory + "/serendip.sock"
        let client = try RPCClient.waiting(for: socket, while: { serve.isRunning })
        _ = try client.call("server.info", [:])
        Thread.sleep(forTimeInterval: 2)  // idle: whatever starting up allocated has settled
        (figures.idleRSS, figures.idleAnonymous) = try Self.residentBytes(serve.processIdentifier)
        let batch = ["items": (0..<1000).map { _ in Self.item(notBefore: Self.farFuture) }]
        for _ in 0..<(heldRuns / 1000) { _ = try client.call("queue.add_many", batch) }
        figures.held = heldRuns / 1000 * 1000
        Thread.sleep(forTimeInterval: 2)  // the background estimates of the held runs
        (figures.heldRSS, figures.heldAnonymous) = try Self.residentBytes(serve.processIdentifier)
    }

    /// VmRSS and RssAnon of a process, in bytes.
    static func residentBytes(_ pid: Int32) throws -> (Double, Double) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func bytes(_ field: String) throws -> Double {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
                  let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
                throw LabError(.transport, "no \(field) in /proc/\(pid)/status")
            }
            return kib * 1024
        }
        return (try bytes("VmRSS"), try bytes("RssAnon"))
    }

    // MARK: Helpers

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs blocking socket I/O on a thread of its own, off the cooperative pool the daemon's runs use.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}

/// A blocking JSON-RPC client on the daemon's Unix socket: one request, then its reply line.
final class RPCClient: @unchecked Sendable {  // used by one thread at a time
    private let fd: Int32
    private var pending: [UInt8] = []
    private var nextID = 0

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // deinit closes fd, even after this throw: closing it here too would be a double close.
        guard connected == 0 else { throw LabError(.transport, "cannot connect to \(path)") }
    }

    deinit { close(fd) }

    /// Connects once the daemon has made its socket, for at most a minute.
    static func waiting(for path: String, while alive: () -> Bool) throws -> RPCClient {
        let deadline = Date(timeIntervalSinceNow: 60)
        while true {
            if let client = try? RPCClient(path) { return client }
            guard alive(), Date() < deadline else { throw LabError(.transport, "the daemon did not open \(path)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    func call(_ method: String, _ params: Any) throws -> Any {
        nextID += 1
        var line = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": nextID, "method": method, "params": params])
        line.append(UInt8(ascii: "\n"))
        try line.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw LabError(.transport, "\(method): the daemon closed the connection") }
                sent += n
            }
        }
        let reply = try JSONSerialization.jsonObject(with: Data(try readLine(method))) as? [String: Any]
        if let error = reply?["error"] { throw LabError(.transport, "\(method) failed: \(error)") }
        return reply?["result"] ?? NSNull()
    }

    private func readLine(_ method: String) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeSubrange(...newline) }
                return Array(pending[..<newline])
            }
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { throw LabError(.transport, "\(method): no reply") }
            pending += chunk[..<n]
        }
    }
}
