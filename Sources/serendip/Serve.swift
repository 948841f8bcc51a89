import ArgumentParser
import Foundation
import Glibc
import LabDaemon

/// `serendip serve`: the daemon of one lab and one data directory, answering the client commands
/// on DIR/serendip.sock until SIGINT or SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the lab's daemon: its instruments, the queue, campaigns and the socket API.",
        discussion: """
            The data directory (created if missing) holds the database (serendip.sqlite), the socket \
            (serendip.sock) and the lock that keeps a second daemon out. SIGTERM or Ctrl-C stops it safely: \
            no new run starts, running runs pause at their next checkpoint (or where they are after \
            --checkpoint-wait), every instrument goes to its safe state, and it exits 0. A second signal halts the runs \
            (safe states, no 'finally'). A paused run is not resumed by the next daemon: it is recorded as interrupted.
            """)

    @Option(help: ArgumentHelp("The lab config: its instruments and how each is connected.", valueName: "LAB.yaml"))
    var lab: String

    @OptionGroup var data: DataDirectory

    @Option(help: ArgumentHelp("On SIGTERM, how long a running run may go on to its next checkpoint before it is paused where it is.",
                               valueName: "seconds"))
    var checkpointWait: Double = 10

    func validate() throws {
        guard FileManager.default.fileExists(atPath: lab) else { throw ValidationError("no lab config at \(lab)") }
        try Self.validate(checkpointWait: checkpointWait)
    }

    static func validate(checkpointWait: Double) throws {
        guard checkpointWait.isFinite, (0...25).contains(checkpointWait) else {
            throw ValidationError("--checkpoint-wait must be from 0 to 25 seconds: a stop must end within 30 s")
        }
    }

    func run() async throws {
        // A file-size limit (ulimit -f) must make a write fail, to be handled like a full disk
        // (the runs pause, their instruments safe), not kill the process with SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)
        let daemon = try await Daemon(Daemon.Options(labPath: lab, dataDirectory: data.path, checkpointWait: checkpointWait))
        try await daemon.run()
    }
}
