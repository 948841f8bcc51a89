import ArgumentParser
import Foundation
import LabDaemon
import Logging

/// `serendip serve`: the daemon.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the lab's daemon: its instruments, the queue, campaigns and the socket API.",
        discussion: """
            The data directory holds the database (serendip.sqlite), the socket (serendip.sock) and the lock \
            that keeps a second daemon out. SIGTERM or Ctrl-C stops it safely: running runs are aborted \
            ('finally', then the safe states) and it exits 0; a second signal skips 'finally'.
            """)

    @Option(help: "The lab config: its instruments and how each is connected.")
    var lab: String

    @Option(help: "The data directory (created if missing).")
    var data: String

    func run() async throws {
        let daemon = try await Daemon(Daemon.Options(labPath: lab, dataDirectory: data))
        try await daemon.run()
    }
}
