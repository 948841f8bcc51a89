import Foundation
import LabCore
import LabPlanner
import Testing

/// Bad input over the JSON-lines protocol (`serendip planner --stdio`, issue 15): each request gets
/// an error naming the field and what to send instead, and the session goes on answering.
@Suite struct PlannerInputTests {
    static let start = #"{"op":"init","dim":2,"bounds":[[-5,10],[0,15]],"budget":30,"n_init":2,"seed":1}"#

    /// A session past its initial design, so that the next ask fits the model.
    static func session() throws -> PlannerSession {
        var session = PlannerSession()
        #expect(try reply(&session, start)["ok"] as? Bool == true)
        for (x, y) in [([1.0, 2.0], 30.5), ([7.5, 12.0], 80.25)] {
            #expect(try reply(&session, #"{"op":"tell","x":\#(x),"y":\#(y)}"#)["ok"] as? Bool == true)
        }
        return session
    }

    static func reply(_ session: inout PlannerSession, _ line: String) throws -> [String: Any] {
        let answer = session.reply(to: line)
        let text = try #require(answer, "no reply to \(line)")
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// Requires an error reply that says each of `words`, then that the session still proposes
    /// points within the bounds and learns from them.
    static func expectRefusal(_ line: String, saying words: [String], in session: inout PlannerSession, knownNoise: Bool = false,
                              sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let answer = try reply(&session, line)
        let message = try #require(answer["error"] as? String, "\(line) got \(answer)", sourceLocation: sourceLocation)
        for word in words { #expect(message.contains(word), "\(line): \(message)", sourceLocation: sourceLocation) }
        for _ in 0..<2 {
            let asked = try reply(&session, #"{"op":"ask"}"#)
            let x = try #require(asked["x"] as? [Double], "ask after \(line) got \(asked)", sourceLocation: sourceLocation)
            #expect(x.count == 2 && (-5...10).contains(x[0]) && (0...15).contains(x[1]), sourceLocation: sourceLocation)
            let told = try reply(&session, #"{"op":"tell","x":[\#(x[0]),\#(x[1])],"y":\#(x[0] * x[0] + x[1])\#(knownNoise ? #","noise":0.01"# : "")}"#)
            #expect(told["ok"] as? Bool == true, "tell after \(line) got \(told)", sourceLocation: sourceLocation)
        }
    }

    @Test func aYThatIsAStringOrABooleanIsRefusedRatherThanRecordedAsAFailedRun() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":"abc"}"#, saying: ["y must be a number, or null", #""abc""#], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":"1.5"}"#, saying: ["y must be a number", "without quotes"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":true}"#, saying: ["y must be a number", "got true"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1]}"#, saying: ["tell needs y", "null for a failed experiment"], in: &session)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[1,1],"y":null}"#)["ok"] as? Bool == true)
    }

    @Test func anXOutsideTheBoundsOrNotANumberIsRefused() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[11,5],"y":1}"#, saying: ["x[0] is 11", "[-5.0, 10.0]"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,-0.5],"y":1}"#, saying: ["x[1] is -0.5"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[true,5],"y":1}"#, saying: ["x[0] must be a number"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1],"y":1}"#, saying: ["x must be a list of 2 numbers", "got 1"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","y":1}"#, saying: ["tell needs x: a list of 2 numbers"], in: &session)
        // The bounds themselves are inside.
        #expect(try Self.reply(&session, #"{"op":"tell","x":[10,0],"y":1}"#)["ok"] as? Bool == true)
    }

    @Test func aBlankLineGetsAnErrorReplyInsteadOfSilence() throws {
        var session = try Self.session()
        try Self.expectRefusal("", saying: ["empty line", #"{"op":"ask"}"#], in: &session)
        try Self.expectRefusal(" \t ", saying: ["empty line"], in: &session)
    }

    @Test func anInitialDesignTooLargeToDrawIsRefusedBeforeAnythingIsAllocated() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"n_init":1000000000}"#, saying: ["n_init must be a whole number from 1 to 10000", "got 1000000000"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"n_init":10000000}"#, saying: ["n_init"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"n_init":0}"#, saying: ["n_init"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"n_init":2.5}"#, saying: ["n_init", "got 2.5"], in: &session)
        try Self.expectRefusal(#"{"op":"ask","n":1000000000}"#, saying: ["n must be a whole number from 1 to 1000"], in: &session)
        try Self.expectRefusal(#"{"op":"ask","n":0}"#, saying: ["n must be"], in: &session)
        let tooWide = "[" + Array(repeating: "[0,1]", count: 1_001).joined(separator: ",") + "]"
        try Self.expectRefusal(#"{"op":"init","bounds":\#(tooWide)}"#, saying: ["bounds must have 1 to 1000 [low, high] pairs", "got 1001"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[]}"#, saying: ["bounds must have 1 to 1000", "got 0"], in: &session)
        let wide = "[" + Array(repeating: "[0,1]", count: 1_000).joined(separator: ",") + "]"
        try Self.expectRefusal(#"{"op":"init","bounds":\#(wide),"n_init":10000}"#,
                               saying: ["n_init × inputs is at most 1000000", "with 1000 inputs, send n_init at most 1000"], in: &session)
    }

    /// Without the design drawn once per ask, this batch draws 10⁹ numbers: minutes, not a second.
    @Test(.timeLimit(.minutes(1))) func aBatchFromTheLargestInitialDesignDrawsItOnce() throws {
        var session = PlannerSession()
        let bounds = "[" + Array(repeating: "[0,1]", count: 100).joined(separator: ",") + "]"
        #expect(try Self.reply(&session, #"{"op":"init","bounds":\#(bounds),"n_init":10000}"#)["ok"] as? Bool == true)
        let xs = try #require(try Self.reply(&session, #"{"op":"ask","n":1000}"#)["xs"] as? [[Double]])
        #expect(Set(xs).count == 1000)
    }

    @Test func aYTooLargeToModelIsRefusedAndTheNextAskStillWorks() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":1e155}"#, saying: ["y is 1e+155", "beyond ±1e+100", "logarithm"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":-1e155}"#, saying: ["y is -1e+155"], in: &session)
        // At the limit, both ways, the model still fits.
        #expect(try Self.reply(&session, #"{"op":"tell","x":[2,2],"y":1e100}"#)["ok"] as? Bool == true)
        try Self.expectRefusal(#"{"op":"tell","x":[3,3],"y":-1e101}"#, saying: ["y is"], in: &session)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[3,3],"y":-1e100}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"ask","n":2}"#)["xs"] as? [[Double]] != nil)
    }

    @Test func aResultTooLargeToModelCountsAsAFailedRunInACampaign() throws {
        // The campaign runner observes directly, not through the protocol.
        var planner = Planner(space: PlannerSpace([.real(name: "a", lower: 0, upper: 1, logScale: false)]),
                              options: { var o = Planner.Options(); o.initialPoints = 2; return o }(), seed: 3)
        for (a, y) in [(0.1, 1.0), (0.5, 1e155), (0.9, 2.0)] { planner.observe(["a": a], outcome: Outcome(objectives: [y])) }
        #expect(planner.observations.map { $0.outcome == nil } == [false, true, false])
        #expect(try planner.propose(1).count == 1)
    }

    @Test func aNoiseVarianceThatIsNotFiniteOrNegativeCountsAsAFailedRunInACampaign() throws {
        var planner = Planner(space: PlannerSpace([.real(name: "a", lower: 0, upper: 1, logScale: false)]),
                              options: { var o = Planner.Options(); o.initialPoints = 2; o.noise = .known; return o }(), seed: 3)
        for (a, noise) in [(0.1, 0.01), (0.3, Double.infinity), (0.5, Double.nan), (0.7, -1), (0.9, 0.02)] {
            planner.observe(["a": a], outcome: Outcome(objectives: [a], noiseVariance: noise))
        }
        #expect(planner.observations.map { $0.outcome == nil } == [false, true, true, true, false])
        #expect(try planner.propose(1).count == 1)
    }

    @Test func aResultTheLogTransformCannotTakeIsRefused() throws {
        var session = PlannerSession()
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[-5,10],[0,15]],"n_init":2,"transform":"log"}"#)["ok"] as? Bool == true)
        for (x, y) in [([1.0, 2.0], 30.5), ([7.5, 12.0], 80.25)] {
            #expect(try Self.reply(&session, #"{"op":"tell","x":\#(x),"y":\#(y)}"#)["ok"] as? Bool == true)
        }
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":0}"#, saying: ["y is 0.0, and transform log takes results from 1e-100", "transform auto"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":-2}"#, saying: ["transform log"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":1e-300}"#, saying: ["transform log"], in: &session)
    }

    @Test func aKnownNoiseOnTheLogOfATinyResultLeavesTheSessionUsable() throws {
        var session = PlannerSession()
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[-5,10],[0,15]],"n_init":2,"transform":"log","noise":"known"}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[1,2],"y":1e-100,"noise":1e200}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[4,9],"y":5,"noise":0.1}"#)["ok"] as? Bool == true)
        try Self.expectRefusal("", saying: ["empty line"], in: &session, knownNoise: true)
    }

    @Test func askingWithoutTellingStopsAtTheLimitOfPendingPoints() throws {
        var session = PlannerSession()
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[0,1]],"n_init":1001}"#)["ok"] as? Bool == true)
        let xs = try #require(try Self.reply(&session, #"{"op":"ask","n":1000}"#)["xs"] as? [[Double]])
        let refused = try #require(try Self.reply(&session, #"{"op":"ask"}"#)["error"] as? String)
        #expect(refused.contains("1000 points are pending") && refused.contains("tell their results first"))
        #expect(try Self.reply(&session, #"{"op":"tell","x":[\#(xs[0][0])],"y":null}"#)["ok"] as? Bool == true)
        let tooMany = try #require(try Self.reply(&session, #"{"op":"ask","n":2}"#)["error"] as? String)
        #expect(tooMany.contains("999 points are pending") && tooMany.contains("ask for at most 1, or tell"), "\(tooMany)")
        #expect(try Self.reply(&session, #"{"op":"ask"}"#)["x"] as? [Double] != nil)
    }

    @Test func aBudgetOutOfRangeOrBelowTheInitialDesignIsRefused() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"budget":-1}"#, saying: ["budget must be a whole number from 1 to 100000", "got -1"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"budget":"30"}"#, saying: ["budget", #"got "30""#], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"budget":1000000}"#, saying: ["budget"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"budget":3,"n_init":5}"#, saying: ["n_init (5) is more than the budget (3)"], in: &session)
    }

    @Test func whereTheBestIsExpectedIsInsideOrAnywhere() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"expect_best":"edge"}"#, saying: ["expect_best must be inside or anywhere", #"got "edge""#], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"expect_best":true}"#, saying: ["expect_best must be inside or anywhere", "got true"], in: &session)
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[0,1],[0,2]],"expect_best":"anywhere"}"#)["ok"] as? Bool == true)
    }

    @Test func aNegativeNoiseVarianceIsRefused() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":3,"noise":-0.5}"#, saying: ["noise is -0.5", "the variance of y, a number from 0 to 1e+200"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":3,"noise":"small"}"#, saying: ["noise must be a number"], in: &session)
    }

    /// A noise the model would ignore (noise not known) or have to guess (known, but not sent) is refused.
    @Test func aNoiseIsSentExactlyWhenInitSaidItIsKnown() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":3,"noise":0.1}"#, saying: ["noise is taken only after init with noise known"], in: &session)
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[-5,10],[0,15]],"noise":"known"}"#)["ok"] as? Bool == true)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":3}"#, saying: ["noise is known (from init or --noise), so tell needs noise"], in: &session, knownNoise: true)
        // A failed run has no result, so no noise either.
        #expect(try Self.reply(&session, #"{"op":"tell","x":[1,1],"y":null}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[2,1],"y":3,"noise":0.1}"#)["ok"] as? Bool == true)
    }

    @Test func aKnownNoiseAtItsLimitLeavesTheSessionUsable() throws {
        var session = PlannerSession()
        #expect(try Self.reply(&session, #"{"op":"init","bounds":[[-5,10],[0,15]],"n_init":2,"noise":"known"}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[1,2],"y":3,"noise":1e200}"#)["ok"] as? Bool == true)
        #expect(try Self.reply(&session, #"{"op":"tell","x":[4,9],"y":5,"noise":0}"#)["ok"] as? Bool == true)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":3,"noise":1e201}"#, saying: ["noise is"], in: &session, knownNoise: true)
    }

    @Test func aSeedOutOfRangeIsRefused() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"seed":-1}"#, saying: ["seed must be a whole number from 0 to 9223372036854775807", "got -1"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"seed":100000000000000000000}"#, saying: ["seed"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"seed":1.5}"#, saying: ["seed"], in: &session)
    }

    @Test func aBareNaNOrInfinityIsReportedAsNotFiniteRatherThanNotJSON() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":NaN}"#, saying: ["y must be finite", "or null for a failed experiment", "got NaN"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":-Infinity}"#, saying: ["y must be finite", "got -Infinity"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[Infinity,1],"y":2}"#, saying: ["x[0] must be finite"], in: &session)
        // Inside a string it is a string.
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":"NaN"}"#, saying: [#"got "NaN""#], in: &session)
        // Beyond a double: what to send instead, not the parser's words.
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":1e400}"#, saying: ["y is 1e400, beyond what a double holds", "larger units", "null"], in: &session)
        // Named by the field that holds it, wherever it is.
        try Self.expectRefusal(#"{"op":"tell","x":[-1e400,1],"y":1}"#, saying: ["x[0] is -1e400, beyond what a double holds"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1E+400]]}"#, saying: ["bounds[0][1] is 1E+400, beyond what a double holds"], in: &session)
        // Too small to tell from zero is zero, as JSON parsers read it.
        #expect(try Self.reply(&session, #"{"op":"tell","x":[1,1],"y":1e-400}"#)["ok"] as? Bool == true)
    }

    @Test func otherMistakesNameTheFieldAndWhatToSend() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"n_inti":3}"#, saying: ["init has no field 'n_inti'", "n_init"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"minimize":"yes"}"#, saying: ["minimize must be true or false"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"noise":"loud"}"#, saying: ["noise must be inferred, noise-free or known"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[0,1]],"dim":1.5}"#, saying: ["dim must be a whole number"], in: &session)
        try Self.expectRefusal(#"{"op":"init","bounds":[[-1e308,1e308]]}"#, saying: ["bounds[0] spans more than the largest number", "narrower range"], in: &session)
        try Self.expectRefusal(#"{"op":"fly"}"#, saying: [#"unknown op "fly""#, "init, ask, tell or done"], in: &session)
        try Self.expectRefusal("[1,2]", saying: ["a request is a JSON object"], in: &session)
        try Self.expectRefusal("null", saying: ["a request is a JSON object"], in: &session)
        try Self.expectRefusal(#"{"n":2}"#, saying: ["a request needs an op; use init, ask, tell or done"], in: &session)
        try Self.expectRefusal(#"{"op":"done","x":1}"#, saying: ["done has no field 'x'", #"send {"op":"done"}"#], in: &session)
        try Self.expectRefusal(#"{"op":"init","dim":2,"bounds":[[0,1]]}"#, saying: ["dim is 2 but bounds has 1 [low, high] pair:"], in: &session)
        // A name as long as the line is not sent back whole.
        let long = String(repeating: "z", count: 100_000)
        let reply = session.reply(to: #"{"op":"ask","\#(long)":1}"#)
        let answer = try #require(reply)
        #expect(answer.count < 300 && answer.contains("ask has no field 'zzz"), "\(answer.prefix(300))")
    }

    /// A JSON parser keeps one value of a repeated key: {"op":"ask","op":"done"} ended the session
    /// without a reply. A key written with escapes is the same key.
    @Test func aFieldGivenTwiceIsRefused() throws {
        var session = try Self.session()
        try Self.expectRefusal(#"{"op":"ask","op":"done"}"#, saying: ["'op' is given twice", "send each field once"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":1, "y" :2}"#, saying: ["'y' is given twice"], in: &session)
        try Self.expectRefusal(#"{"op":"ask","\u006fp":"done"}"#, saying: ["'op' is given twice"], in: &session)
        // Text that looks like a key inside a string, or a key of a nested object, is not one.
        try Self.expectRefusal(#"{"op":"fly","note":"\"op\":1"}"#, saying: [#"unknown op "fly""#], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1],"y":{"op":1,"op":2}}"#, saying: ["y must be a number"], in: &session)
        #expect(!session.finished)
        // Foundation's parser takes a comma before } or ]; JSON does not.
        try Self.expectRefusal(#"{"op":"ask",}"#, saying: ["not JSON: a comma just before '}'"], in: &session)
        try Self.expectRefusal(#"{"op":"tell","x":[1,1,],"y":1}"#, saying: ["not JSON: a comma just before ']'"], in: &session)
        try Self.expectRefusal(#"{"op":"fly","note":",}"}"#, saying: [#"unknown op "fly""#], in: &session)
    }
}
