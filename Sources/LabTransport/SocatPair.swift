import Foundation
import Glibc
import LabCore

/// Two pseudo-terminals joined by socat, as a null-modem cable joins two serial ports.
public struct SocatPair: Sendable {
    let process: Process
    public let directory: String
    public var serverSide: String { directory + "/server" }
    public var clientSide: String { directory + "/client" }

    /// Waits (without holding a thread of the test's pool) until both ends exist.
    public static func start() async throws -> SocatPair {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-socat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        process.arguments = ["pty,raw,echo=0,link=\(directory)/server", "pty,raw,echo=0,link=\(directory)/client"]
        try process.run()
        let pair = SocatPair(process: process, directory: directory)
        let deadline = Date().addingTimeInterval(20)
        while !(FileManager.default.fileExists(atPath: pair.serverSide) && FileManager.default.fileExists(atPath: pair.clientSide)) {
            guard Date() < deadline else {
                pair.stop()
                throw LabError(.transport, "socat made no pty pair within 20 s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return pair
    }

    public func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
