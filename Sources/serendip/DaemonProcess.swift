import Foundation
import Glibc
import Synchronization

/// A `serendip serve` started by this process (the demo's daemon): its log goes to a file in the
/// data directory; stopping it sends SIGTERM (the daemon's safe stop) and waits for it to exit.
final class DaemonProcess: Sendable {
    let data: String
    let log: String
    private let process: Process

    init(lab: String, data: String, checkpointWait: Double) throws {
        self.data = data
        log = data + "/serve.log"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        _ = FileManager.default.createFile(atPath: log, contents: nil, attributes: [.posixPermissions: 0o600])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["serve", "--lab", lab, "--data", data, "--checkpoint-wait", String(checkpointWait)]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardError = process.standardOutput
        try process.run()
        self.process = process
    }

    /// Waits until the daemon answers on its socket (or has died, with its log's last lines).
    func ready() async throws(ClientFailure) {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
                throw ClientFailure("the daemon did not start:\n\(tail)", status: 1)
            }
            if (try? DaemonClient(directory: data, timeout: .seconds(2)).call("server.info", ClientOptions.Empty())) != nil { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        throw ClientFailure("the daemon did not answer within 30 s; see \(log)", status: 1)
    }

    /// How many SIGTERMs were sent: the daemon reads a second one as "skip 'finally'".
    private let sent = Atomic<Int>(0)

    /// Passes a stop request on: SIGTERM (a second one makes the daemon skip 'finally').
    func forward() {
        guard process.isRunning else { return }
        sent.add(1, ordering: .relaxed)
        kill(process.processIdentifier, SIGTERM)
    }

    /// Stops the daemon safely (unless a stop was passed on already) and waits for it.
    func stop() {
        guard process.isRunning else { return }
        if sent.load(ordering: .relaxed) == 0 { forward() }
        process.waitUntilExit()
    }
}
