import Foundation
import GRDB
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Synchronization
import Testing

/// `serendip serve` killed with SIGKILL at random moments while a client keeps submitting runs and
/// runs keep measuring a real Modbus reactor that outlives it. After every restart the database is
/// intact, the queue holds exactly what was acknowledged, each reading is stored once and is one the
/// device served, and what was running is interrupted after its reactor was made safe.
/// SERENDIP_KILL_POINTS sets the number of kills (`make soak`: 200); SERENDIP_KILL_SEED draws the same delays again.
@Suite(.serialized) struct DaemonCrashTests {
    /// Measurements a completed run of `probe` stores: 3 passes of 5 readings.
    static let readingsPerRun = 15
    static let readingsPerStep = 5

    @Test func aDaemonKilledAtRandomMomentsLosesNothingItAcknowledgedAndDuplicatesNothing() async throws {
        let points = ProcessInfo.processInfo.environment["SERENDIP_KILL_POINTS"].flatMap(Int.init) ?? 20
        let seed = ProcessInfo.processInfo.environment["SERENDIP_KILL_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64.max)
        print("DaemonCrashTests: \(points) kill points, seed \(seed) (the same delays again: SERENDIP_KILL_SEED=\(seed))")
        var random = SplitMix64(seed: seed)
        let reactor = RecordingReactor()
        let device = try ModbusSimulator(spec: try DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml")), model: reactor)
        defer { device.stop() }
        let lab = try CrashLab(port: device.port)
        let submitter = Submitter(socket: lab.socket, protocolPath: lab.protocolPath, protocolText: lab.protocolText, seed: seed &+ 1)
        defer { submitter.stop() }

        var unverified = KillSnapshot()
        var storedUnanswered = 0   // queued by a daemon killed before its reply went out
        for point in 1...points {
            let daemon = try lab.serve(point)
            defer { if daemon.process.isRunning { daemon.signal(SIGKILL) } }
            // Now and then the kill lands while the restart is still recovering.
            let duringStartup = point > 1 && Double.random(in: 0..<1, using: &random) < 0.15
            if duringStartup {
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...300, using: &random)))
            } else {
                try await lab.waitUntilServing(daemon)
                if point > 1 {
                    let problems = try lab.verify(unverified, reactor: reactor, submitted: submitter.state)
                    #expect(problems.isEmpty, "after kill \(point - 1) (seed \(seed)):\n\(problems.joined(separator: "\n"))\n\((try? daemon.output()) ?? "")")
                    guard problems.isEmpty else { return }
                    unverified = KillSnapshot()
                }
                submitter.resume()
                try await Task.sleep(for: .milliseconds(Int.random(in: 30...1500, using: &random)))
            }
            daemon.signal(SIGKILL)
            _ = try await daemon.exitStatus()
            submitter.pause()
            // A request the killed daemon sent reaches the device before this read is answered
            // (one server thread, requests in the order they arrived), so later writes are the restart's.
            _ = try await ModbusTCPClient(.init(host: "127.0.0.1", port: device.port)).readRegisters(.holding, address: 100, count: 2)
            let crashed = try lab.snapshot(writes: reactor.writes.count, unanswered: submitter.state.unanswered)
            storedUnanswered += crashed.storedUnanswered
            #expect(crashed.integrity == ["ok"], "integrity of the killed daemon's database (seed \(seed)): \(crashed.integrity)")
            unverified.merge(crashed)
        }
        let daemon = try lab.serve(points + 1)
        defer { if daemon.process.isRunning { daemon.signal(SIGKILL) } }
        try await lab.waitUntilServing(daemon)
        let problems = try lab.verify(unverified, reactor: reactor, submitted: submitter.state)
        #expect(problems.isEmpty, "after the last kill (seed \(seed)):\n\(problems.joined(separator: "\n"))")
        let state = submitter.state
        print("DaemonCrashTests: \(state.acknowledged.count) acknowledged submissions, \(state.retried) sent again after a kill "
              + "(\(storedUnanswered) of them had been queued); "
              + "runs \(try lab.count("run")), queue \(try lab.count("queue_entry")) in \(lab.directory.path)")
        #expect(state.acknowledged.count >= points, "the client got submissions through between kills")
        #expect(state.errors.isEmpty, "unexpected error replies: \(state.errors.prefix(5))")
    }
}

