import ArgumentParser
import Foundation
import LabDaemon

/// `serendip serve`: the daemon of one lab and one data directory, answering the client commands
/// on DIR/serendip.sock until SIGINT or SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the lab's daemon: its instruments, the queue, campaigns and the socket API.",
        discussion: """
            The data directory (created if missing) holds the database (serendip.sqlite), the socket \
            (serendip.sock) and the lock that keeps a second daemon out. SIGTERM or Ctrl-C stops it safely: \
            running runs are aborted ('finally', then the safe states) and it exits 0; a second signal skips 'finally'.
            """)

    @Option(help: ArgumentHelp("The lab config: its instruments and how each is connected.", valueName: "LAB.yaml"))
    var lab: String

    @OptionGroup var data: DataDirectory

    func validate() throws {
        guard FileManager.default.fileExists(atPath: lab) else { throw ValidationError("no lab config at \(lab)") }
    }

    func run() async throws {
        let daemon = try await Daemon(Daemon.Options(labPath: lab, dataDirectory: data.path))
        try await daemon.run()
    }
}
