import Foundation
@testable import LabPlanner
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

    /// Drives a session: `asks` single asks, each told `f` of its point, then one ask for `batch`
    /// points; every reply must be a proposal. Points go back as the text they came in, as a client
    /// that parses doubles exactly sends them, or (`exactly` false) as Foundation's JSON parser reads
    /// them, which can be an ulp off: in a range of 10¹² to 10¹² + 1, 10⁻⁴ of it.
    static func campaign(_ session: inout PlannerSession, asks: Int, batch: Int, exactly: Bool = true,
                         _ f: ([Double]) -> Double) throws -> [[Double]] {
        var told: [[Double]] = []
        for _ in 0..<asks {
            let line = session.reply(to: #"{"op":"ask"}"#)
            let reply = try #require(line)
            let text = try #require(reply.firstMatch(of: /"x":(\[[^\]]*\])/)?.1, "\(reply)")
            let x = try #require(Self.json(reply)["x"] as? [Double])
            let tell = try Self.json(session.reply(to: #"{"op":"tell","x":\#(exactly ? String(text) : "\(x)"),"y":\#(f(x))}"#))
            #expect(tell["ok"] as? Bool == true, "\(tell)")
            told.append(x)
        }
        let line = session.reply(to: #"{"op":"ask","n":\#(batch)}"#)
        let reply = try #require(line)
        let points = reply.matches(of: /\[[^\[\]]*\]/).map { String($0.0) }
        #expect(points.count == batch && Set(points).count == batch, "\(reply)")
        return told
    }

    /// Results that never change fit length scales longer than the space, and a batch kept a tenth
    /// of a length scale apart has no room: the batch comes anyway, its points only distinct.
    @Test func aBatchIsProposedWhenTheResultsNeverChange() throws {
        var session = PlannerSession()
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[-5,10],[0,15]]}"#))["ok"] as? Bool == true)
        _ = try Self.campaign(&session, asks: 15, batch: 20) { _ in 3 }
        var oneDimension = PlannerSession()
        #expect(try Self.json(oneDimension.reply(to: #"{"op":"init","bounds":[[0,1]]}"#))["ok"] as? Bool == true)
        _ = try Self.campaign(&oneDimension, asks: 20, batch: 40) { x in (x[0] - 0.3) * (x[0] - 0.3) }
    }

    /// A point asked for on a bound that comes back rounded a hair past it answers it, taken at the
    /// bound; a hair past a bound where nothing was asked is still refused.
    @Test func aPointOnABoundToldBackRoundedPastItIsTakenAtTheBound() throws {
        var session = PlannerSession()
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[0.12345,0.98765]],"n_init":3}"#))["ok"] as? Bool == true)
        var onBound: Double?
        for _ in 0..<20 where onBound == nil {
            let x = try #require(Self.json(session.reply(to: #"{"op":"ask"}"#))["x"] as? [Double])
            if x[0] == 0.12345 { onBound = x[0]; break }
            #expect(try Self.json(session.reply(to: #"{"op":"tell","x":\#(x),"y":\#(x[0])}"#))["ok"] as? Bool == true)
        }
        try #require(onBound != nil, "never proposed the lower bound of a result that falls towards it")
        let refused = try Self.json(session.reply(to: #"{"op":"tell","x":[0.11],"y":0.11}"#))
        #expect((refused["error"] as? String)?.contains("x[0] is 0.11, outside its bounds") == true, "\(refused)")
        #expect(try Self.json(session.reply(to: #"{"op":"tell","x":[0.1234],"y":0.1234}"#))["ok"] as? Bool == true)
        #expect(session.planner?.pending.isEmpty == true)
        #expect(session.planner?.observations.last?.x == [0])
        // Nothing is pending now: the same hair past the bound is refused.
        #expect(try Self.json(session.reply(to: #"{"op":"tell","x":[0.1234],"y":0.1234}"#))["error"] != nil)
    }

    /// docs/planner.md: a large batch asked for in parts gives the same points as one ask.
    @Test func aBatchAskedForInPartsIsTheSameBatch() throws {
        func session() throws -> PlannerSession {
            var session = PlannerSession()
            #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[-5,10],[0,15]],"n_init":3}"#))["ok"] as? Bool == true)
            for x in [[1.0, 2.0], [7.5, 12.0], [-3.0, 9.0], [4.0, 4.0], [0.5, 14.0]] {
                #expect(try Self.json(session.reply(to: #"{"op":"tell","x":\#(x),"y":\#(x[0] * x[0] + x[1])}"#))["ok"] as? Bool == true)
            }
            return session
        }
        var whole = try session(), parts = try session()
        let batch = try #require(Self.json(whole.reply(to: #"{"op":"ask","n":6}"#))["xs"] as? [[Double]])
        var asked: [[Double]] = []
        for _ in 0..<3 { asked += try #require(Self.json(parts.reply(to: #"{"op":"ask","n":2}"#))["xs"] as? [[Double]]) }
        #expect(batch.count == 6 && asked == batch)
    }

    /// A client that rounds the points it was given (to 4 decimals here) still answers them: once
    /// told, they are no longer pending, singly or from a batch.
    @Test func roundedPointsToldBackStopBeingPending() throws {
        var session = PlannerSession()
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[-5,10],[0,15]]}"#))["ok"] as? Bool == true)
        var changed = 0
        func tellRounded(_ x: [Double]) throws {
            let rounded = x.map { ($0 * 1e4).rounded() / 1e4 }
            if rounded != x { changed += 1 }
            let told = try Self.json(session.reply(to: #"{"op":"tell","x":\#(rounded),"y":\#(rounded[0] * rounded[0] + rounded[1])}"#))
            #expect(told["ok"] as? Bool == true, "\(told)")
        }
        for _ in 0..<8 {
            try tellRounded(try #require(Self.json(session.reply(to: #"{"op":"ask"}"#))["x"] as? [Double]))
            #expect(session.planner?.pending.isEmpty == true)
        }
        let batch = try #require(Self.json(session.reply(to: #"{"op":"ask","n":6}"#))["xs"] as? [[Double]])
        for (told, x) in batch.reversed().enumerated() {
            try tellRounded(x)
            #expect(session.planner?.pending.count == batch.count - told - 1)
        }
        #expect(changed >= 10, "the points came back unrounded: the test would not test rounding")
        // A point far from every pending one is a result of its own and clears none.
        let pending = try #require(Self.json(session.reply(to: #"{"op":"ask","n":2}"#))["xs"] as? [[Double]])
        let corner = try #require([[-5.0, 0.0], [-5, 15], [10, 0], [10, 15]].first { c in pending.allSatisfy { abs($0[0] - c[0]) > 1 } })
        #expect(try Self.json(session.reply(to: #"{"op":"tell","x":\#(corner),"y":100}"#))["ok"] as? Bool == true)
        #expect(session.planner?.pending.count == 2)
    }

    /// A range tiny beside its values (10¹² to 10¹² + 1) rounds the points handed out; told back,
    /// they must stop being pending, or they crowd out every later proposal.
    @Test func pointsOfARangeTinyBesideItsValuesStopBeingPendingWhenTold() throws {
        for exactly in [true, false] {
            var session = PlannerSession()
            #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[1e12,1000000000001]]}"#))["ok"] as? Bool == true)
            let told = try Self.campaign(&session, asks: 30, batch: 5, exactly: exactly) { x in pow(x[0] - 1e12 - 0.3, 2) }
            let best = told.map { abs($0[0] - 1e12 - 0.3) }.min()!
            #expect(best < 0.01, "never homed in on 0.3 above 10¹²: \(told.map { $0[0] - 1e12 })")
            #expect(Set(told).count == told.count, "a point told was proposed again: \(told.map { $0[0] - 1e12 })")
            #expect(session.planner?.pending.count == 5, "the points told are still pending")
        }
    }

    /// A range only a few doubles wide (10¹² to 10¹² + 10⁻³) beside a continuous one: its points
    /// are the same run only when the continuous input is the same too. Sameness measured across
    /// all inputs at once ran out of points after 7 results ("no point is left to propose").
    @Test func aRangeAFewDoublesWideLeavesTheOtherInputsFree() throws {
        var session = PlannerSession()
        #expect(try Self.json(session.reply(to: #"{"op":"init","bounds":[[1e12,1000000000000.001],[0,1]]}"#))["ok"] as? Bool == true)
        let told = try Self.campaign(&session, asks: 30, batch: 4) { x in pow(x[1] - 0.3, 2) }
        #expect(told.map { abs($0[1] - 0.3) }.min()! < 0.01, "never homed in on 0.3: \(told.map { $0[1] })")
    }
}