/// A lab of one Modbus reactor run by the test, a short measuring protocol, and a data directory.
struct CrashLab {
    let directory: URL
    let labPath: String
    let protocolPath: String
    let protocolText = """
        serendip: 1
        name: probe
        instruments: { reactor: thermo-reactor }
        parameters:
          temperature: { type: real, unit: degC, range: [30, 60] }
        steps:
          - set: reactor.setpoint
            to: $temperature
          - set: reactor.stirrer
            to: true
          - repeat: 3
            steps:
              - measure: { channel: reactor.temperature, as: t, repeat: 5, every: 0.02 s }
              - hold: 30 ms
        """
    var data: String { directory.appendingPathComponent("data").path }
    var database: String { data + "/serendip.sqlite" }
    var socket: String { data + "/serendip.sock" }

    init(port: Int) throws {
        directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
        labPath = directory.appendingPathComponent("lab.yaml").path
        protocolPath = directory.appendingPathComponent("probe.yaml").path
        try """
            lab: crash-test
            instruments:
              reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), modbus: { host: 127.0.0.1, port: \(port) } }
            simulation: { speed: 1 }
            """.write(toFile: labPath, atomically: true, encoding: .utf8)
        try protocolText.write(toFile: protocolPath, atomically: true, encoding: .utf8)
    }

    func serve(_ point: Int) throws -> Child {
        try Child(["serve", "--lab", labPath, "--data", data], output: directory.appendingPathComponent("serve-\(point).txt"))
    }

    /// Waits until the daemon answers `server.info`: its restart recovery is done by then.
    func waitUntilServing(_ daemon: Child) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            guard daemon.process.isRunning else { throw LabError(.transport, "serendip serve exited:\n\((try? daemon.output()) ?? "")") }
            if let reply = try? exchange(socket, #"{"jsonrpc":"2.0","id":1,"method":"server.info"}"#), reply["result"] != nil { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw LabError(.timeout, "serendip serve did not answer within a minute:\n\((try? daemon.output()) ?? "")")
    }

    private func read<T>(_ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        return try DatabaseQueue(path: database, configuration: configuration).read(body)
    }

