import Foundation
import LabPlanner
import Testing

/// The JSON-lines planner (`serendip planner --stdio`), driven the way bo_peers.py drives it.
@Suite struct PlannerSessionTests {
    static func json(_ line: String?) throws -> [String: Any] {
        let text = try #require(line)
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func theDocumentedConversationGetsTheDocumentedReplies() throws {
        let doc = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/planner.md"), encoding: .utf8)
        let block = try #require(doc.components(separatedBy: "```jsonl\n").dropFirst().first?.components(separatedBy: "```").first)
        var session = PlannerSession()
        var replies: [[String: Any]] = []
        for line in block.split(separator: "\n") {
            if let reply = session.reply(to: String(line)) { replies.append(try Self.json(reply)) }
        }
        #expect(session.finished)
        #expect(replies.count == 5)
        #expect(replies[0]["ok"] as? Bool == true && replies[2]["ok"] as? Bool == true && replies[4]["ok"] as? Bool == true)
        let x = try #require(replies[1]["x"] as? [Double])
        #expect(x.count == 2 && (-5...10).contains(x[0]) && (0...15).contains(x[1]))
        let xs = try #require(replies[3]["xs"] as? [[Double]])
        #expect(xs.count == 2 && xs[0] != xs[1])
    }

    @Test func aBadRequestGetsAnErrorAndTheSessionCarriesOn() throws {
        var session = PlannerSession()
        #expect(try Self.json(session.reply(to: #"{"op":"ask"}"#))["error"] as? String == "send init first")
        #expect(try Self.json(session.reply(to: "not json"))["error"] != nil)
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[1,0]]}"#))["error"] != nil)
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[0,1]],"n_init":2}"#))["ok"] as? Bool == true)
        #expect(try Self.json(session.reply(to: #"{"op":"tell","x":[0.5,0.5],"y":1}"#))["error"] != nil)
        #expect(try Self.json(session.reply(to: #"{"op":"fly"}"#))["error"] != nil)
        // A minimisation: told 1.0 at 0.2 and 3.0 at 0.9, later proposals leave 0.9 alone.
        for (x, y) in [(0.2, 1.0), (0.9, 3.0), (0.5, 2.0)] {
            #expect(try Self.json(session.reply(to: #"{"op":"tell","x":[\#(x)],"y":\#(y)}"#))["ok"] as? Bool == true)
        }
        let reply = try Self.json(session.reply(to: #"{"op":"ask"}"#))
        let next = try #require(reply["x"] as? [Double])
        #expect(next[0] < 0.7)
    }
}
