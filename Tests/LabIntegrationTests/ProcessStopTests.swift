import Foundation
import GRDB
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabStorage
import Synchronization
import Testing

/// `serendip demo` (a client that starts `serendip serve`) as a real child process, stopped the ways
/// a lab stops it: Ctrl-C, SIGTERM twice, kill -9 of the daemon and a restart.
@Suite(.serialized) struct ProcessStopTests {
    /// A lab with one reactor, a protocol that holds it hot for hours, and a two-point sweep over it.
    struct Setup {
        let directory: URL
        var data: String { directory.appendingPathComponent("data").path }
        var database: String { data + "/serendip.sqlite" }
        var socket: String { data + "/serendip.sock" }
        /// The daemon's process, as its lock file names it.
        var daemon: Int32? {
            (try? String(contentsOfFile: database + ".lock", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        var campaign: String { directory.appendingPathComponent("campaign.yaml").path }

        init(finally: String, reactor: String = "simulate: true", speed: Double = 3000) throws {
            directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
            let files = [
                "lab.yaml": """
                    lab: stop-test
                    instruments:
                      reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), \(reactor) }
                    simulation: { speed: \(speed) }
                    """,
                "hot.yaml": """
                    serendip: 1
                    name: hot
                    instruments: { reactor: thermo-reactor }
                    parameters:
                      temperature: { type: real, unit: degC, range: [30, 60] }
                    steps:
                      - set: reactor.setpoint
                        to: $temperature
                      - set: reactor.stirrer
                        to: true
                      - hold: 10 h
                    finally:
                    \(finally)
                    """,
                "campaign.yaml": """
                    serendip: 1
                    campaign: stop-test
                    protocol: hot.yaml
                    lab: lab.yaml
                    sweep:
                      vary:
                        temperature: [40 degC, 50 degC]
                    """,
            ]
            for (name, text) in files {
                try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
            }
        }

        func demo(checkpointWait: Double = 2) throws -> Child {
            try Child(["demo", "--campaign", campaign, "--data", data, "--checkpoint-wait", String(checkpointWait)],
                      output: directory.appendingPathComponent("out-\(UUID()).txt"))
        }

        /// Run 1's events, read without writing (the child owns the database); none while it is being created.
        func events() -> [(kind: String, message: String)] {
            var configuration = Configuration()
            configuration.readonly = true
            guard let queue = try? DatabaseQueue(path: database, configuration: configuration) else { return [] }
            return (try? queue.read { db in
                try Row.fetchAll(db, sql: "SELECT kind, message FROM run_event WHERE run_id = 1 ORDER BY id").map { ($0["kind"], $0["message"]) }
            }) ?? []
        }
    }

    /// The run's queue entry as the stopped daemon left it.
    static func entry(_ database: String) throws -> (state: String, note: String?) {
        var configuration = Configuration()
        configuration.readonly = true
        return try DatabaseQueue(path: database, configuration: configuration).read { db in
            let row = try #require(try Row.fetchOne(db, sql: "SELECT state, note FROM queue_entry WHERE run_id = 1"))
            return (row["state"], row["note"])
        }
    }

    @Test func ctrlCPausesTheRunWithItsInstrumentsSafeAndExitsWithTheSignal() async throws {
        let setup = try Setup(finally: "  - set: reactor.setpoint\n    to: 26 degC")
        let child = try setup.demo()
        try await waitFor(seconds: 60) { setup.events().contains { $0.message == "reactor.stirrer = true" } }
        child.signal(SIGINT)
        #expect(try await child.exitStatus() == 128 + SIGINT)
        // The demo passes the stop on to its daemon as SIGTERM: the record names the demo as the sender.
        let entry = try Self.entry(setup.database)
        #expect(entry.state == "paused")
        #expect(entry.note?.hasPrefix("the daemon is stopping (SIGTERM from process \(child.pid) (user ") == true, "\(entry.note ?? "no note")")
        let events = setup.events()
        // No checkpoint came within the wait: the run was paused where it was, not aborted.
        #expect(events.contains { $0.kind == "transition" && $0.message.hasPrefix("running → pausing: SIGTERM from process \(child.pid)") })
        #expect(events.contains { $0.kind == "transition" && $0.message.hasPrefix("pausing → paused(shutdown)") })
        #expect(events.contains { $0.kind == "safeState" && $0.message == "reactor in safe state (paused)" })
        #expect(!events.contains { $0.message == "reactor.setpoint = 26.0 degC" }, "a pause does not run 'finally'")
        #expect(try LabDatabase(path: setup.database).runs().count == 1, "no run may start after the signal")
        #expect(!FileManager.default.fileExists(atPath: setup.socket), "the socket file is removed")
        let output = try child.output()
        #expect(output.contains("temperature"), "the header was printed before the stop")
        #expect(output.contains("Stopped by SIGINT from process \(getpid())"))
    }

    @Test func aSecondSigtermHaltsThePausingRunSkippingFinallyButCommandingTheSafeState() async throws {
        let setup = try Setup(finally: "  - log: cooling down\n  - set: reactor.setpoint\n    to: 26 degC")
        // The run must still be pausing when the second signal comes, however busy the machine.
        let child = try setup.demo(checkpointWait: 10)
        try await waitFor(seconds: 60) { setup.events().contains { $0.message == "reactor.stirrer = true" } }
        child.signal(SIGTERM)
        try await waitFor { setup.events().contains { $0.kind == "transition" && $0.message.hasPrefix("running → pausing") } }
        child.signal(SIGTERM)
        #expect(try await child.exitStatus() == 128 + SIGTERM)
        let events = setup.events()
        #expect(events.contains { $0.message.hasPrefix("finally skipped: halted by SIGTERM") })
        #expect(!events.contains { $0.message == "cooling down" })
        #expect(events.contains { $0.kind == "safeState" && $0.message == "reactor in safe state" })
        let run = try #require(try LabDatabase(path: setup.database).run(1))
        #expect(run.state == "aborted")
        #expect(run.error?.hasPrefix("halted by SIGTERM") == true, "\(run.error ?? "no error")")
    }

    @Test func aRestartAfterKillMinus9CommandsTheSafeStateBeforeAnythingElse() async throws {
        // The reactor is a Modbus device outside the daemon, so it keeps its state across the kill.
        let spec = try DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml"))
        let device = WriteLog()
        let simulator = try ModbusSimulator(spec: spec, model: device)
        defer { simulator.stop() }
        let setup = try Setup(finally: "  - log: done", reactor: "modbus: { host: 127.0.0.1, port: \(simulator.port) }", speed: 1)
        let first = try setup.demo()
        try await waitFor { device.writes.contains { $0 == Write("stirrer", 1) } }
        // The daemon dies: no finally, no safe state. The demo, its client, then ends too.
        kill(try #require(setup.daemon), SIGKILL)
        _ = try await first.exitStatus()
        let before = device.writes.count
        let second = try setup.demo()
        defer { second.signal(SIGTERM) }
        try await waitFor { device.writes.count >= before + 3 }
        let after = Array(device.writes[before...].prefix(3))
        #expect(Set(after.prefix(2)) == [Write("setpoint", 25), Write("stirrer", 0)], "the safe state comes first: \(after)")
        #expect(after[2] == Write("setpoint", 40), "then the new run: \(after)")
        let database = try LabDatabase(path: setup.database)
        #expect(try database.run(1)?.state == "interrupted")
        #expect(try database.run(1)?.error == "interrupted: the process running it stopped without ending it (killed or crashed); its instruments were sent to their safe state on restart")
        #expect(try database.events(run: 1).contains { $0.message == "after a restart: reactor in safe state" })
    }

    @Test func aSweepWithoutAnObjectivePrintsEachRunsOutcome() async throws {
        let database = Repository.temporaryDatabase()
        let child = try Child(["demo", "--campaign", Repository.path("examples/toy-lab/screen-grid.yaml"), "--budget", "2",
                               "--data", database + ".data"], output: URL(fileURLWithPath: database + ".out"))
        #expect(try await child.exitStatus() == 0)
        let lines = try child.output().split(separator: "\n")
        #expect(lines.contains { $0.contains("temperature") && $0.contains("residence") && $0.contains("outcome") })
        #expect(lines.filter { $0.contains("completed") && $0.contains("sweep point") }.count == 2)
        #expect(!lines.contains { $0.contains("failed") })
    }

    @Test func aCampaignInWhichNoRunCompletedExitsNonZero() async throws {
        let setup = try Setup(finally: "  - log: done")
        // Out of the protocol's range at run time: every run fails before touching the reactor.
        let campaign = try String(contentsOfFile: setup.campaign, encoding: .utf8)
            .replacingOccurrences(of: "hot.yaml", with: "fails.yaml")
        try campaign.write(toFile: setup.campaign, atomically: true, encoding: .utf8)
        try """
            serendip: 1
            name: fails
            instruments: { reactor: thermo-reactor }
            parameters:
              temperature: { type: real, unit: degC, range: [30, 60] }
            steps:
              - wait_until: { channel: reactor.temperature, within: 0.1 degC, of: 140 degC, timeout: 1 min }
            """.write(to: setup.directory.appendingPathComponent("fails.yaml"), atomically: true, encoding: .utf8)
        let child = try setup.demo()
        #expect(try await child.exitStatus() == 1)
        let output = try child.output()
        #expect(output.contains("No run completed"))
        #expect(output.components(separatedBy: "failed").count - 1 >= 2)
    }
}

/// A `serendip` child process with its standard output in a file.
struct Child {
    let process = Process()
    let outputFile: URL

    /// The serendip built beside this test bundle.
    static var executable: URL {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("serendip")
        return FileManager.default.isExecutableFile(atPath: beside.path) ? beside : URL(fileURLWithPath: Repository.path(".build/debug/serendip"))
    }

    init(_ arguments: [String], output: URL, directory: URL? = nil) throws {
        outputFile = output
        FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = Self.executable
        process.arguments = arguments
        process.currentDirectoryURL = directory ?? Repository.root
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        // The child has its own copy. The parent's would stay open as long as the Process object
        // lives: hundreds of them at once pushed the test process past 1,024 descriptors, where
        // libmodbus's select() can no longer wait on an RTU port.
        try? handle.close()
    }

    var pid: Int32 { process.processIdentifier }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits (up to a minute) for the process to end.
    func exitStatus() async throws -> Int32 {
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                signal(SIGKILL)
                throw LabError(.timeout, "serendip \(process.arguments ?? []) did not exit; output:\n\(try output())")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    func output() throws -> String { try String(contentsOf: outputFile, encoding: .utf8) }
}

struct Write: Hashable, CustomStringConvertible {
    var channel: String
    var value: Double
    init(_ channel: String, _ value: Double) { self.channel = channel; self.value = value }
    var description: String { "\(channel)=\(value)" }
}

/// A device that remembers every write it received, in order.
final class WriteLog: DeviceModel {
    private let log = Mutex<[Write]>([])
    var writes: [Write] { log.withLock { $0 } }
    func value(of channel: String) throws -> Double { 20 }
    func didWrite(_ channel: String, _ value: Double) { log.withLock { $0.append(Write(channel, value)) } }
}
