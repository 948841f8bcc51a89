import Foundation
import GRDB
import Glibc
import LabStorage
import Testing

/// A data directory beside a lab of one simulated Modbus reactor and a protocol that streams its
/// temperature: `passes` steps of `readings` each, after a checkpoint.
struct StreamingLab {
    let directory: URL
    var data: String { directory.appendingPathComponent("data").path }
    var labFile: String { directory.appendingPathComponent("lab.yaml").path }
    var protocolFile: String { directory.appendingPathComponent("stream.yaml").path }

    init(passes: Int, readings: Int) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-stream-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: directory.appendingPathComponent("data").path, withIntermediateDirectories: true)
        try """
            lab: streaming
            instruments:
              reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), simulate: true }
            simulation: { speed: 3000 }
            """.write(toFile: labFile, atomically: true, encoding: .utf8)
        try """
            serendip: 1
            name: stream
            instruments: { reactor: thermo-reactor }
            steps:
              - checkpoint: start
              - repeat: \(passes)
                steps:
                  - measure: { channel: reactor.temperature, as: t, repeat: \(readings), every: 1 s }
            """.write(toFile: protocolFile, atomically: true, encoding: .utf8)
    }

    func client(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await ClientCommandTests.serendip(arguments + ["--data", data])
    }
}

/// `serendip serve` whose files may not grow past a limit (prlimit --fsize, as a full disk looks to
/// SQLite): the run that cannot store its data pauses, the daemon stays up and keeps what it had
/// committed, and once the limit is lifted (room made) the resumed run completes.
@Suite(.serialized) struct DiskFullTests {
    @Test func aRunWhoseDataCannotBeStoredPausesAndCompletesOnceThereIsRoom() async throws {
        // About 3 MB of readings, in steps of 2,000; the daemon's files may not pass 1.5 MB (a soft
        // limit: as the owner of the process, the test may lift it again).
        let lab = try StreamingLab(passes: 15, readings: 2000)
        let (data, protocolFile, directory) = (lab.data, lab.protocolFile, lab.directory)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        daemon.arguments = ["--fsize=1500000:unlimited", "--", Child.executable.path, "serve", "--lab", lab.labFile, "--data", data]
        let log = directory.appendingPathComponent("serve.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        daemon.standardError = try FileHandle(forWritingTo: log)
        try daemon.run()
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
        let client = lab.client
        try await waitFor(seconds: 60) { try await client(["queue"]).status == 0 }

        #expect(try await client(["submit", protocolFile]).status == 0)
        var status = ""
        try await waitFor(seconds: 60) {
            status = try await client(["status", "1"]).output
            return status.contains("paused")
        }
        #expect(status.contains("cannot store the run's data"), "\(status)")
        #expect(status.contains("a full disk, a file-size limit or a failing disk"), "\(status)")
        #expect(daemon.isRunning, "a full disk must not stop the daemon")

        // Room is made: the limit is lifted from the running daemon, and a person resumes the run.
        let raise = Process()
        raise.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        raise.arguments = ["--pid", String(daemon.processIdentifier), "--fsize=unlimited:unlimited"]
        try raise.run()
        raise.waitUntilExit()
        #expect(try await client(["resume", "1"]).status == 0)
        try await waitFor(seconds: 60) { try await client(["status", "1"]).output.contains("completed") }

        kill(daemon.processIdentifier, SIGTERM)
        // Polled, not waitUntilExit(): a test must not hold one of the two cooperative threads for seconds.
        try await waitFor(seconds: 60) { !daemon.isRunning }
        let database = try DatabaseQueue(path: data + "/serendip.sqlite")
        try await database.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            // No partial step: every step's readings were stored whole, 2,000 at a time, and all 15 steps are there.
            let readings = try Int.fetchOne(db, sql: "SELECT count(*) FROM measurement WHERE run_id = 1") ?? 0
            #expect(readings % 2000 == 0 && readings >= 30_000, "\(readings) readings")
            #expect(try String.fetchOne(db, sql: "SELECT state FROM run WHERE id = 1") == "completed")
        }
    }
}

/// kill -9 of a daemon while a high-rate instrument streams: what was committed is whole (no step
/// with part of its readings) and the database passes its integrity check.
@Suite(.serialized) struct HeavyWritingCrashTests {
    @Test func aKillDuringHeavyWritingLeavesNoPartialStep() async throws {
        let lab = try StreamingLab(passes: 100, readings: 500)
        let (data, protocolFile, directory) = (lab.data, lab.protocolFile, lab.directory)
        let daemon = try Child(["serve", "--lab", lab.labFile, "--data", data],
                               output: directory.appendingPathComponent("serve.log"))
        defer { daemon.signal(SIGKILL) }
        let client = lab.client
        try await waitFor(seconds: 60) { try await client(["queue"]).status == 0 }
        #expect(try await client(["submit", protocolFile]).status == 0)
        let database = data + "/serendip.sqlite"
        func stored() throws -> Int {
            var configuration = Configuration()
            configuration.readonly = true
            return try DatabaseQueue(path: database, configuration: configuration).read {
                try Int.fetchOne($0, sql: "SELECT count(*) FROM measurement") ?? 0
            }
        }
        // Several steps committed, and the run still streaming: then the process dies.
        try await waitFor(seconds: 60) { ((try? stored()) ?? 0) >= 3000 }
        daemon.signal(SIGKILL)
        _ = try await daemon.exitStatus()
        let queue = try DatabaseQueue(path: database)
        try await queue.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            // Every pass of the loop is one step of 500 readings, committed whole or not at all.
            let readings = try Int.fetchOne(db, sql: "SELECT count(*) FROM measurement") ?? 0
            #expect(readings >= 3000 && readings % 500 == 0, "\(readings) readings")
            #expect(try String.fetchOne(db, sql: "SELECT state FROM run WHERE id = 1") == "running", "killed before it ended")
        }
    }
}