    /// How many rows of `table` are in each state, for the test's summary.
    func count(_ table: String) throws -> [String: Int] {
        try read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM \(table) GROUP BY state").map { ($0["state"], $0["n"]) })
        }
    }

    /// What the database holds right after a kill, with the daemon dead.
    func snapshot(writes: Int, unanswered: [String]) throws -> KillSnapshot {
        guard FileManager.default.fileExists(atPath: database) else { return KillSnapshot() }
        return try read { db in
            let running = Set(try Int64.fetchAll(db, sql: "SELECT id FROM run WHERE state = 'running'"))
            return KillSnapshot(
                integrity: try String.fetchAll(db, sql: "PRAGMA integrity_check"),
                runningRuns: running,
                runningEntries: Set(try Int64.fetchAll(db, sql: "SELECT id FROM queue_entry WHERE state = 'running'")),
                queuedManual: Set(try Int64.fetchAll(db, sql: "SELECT id FROM queue_entry WHERE state = 'queued' AND autostart = 0")),
                writesBeforeRestart: running.isEmpty ? nil : writes,
                storedUnanswered: try unanswered.filter {
                    try Bool.fetchOne(db, sql: "SELECT 1 FROM queue_entry WHERE request_id = ?", arguments: [$0]) ?? false
                }.count)
        }
    }

    /// Everything the issue asks of a restart, checked in the database (read-only) and over the socket.
    func verify(_ killed: KillSnapshot, reactor: RecordingReactor, submitted: Submitter.State) throws -> [String] {
        var problems: [String] = []
        let served = reactor.served
        try read { db in
            let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            if integrity != ["ok"] { problems.append("integrity_check: \(integrity)") }

            var entries: [String: [(id: Int64, state: String)]] = [:]
            var entryState: [Int64: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, request_id, state FROM queue_entry") {
                let id: Int64 = row["id"], state: String = row["state"]
                entryState[id] = state
                guard let key: String = row["request_id"] else { problems.append("entry \(id) has no request id"); continue }
                entries[key, default: []].append((id, state))
            }
            for (key, found) in entries where found.count > 1 { problems.append("request \(key) queued \(found.count) times: \(found)") }
            for (key, run) in submitted.acknowledged {
                guard let found = entries[key] else { problems.append("acknowledged request \(key) (run \(run)) is not in the queue"); continue }
                if found.first?.id != run { problems.append("acknowledged request \(key) was run \(run), the queue has \(found)") }
            }
            for key in entries.keys where submitted.acknowledged[key] == nil && !submitted.unanswered.contains(key) {
                problems.append("request \(key) is queued but was never submitted")
            }

            var runState: [Int64: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, state, error FROM run") {
                let id: Int64 = row["id"], state: String = row["state"]
                runState[id] = state
                if state == "failed" || state == "aborted" { problems.append("run \(id) \(state): \(row["error"] as String? ?? "")") }
                if let entry = entryState[id], entry != state, state != "running" {
                    problems.append("run \(id) is \(state) but its queue entry is \(entry)")
                }
            }
            for run in killed.runningRuns where runState[run] != "interrupted" {
                problems.append("run \(run) was running at the kill and is now \(runState[run] ?? "missing"), not interrupted")
            }
            for id in killed.runningEntries.union(killed.runningRuns) where entryState[id] != "interrupted" {
                problems.append("queue entry \(id) was running at the kill and is now \(entryState[id] ?? "missing"), not interrupted")
            }
            for id in killed.queuedManual where entryState[id] != "held" {
                problems.append("queue entry \(id) was queued (no autostart) at the kill and is now \(entryState[id] ?? "missing"), not held")
            }

            var seen: [Double: Int64] = [:]
            var counts: [Int64: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT run_id, value FROM measurement") {
                let run: Int64 = row["run_id"], value: Double = row["value"]
                counts[run, default: 0] += 1
                if let other = seen.updateValue(run, forKey: value) { problems.append("reading \(value) stored twice (runs \(other) and \(run))") }
                if !served.contains(value) { problems.append("run \(run) stored \(value), which the reactor never served") }
            }
            for (run, state) in runState where state == "completed" && counts[run, default: 0] != DaemonCrashTests.readingsPerRun {
                problems.append("completed run \(run) has \(counts[run, default: 0]) readings, not \(DaemonCrashTests.readingsPerRun)")
            }
            // A measure step's readings are stored in one transaction: a kill keeps all of them or none.
            for (run, count) in counts where count % DaemonCrashTests.readingsPerStep != 0 {
                problems.append("run \(run) (\(runState[run] ?? "?")) has \(count) readings, not whole steps of \(DaemonCrashTests.readingsPerStep)")
            }
        }

        // The reactor was made safe before any new run wrote to it.
        if let start = killed.writesBeforeRestart {
            let since = reactor.writes.dropFirst(start)
            let beforeNewRun = since.prefix { $0 == Write("setpoint", 25) || $0 == Write("stirrer", 0) }
            if !(beforeNewRun.contains(Write("setpoint", 25)) && beforeNewRun.contains(Write("stirrer", 0))) {
                problems.append("after the restart the reactor got \(Array(since.prefix(6))) — not its safe state first")
            }
        }

        // The daemon itself reports the same.
        let client = try SocketClient(socket, timeout: 30)
        func state(_ run: Int64) throws -> String {
            client.send(#"{"jsonrpc":"2.0","id":\#(run),"method":"queue.get","params":{"run":\#(run)}}"# + "\n")
            let reply = try client.reply()
            return ((reply["result"] as? [String: Any])?["state"] as? String) ?? "error \(errorMessage(reply))"
        }
        for run in killed.runningEntries.union(killed.runningRuns).sorted() {
            let now = try state(run)
            if now != "interrupted" { problems.append("queue.get \(run): \(now), not interrupted") }
        }
        for run in killed.queuedManual.sorted() {
            let now = try state(run)
            if now != "held" { problems.append("queue.get \(run): \(now), not held") }
        }
        return problems
    }
}

/// What the kills since the last verified restart left to check.
struct KillSnapshot {
    var integrity: [String] = ["ok"]
    var runningRuns: Set<Int64> = []
    var runningEntries: Set<Int64> = []
    var queuedManual: Set<Int64> = []
    /// The device's write count at the first such kill with a run running: the safe state must follow it.
    var writesBeforeRestart: Int?
    /// Submissions without a reply that the killed daemon had queued (for the summary).
    var storedUnanswered = 0

