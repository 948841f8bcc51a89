import Foundation
import GRDB
import LabCore
@testable import LabStorage
import Testing

/// The writer formats a reading's wall time per second and appends the milliseconds; the text must
/// be exactly what the formatter gives, or times would sort and read differently row to row.
@Suite struct TimestampTests {
    @Test func theFastTimestampsAreTheFormattersTextForEveryMillisecondAndAtRandom() {
        var fast = Timestamps()
        var random = SystemRandomNumberGenerator()
        let base = 1_796_037_295.0
        let times = (0..<2000).map { base + Double($0) / 1000 } + (0..<20_000).map { _ in Double.random(in: 0...4e9, using: &random) }
        let differing = times.filter { fast.text(Date(timeIntervalSince1970: $0)) != LabDatabase.timestamp(Date(timeIntervalSince1970: $0)) }
        #expect(differing.isEmpty, "\(differing.prefix(3).map { ($0, LabDatabase.timestamp(Date(timeIntervalSince1970: $0))) })")
    }
}

/// The -wal file stays bounded: a reader holding an old snapshot lets it grow, and once that reader
/// lets go the next commit checkpoints and truncates it.
@Suite struct WALBoundTests {
    @Test func theWALIsTruncatedAfterTheCommitThatFollowsAReaderLettingGo() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let writer = GroupCommit(pool: database.pool, walLimit: 1 << 20)
        let source = SourceText(path: "t.yaml", text: "", sha256: "")
        let run = try await database.beginRun(RunStart(campaignID: nil, protocolName: "t", protocolSource: source, parameters: [],
                                                       chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "t",
                                                       softwareVersion: "t", startedAt: Date(), startedMonotonic: 0))
        let rows = (0..<10_000).map {
            MeasurementRecord(stepIndex: 1, channel: ChannelRef(instrument: "daq", channel: "v"), instrument: "daq", series: "v",
                              value: Double($0), unit: "V", wallTime: Date(), monotonicTime: Double($0))
        }
        // A reader in the middle of a long read: its snapshot keeps every later page in the WAL.
        let reading = DispatchSemaphore(value: 0), letGo = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread {
            try? database.pool.read { db in
                _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM measurement")
                reading.signal()
                letGo.wait()
            }
            done.signal()
        }.start()
        reading.wait()
        for _ in 0..<4 { try await writer.append(.measurements(run: run, rows)); try await writer.flush() }
        let wal = database.path + "-wal"
        #expect(try Self.size(wal) > 1 << 20, "the reader's snapshot keeps the WAL from being checkpointed")
        letGo.signal()
        done.wait()   // its read transaction has ended
        try await writer.append(.measurements(run: run, Array(rows.prefix(10))))
        try await writer.flush()
        #expect(try Self.size(wal) <= 1 << 20)
        let stored = try await database.pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM measurement") }
        #expect(stored == 40_010)
    }

    static func size(_ path: String) throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
    }
}

/// The data directory must be on a local disk: SQLite's locks do not hold over NFS, SMB or sshfs.
@Suite struct LocalFilesystemTests {
    static let mountinfo = """
        22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
        40 22 0:35 / /mnt/lab rw,relatime shared:20 - nfs4 fileserver:/export/lab rw,vers=4.2
        41 40 0:36 / /mnt/lab/scratch rw,relatime shared:21 - tmpfs tmpfs rw
        42 22 0:37 / /home/ada/remote\\040box rw,nosuid - fuse.sshfs ada@box:/data rw
        43 22 0:38 / /mnt/labnotes rw - ext4 /dev/sdb1 rw
        """

    @Test(arguments: [("/mnt/lab/runs", "nfs4"), ("/mnt/lab", "nfs4"), ("/mnt/lab/scratch/x", "tmpfs"), ("/mnt/labnotes/x", "ext4"),
                      ("/home/ada/remote box/data", "fuse.sshfs"), ("/var/lib/serendip", "ext4")])
    func theDeepestMountPointAboveAPathGivesItsType(path: String, type: String) {
        #expect(LocalFilesystem.type(of: path, mountinfo: Self.mountinfo) == type)
    }

    @Test func networkFilesystemsAreRemoteAndLocalOnesAreNot() {
        #expect(["nfs", "nfs4", "cifs", "fuse.sshfs", "9p"].allSatisfy(LocalFilesystem.isRemote))
        #expect(!["ext4", "xfs", "tmpfs", "btrfs", "overlay", "fuse.bindfs"].contains(where: LocalFilesystem.isRemote))
    }

    @Test func theTestsOwnTemporaryDirectoryIsAcceptedForADatabaseLock() throws {
        let lock = try DatabaseLock(database: Repository.temporaryDatabase())
        withExtendedLifetime(lock) {}
    }
}

/// The CSV encoder writes SQLite's columns straight into bytes; fields that need quoting are quoted
/// as RFC 4180 says, and numbers keep their shortest exact form.
@Suite struct CSVEncodingTests {
    @Test func fieldsWithCommasQuotesAndLineBreaksAreQuotedAndNumbersExact() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let source = SourceText(path: "t.yaml", text: "", sha256: "")
        let run = try await database.beginRun(RunStart(campaignID: nil, protocolName: "t", protocolSource: source, parameters: [],
                                                       chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "t",
                                                       softwareVersion: "t", startedAt: Date(), startedMonotonic: 0))
        let time = Date(timeIntervalSince1970: 1_796_037_295.25)
        try await database.record([
            MeasurementRecord(stepIndex: 3, channel: ChannelRef(instrument: "role,1", channel: "v\"x"), instrument: "daq", series: "a\nb",
                              value: 0.1 + 0.2, unit: "V", wallTime: time, monotonicTime: -1e-300),
            MeasurementRecord(stepIndex: 12, channel: ChannelRef(instrument: "r", channel: "c"), instrument: "daq", series: "s",
                              value: -42, unit: "mL/min", wallTime: time, monotonicTime: 1e21),
        ], run: run)
        try await database.flush()
        var bytes: [UInt8] = []
        try database.writeReadingsCSV(run: run) { bytes.append(contentsOf: $0) }
        #expect(String(decoding: bytes, as: UTF8.self) == """
            \(run),3,daq,"role,1","v""x","a
            b",0.30000000000000004,V,2026-11-30T11:14:55.250Z,-1e-300
            \(run),12,daq,r,c,s,-42.0,mL/min,2026-11-30T11:14:55.250Z,1e+21

            """)
    }
}
