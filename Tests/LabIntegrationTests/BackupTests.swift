import Foundation
import GRDB
import LabCore
import LabStorage
import Synchronization
import Testing

@Suite struct BackupTests {
    static let stepsPerRun = 5, readingsPerStep = 4

    /// A daemon's writer: runs of whole steps, one after another, through group commit, until stopped.
    /// `completed` holds the runs whose end has committed.
    final class Writer: Sendable {
        let completed = Mutex<[Int64]>([])
        let stop = Atomic<Bool>(false)

        func run(_ database: LabDatabase) async throws {
            let source = SourceText(path: "protocols/backup.yaml", text: "name: backup", sha256: String(repeating: "0", count: 64))
            while !stop.load(ordering: .relaxed) {
                let run = try await database.beginRun(RunStart(
                    campaignID: nil, protocolName: "backup", protocolSource: source, parameters: [], chosenBy: "user", proposalID: nil,
                    instruments: [:], operatorName: "test", softwareVersion: "test", startedAt: Date(), startedMonotonic: 0))
                for step in 0..<BackupTests.stepsPerRun {
                    try await database.record((0..<BackupTests.readingsPerStep).map { i in
                        MeasurementRecord(stepIndex: step, channel: ChannelRef(instrument: "reactor", channel: "temperature"),
                                          instrument: "reactor-1", series: "reactor.temperature", value: Double(i) + 0.1, unit: "degC",
                                          wallTime: Date(), monotonicTime: Double(step))
                    }, run: run)
                }
                try await database.finishRun(run, outcome: .completed, outputs: [:], error: nil)
                completed.withLock { $0.append(run) }
            }
        }
    }

    @Test func aBackupTakenWhileRunsAreWrittenIsWholeAndHoldsEveryRunCommittedBeforeIt() async throws {
        let directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let writer = Writer()
        let writing = Task { try await writer.run(database) }
        // Wait on a condition, not a time: a few runs committed before the backup begins.
        while writer.completed.withLock({ $0.count }) < 3 { try await Task.sleep(for: .milliseconds(10)) }
        let committedBefore = writer.completed.withLock { $0 }
        let file = try ClientCommandTests.emptyDirectory() + "/copy.sqlite"
        let (status, output) = try await ClientCommandTests.serendip(["backup", "--to", file, "--data", directory])
        writer.stop.store(true, ordering: .relaxed)
        try await writing.value
        #expect(status == 0, "\(output)")
        #expect(output == "backed up \(directory)/serendip.sqlite to \(file)\n")

        let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: (file as NSString).deletingLastPathComponent) == ["copy.sqlite"],
                "no temporary file is left beside the backup")
        let copy = try DatabaseQueue(path: file)
        try await copy.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            let completed = try Int64.fetchSet(db, sql: "SELECT id FROM run WHERE state = 'completed'")
            #expect(completed.isSuperset(of: committedBefore), "every run committed before the backup began is in it, completed")
            let stepSizes = try Int.fetchSet(db, sql: "SELECT COUNT(*) FROM measurement GROUP BY run_id, step_index")
            #expect(stepSizes == [Self.readingsPerStep], "no partial step")
            let completedSteps = try Int.fetchSet(db, sql: """
                SELECT COUNT(DISTINCT step_index) FROM measurement JOIN run ON run.id = run_id WHERE state = 'completed' GROUP BY run_id
                """)
            #expect(completedSteps == [Self.stepsPerRun], "a completed run has all its steps")
        }
        try copy.close()
    }

    @Test func aBackupRefusesToReplaceAFileUnlessForcedAndNeverTheDatabaseItself() async throws {
        let directory = try ClientCommandTests.emptyDirectory()
        try LabDatabase(path: directory + "/serendip.sqlite").pool.close()
        let file = try ClientCommandTests.emptyDirectory() + "/copy.sqlite"
        try "keep me".write(toFile: file, atomically: false, encoding: .utf8)
        let refused = try await ClientCommandTests.serendip(["backup", "--to", file, "--data", directory])
        #expect(refused.status == 1)
        #expect(refused.output == "\(file) exists: give --force to replace it, or choose another file\n")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me")
        let itself = try await ClientCommandTests.serendip(["backup", "--to", directory + "/./serendip.sqlite", "--force", "--data", directory])
        #expect(itself.status == 1)
        #expect(itself.output == "\(directory)/./serendip.sqlite is the database itself: back it up to another file\n")
        // A directory, or a path into no directory, is named for what it is (not errno, not a temporary file's name).
        let folder = try ClientCommandTests.emptyDirectory()
        let intoFolder = try await ClientCommandTests.serendip(["backup", "--to", folder, "--force", "--data", directory])
        #expect(intoFolder.output == "\(folder) is a directory: give the backup's file name, such as \(folder)/serendip-backup.sqlite\n")
        let nowhere = try await ClientCommandTests.serendip(["backup", "--to", "/nonexistent-\(UUID())/x.sqlite", "--data", directory])
        #expect(nowhere.status == 1 && nowhere.output.contains(": there is no directory /nonexistent-"), "\(nowhere.output)")
        let forced = try await ClientCommandTests.serendip(["backup", "--to", file, "--force", "--data", directory])
        #expect(forced.status == 0, "\(forced.output)")
        let copy = try DatabaseQueue(path: file)
        let check = try await copy.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") }
        #expect(check == "ok")
        try copy.close()
    }
}