    /// A kill during a restart's recovery: what either kill left must be true after the next restart.
    mutating func merge(_ later: KillSnapshot) {
        runningRuns.formUnion(later.runningRuns)
        runningEntries.formUnion(later.runningEntries)
        queuedManual.formUnion(later.queuedManual)
        writesBeforeRestart = writesBeforeRestart ?? later.writesBeforeRestart
    }
}

/// A reactor whose every temperature reading is a new value (exact in float32), remembering each
/// value served and each write received, in order.
final class RecordingReactor: DeviceModel {
    private struct Log { var next = 1000.0; var served: Set<Double> = []; var writes: [Write] = [] }
    private let log = Mutex(Log())
    var served: Set<Double> { log.withLock { $0.served } }
    var writes: [Write] { log.withLock { $0.writes } }

    func value(of channel: String) throws -> Double {
        log.withLock { log in
            log.next += 1
            log.served.insert(log.next)
            return log.next
        }
    }

    func didWrite(_ channel: String, _ value: Double) { log.withLock { $0.writes.append(Write(channel, value)) } }
}

/// A client that submits runs one after another on its own thread, each with a request id, and
/// remembers which were acknowledged; a submission whose reply never came is sent again with the
/// same id once the daemon is back.
final class Submitter: Sendable {
    struct State: Sendable {
        var acknowledged: [String: Int64] = [:]
        /// Sent, no reply yet: may or may not be queued.
        var unanswered: [String] = []
        var parameters: [String: (temperature: Double, autostart: Bool)] = [:]
        var next = 0
        var retried = 0
        var errors: [String] = []
        var paused = true
        var busy = false
        var stopped = false
    }

    private let shared = Mutex(State())
    private let socket: String
    private let protocolPath: String
    private let protocolText: String
    private let finished = DispatchSemaphore(value: 0)

    var state: State { shared.withLock { $0 } }

    init(socket: String, protocolPath: String, protocolText: String, seed: UInt64) {
        self.socket = socket; self.protocolPath = protocolPath; self.protocolText = protocolText
        let thread = Thread { [self] in
            var random = SplitMix64(seed: seed)
            submitting(&random)
            finished.signal()
        }
        thread.start()
    }

    func resume() { shared.withLock { $0.paused = false } }

    /// Returns once no submission is in flight.
    func pause() {
        shared.withLock { $0.paused = true }
        while shared.withLock({ $0.busy }) { usleep(1000) }
    }

    func stop() {
        shared.withLock { $0.stopped = true }
        finished.wait()
    }

    private func submitting(_ random: inout SplitMix64) {
        var client: SocketClient?
        while true {
            let job: String? = shared.withLock { s in
                if s.stopped || s.paused { return nil }
                s.busy = true
                if let retry = s.unanswered.first { s.retried += 1; return retry }
                s.next += 1
                let key = "submission-\(s.next)"
                s.parameters[key] = (Double(Int.random(in: 30...60, using: &random)), Int.random(in: 0..<4, using: &random) == 0)
                return key
            }
            guard let key = job else {
                client = nil
                if shared.withLock({ $0.stopped }) { return }
                usleep(2000)
                continue
            }
            if client == nil { client = try? SocketClient(socket, timeout: 30) }
            let reply = client.flatMap { client in
                client.send(request(key)) > 0 ? try? client.reply() : nil
            }
            shared.withLock { s in
                if let result = reply?["result"] as? [String: Any], let run = result["run"] as? Int {
                    s.acknowledged[key] = Int64(run)
                    s.unanswered.removeAll { $0 == key }
                } else {
                    if let reply { s.errors.append("\(key): \(reply)") }
                    if !s.unanswered.contains(key) { s.unanswered.append(key) }
                }
                s.busy = false
            }
            if reply == nil { client = nil }
            usleep(UInt32.random(in: 20_000...80_000, using: &random))
        }
    }

    private func request(_ key: String) -> String {
        let (temperature, autostart) = shared.withLock { $0.parameters[key]! }
        let request: [String: Any] = [
            "jsonrpc": "2.0", "id": 1, "method": "queue.add",
            "params": [
                "protocol": ["path": protocolPath, "text": protocolText],
                "parameters": ["temperature": ["value": temperature, "unit": "degC"]],
                "request_id": key, "autostart": autostart,
            ] as [String: Any],
        ]
        return String(decoding: try! JSONSerialization.data(withJSONObject: request), as: UTF8.self) + "\n"
    }
}
