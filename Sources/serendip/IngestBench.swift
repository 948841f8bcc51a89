import Foundation
import Glibc
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging

/// Issue 14's write-path figures, side by side with the raw C baseline (`sqlite_ingest.c` from the
/// peers folder) on the same disk. Our side is a high-rate instrument streamed through the engine
/// and the writer: one `measure` of `rows` readings from an in-process instrument on a virtual
/// clock, timed until the run's `completed` state is committed (so every row is durable). The peer
/// inserts the same number of rows of its `text` shape (run, step, channel name, time, value and a
/// JSON metadata string; ours carry ten columns, five of them text) in 2,000-row transactions with
/// the same settings as the daemon's database: WAL, synchronous=FULL, one index. The two alternate
/// over `rounds` rounds, because this machine's disk and CPU are shared and their speed swings.
struct IngestBench {
    var rows: Int
    var rounds: Int
    /// A folder on the disk to measure (the build folder: where the daemon's data would live in a checkout).
    var directory: String
    var peerSource: String

    struct Figures {
        var ours: [Double] = []
        var peer: [Double] = []
        var ratios: [Double] = []
        /// The largest -wal file seen while our side wrote, in bytes.
        var walPeak = 0
        var exportSeconds: [Double] = []
    }

    func measure() async throws -> Figures {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let peer = try buildPeer()
        let config = try LabConfig.load(path: "examples/toy-lab/lab.yaml")
        let definition = try ProtocolParser.parse(protocolText, path: "bench-ingest.yaml", drivers: config.drivers)
        var figures = Figures()
        for round in 0..<rounds {
            // Alternate who goes first, so neither side always meets the disk just after the other.
            var ours = 0.0, theirs = 0.0
            if round % 2 == 0 {
                ours = try await runOurs(definition, config, &figures)
                theirs = try runPeer(peer)
            } else {
                theirs = try runPeer(peer)
                ours = try await runOurs(definition, config, &figures)
            }
            figures.ours.append(ours)
            figures.peer.append(theirs)
            figures.ratios.append(ours / theirs)
        }
        return figures
    }

    /// Blocks of 10,000 readings (a `measure` repeats at most that often): each block is one step,
    /// committed whole.
    static let block = 10_000
    static func readings(for rows: Int) -> Int { max(1, (rows + block - 1) / block) * block }
    var readings: Int { Self.readings(for: rows) }
    var blocks: Int { readings / Self.block }

    private var protocolText: String { Self.streaming(name: "bench-ingest", channel: "absorbance", blocks: blocks, of: Self.block) }

    /// A photometer's channel read `blocks` × `block` times, each block one step.
    static func streaming(name: String, channel: String, blocks: Int, of block: Int) -> String {
        """
        serendip: 1
        name: \(name)
        instruments: { spectro: uv-vis }
        steps:
          - set: spectro.lamp
            to: true
          - repeat: \(blocks)
            steps:
              - measure: { channel: spectro.\(channel), as: \(channel), repeat: \(block), every: 1 ms }

        """
    }

    /// Our side's data directory: the export reads it as `--data`.
    private var data: String { directory + "/ours" }
    private var database: String { data + "/serendip.sqlite" }

    /// Rows per second through the engine and the writer, until the run's end is committed.
    private func runOurs(_ definition: ProtocolDefinition, _ config: LabConfig, _ figures: inout Figures) async throws -> Double {
        try? FileManager.default.removeItem(atPath: data)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let recorder = try LabDatabase(path: database)
        let wal = WALWatch(path: database + "-wal")
        let timed = try await DaemonBench.timedRun(definition, config, recorder: recorder)
        figures.walPeak = max(figures.walPeak, wal.stop())
        let (result, elapsed) = (timed.result, timed.seconds)
        figures.exportSeconds.append(try timeExport(run: result.runID))
        return Double(readings) / elapsed
    }

    /// `serendip export RUN --format csv` of the run just stored, as its user would run it.
    private func timeExport(run: Int64) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["export", "\(run)", "--format", "csv", "--out", directory + "/export.csv", "--data", data]
        let began = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw LabError(.internalError, "serendip export failed (status \(process.terminationStatus))") }
        return DaemonBench.seconds(ContinuousClock.now - began)
    }

    /// Rows per second of the C baseline, as it reports them.
    private func runPeer(_ executable: String) throws -> Double {
        let fields = try PeerProcess.fields(executable, ["rows", directory + "/peer.sqlite", "text", "2000", "FULL", "WAL", "1", "600", String(readings)])
        guard let count = fields["rows"], let seconds = fields["seconds"], seconds > 0 else {
            throw LabError(.internalError, "the C baseline printed \(fields)")
        }
        return count / seconds
    }

    /// Compiles the peer once (gcc and libsqlite3-dev, which `make` installs).
    private func buildPeer() throws -> String {
        let executable = directory + "/sqlite_ingest_c"
        guard !FileManager.default.isExecutableFile(atPath: executable) else { return executable }
        guard FileManager.default.fileExists(atPath: peerSource) else {
            throw LabError(.invalidFile, "no \(peerSource): pass --peers DIR (the folder with sqlite_ingest.c)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["cc", "-O2", "-o", executable, peerSource, "-lsqlite3"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw LabError(.internalError, "cannot compile \(peerSource) with cc") }
        return executable
    }
}

/// Samples a file's size every few milliseconds on a thread of its own; `stop()` returns the largest.
private final class WALWatch: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var peak = 0
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)

    init(path: String) {
        self.path = path
        Thread { [self] in
            while !lock.withLock({ stopping }) {
                var info = stat()
                if stat(path, &info) == 0 { lock.withLock { peak = max(peak, Int(info.st_size)) } }
                usleep(2_000)
            }
            done.signal()
        }.start()
    }

    func stop() -> Int {
        lock.withLock { stopping = true }
        done.wait()
        return lock.withLock { peak }
    }
}
