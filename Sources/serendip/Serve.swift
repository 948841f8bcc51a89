import ArgumentParser
import Foundation
import LabDaemon

/// `serendip serve`: the daemon of one lab and one data directory, answering the client commands
/// on DIR/serendip.sock until SIGINT or SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the lab's daemon: its queue, campaigns and instruments, served on DIR/serendip.sock.",
        discussion: """
            Only one daemon may use a data directory at a time. SIGINT or SIGTERM stops it safely: the runs \
            in progress are aborted ('finally', then every instrument's safe state) and it exits with status 0.
            """)

    @Option(help: ArgumentHelp("The lab config: its instruments and driver files.", valueName: "LAB.yaml"))
    var lab: String

    @OptionGroup var data: DataDirectory

    func validate() throws {
        guard FileManager.default.fileExists(atPath: lab) else { throw ValidationError("no lab config at \(lab)") }
    }

    func run() async throws {
        let daemon = try await Daemon(Daemon.Options(labPath: lab, dataDirectory: data.path))
        _ = daemon
        // waits for Daemon.run()
        // try await daemon.run()
    }
}
