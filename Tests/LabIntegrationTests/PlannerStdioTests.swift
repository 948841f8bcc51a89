import Foundation
import Testing

/// The real `serendip planner --stdio` child, fed every bad input of issue 15 line by line the way a
/// client in another language would: each line gets one reply, and the planner keeps working.
@Suite struct PlannerStdioTests {
    /// Each request, and whether it must be refused.
    static let conversation: [(line: String, refused: Bool)] = [
        (#"{"op":"init","dim":2,"bounds":[[-5,10],[0,15]],"budget":30,"n_init":2,"seed":1}"#, false),
        (#"{"op":"tell","x":[1,2],"y":30.5}"#, false),
        (#"{"op":"tell","x":[7.5,12],"y":80.25}"#, false),
        (#"{"op":"tell","x":[1,1],"y":"abc"}"#, true),
        (#"{"op":"tell","x":[1,1],"y":"1.5"}"#, true),
        (#"{"op":"tell","x":[1,1],"y":true}"#, true),
        (#"{"op":"tell","x":[11,1],"y":3}"#, true),
        ("", true),
        (#"{"op":"tell","x":[1,1],"y":1e155}"#, true),
        (#"{"op":"tell","x":[1,1],"y":3,"noise":-1}"#, true),
        (#"{"op":"tell","x":[1,1],"y":NaN}"#, true),
        (#"{"op":"init","bounds":[[0,1]],"n_init":1000000000}"#, true),
        (#"{"op":"init","bounds":[[0,1]],"n_init":10000000}"#, true),
        (#"{"op":"init","bounds":[[0,1]],"budget":-1}"#, true),
        (#"{"op":"init","bounds":[[0,1]],"seed":-1}"#, true),
        (#"{"op":"ask","op":"done"}"#, true),
        (#"{"op":"ask","note":""# + String(repeating: "a", count: 2 << 20) + #""}"#, true),  // past 1 MiB
        (#"{"op":"ask"}"#, false),
        (#"{"op":"tell","x":[3,4],"y":13}"#, false),
        (#"{"op":"ask","n":2}"#, false),
    ]

    @Test func everyBadLineGetsAnErrorReplyAndThePlannerCarriesOn() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("planner-stdio-\(UUID()).txt")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process(), input = Pipe()
        process.executableURL = Child.executable
        process.arguments = ["planner", "--stdio"]
        process.standardInput = input
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        try process.run()
        try? handle.close()
        // After done nothing more is read: the last line gets no reply.
        let lines = Self.conversation.map(\.line) + [#"{"op":"done"}"#, #"{"op":"ask"}"#]
        try input.fileHandleForWriting.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
        try input.fileHandleForWriting.close()
        let deadline = ContinuousClock.now + .seconds(120)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        #expect(process.terminationStatus == 0)

        let replies = try String(contentsOf: output, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        try #require(replies.count == Self.conversation.count, "\(replies.count) replies to \(Self.conversation.count) requests:\n\(replies.joined(separator: "\n"))")
        for (request, reply) in zip(Self.conversation, replies) {
            let json = try #require(JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])
            #expect((json["error"] != nil) == request.refused, "\(request.line) -> \(reply)")
        }
        #expect(replies.last?.contains(#""xs":[["#) == true)
    }

    /// A client that stops reading ends the session: the planner does not go on answering nobody.
    @Test func aClosedStandardOutputEndsThePlannerWithStatus74() async throws {
        let process = Process(), input = Pipe(), output = Pipe()
        process.executableURL = Child.executable
        process.arguments = ["planner", "--stdio"]
        (process.standardInput, process.standardOutput, process.standardError) = (input, output, FileHandle.nullDevice)
        try process.run()
        try output.fileHandleForReading.close()
        try? output.fileHandleForWriting.close()
        try input.fileHandleForWriting.write(contentsOf: Data(#"{"op":"init","bounds":[[0,1]]}"#.utf8 + [10]))
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        try? input.fileHandleForWriting.close()
        #expect(process.terminationStatus == 74)
    }
}
