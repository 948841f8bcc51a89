import Foundation
import Glibc
@testable import LabPlanner
import Testing

/// `serendip planner --stdio` reads its requests through `RequestLines`, from a real file here.
@Suite struct RequestLinesTests {
    static func lines(of content: [UInt8], limit: Int = PlannerRequest.Limits.lineBytes) throws -> [RequestLines.Line] {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(content)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let descriptor = open(path, O_RDONLY)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var reader = RequestLines(descriptor: descriptor, limit: limit)
        var result: [RequestLines.Line] = []
        while let line = reader.next() { result.append(line) }
        return result
    }

    /// A line past the limit (spread over many reads) is dropped and reported by its size; the lines
    /// after it are read as usual, CRLF and a last line without a newline included.
    @Test func aLineTooLongIsDroppedAndTheNextOnesAreRead() throws {
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: 3 * PlannerRequest.Limits.lineBytes)
        let rest = Array("{\"op\":\"ask\"}\r\n\nlast".utf8)
        #expect(try Self.lines(of: long + [10] + rest) == [.tooLong(bytes: long.count), .text(#"{"op":"ask"}"#), .text(""), .text("last")])
        // Exactly at the limit is a line; one byte more is not.
        #expect(try Self.lines(of: Array("0123456789\n01234567890\nok\n".utf8), limit: 10) == [.text("0123456789"), .tooLong(bytes: 11), .text("ok")])
        #expect(try Self.lines(of: []) == [])
    }

    /// The session answers a line that was too long with an error and carries on.
    @Test func theSessionRefusesALineTooLongAndCarriesOn() throws {
        var session = PlannerSession()
        let answer = session.reply(to: RequestLines.Line.tooLong(bytes: 5_000_000))
        let refusal = try #require(answer)
        #expect(refusal.contains("a request line is at most 1048576 bytes, and this one had 5000000"))
        #expect(session.reply(to: RequestLines.Line.text(#"{"op":"init","bounds":[[0,1]]}"#)) == #"{"ok":true}"#)
    }
}
