import Foundation
import Glibc
import Testing

/// The client commands as a person runs them: the built `serendip` as a child process.
@Suite struct ClientCommandTests {
    /// Runs `serendip ARGUMENTS` to its end; its exit status and what it printed (both streams).
    static func serendip(_ arguments: [String], in directory: URL? = nil) async throws -> (status: Int32, output: String) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-client-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let child = try Child(arguments, output: scratch, directory: directory)
        let status = try await child.exitStatus()
        return (status, try child.output())
    }

    static func emptyDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.path
    }

    @Test func aClientWithNoDaemonInItsDataDirectorySaysHowToStartOneAndExits3() async throws {
        let empty = try Self.emptyDirectory()
        let (status, output) = try await Self.serendip(["queue", "--data", empty])
        #expect(status == 3)
        #expect(output == "no Serendip daemon is running in \(empty) (start one with: serendip serve --lab LAB --data \(empty))\n")
    }

    @Test func aDataDirectoryThatDoesNotExistIsReportedTheSameWay() async throws {
        let missing = "/tmp/serendip-missing-\(UUID().uuidString)"
        let (status, output) = try await Self.serendip(["status", "4", "--data", missing, "--json"])
        #expect(status == 3)
        #expect(output.hasPrefix("no Serendip daemon is running in \(missing)"))
    }

    @Test func aClientCommandWithoutADataDirectorySaysHowToGiveOne() async throws {
        let (status, output) = try await Self.serendip(["queue"])
        #expect(status == 64)
        #expect(output.contains("--data DIR, or set SERENDIP_DATA=DIR"))
    }

    @Test func submitReportsAParameterTheProtocolDoesNotHaveBeforeAskingAnyDaemon() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "reactor-yield", "--param", "temprature=80 degC", "--data", try Self.emptyDirectory()])
        #expect(status == 1)
        #expect(output.contains("--param temprature: reactor-yield has no parameter 'temprature' (it has: "))
    }

    @Test func submitReportsAValueOfTheWrongKindBeforeAskingAnyDaemon() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "protocols/reactor-yield.yaml", "--param", "temperature=5 min", "--data", try Self.emptyDirectory()])
        #expect(status == 1)
        #expect(output.hasPrefix("--param temperature=5 min: "))
    }

    @Test func submitOfAProtocolNameWithNoFileNamesWhereItLooked() async throws {
        let (status, output) = try await Self.serendip(["submit", "no-such-protocol", "--data", try Self.emptyDirectory()])
        #expect(status == 2)
        #expect(output.contains("no protocol file no-such-protocol nor protocols/no-such-protocol.yaml in "))
    }

    @Test func anUnreadableStartTimeIsRefusedWithTheFormsItTakes() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "reactor-yield", "--not-before", "soon", "--data", try Self.emptyDirectory()])
        #expect(status == 64)
        #expect(output.contains("--not-before soon: write an ISO 8601 time with a zone"))
    }
}
