import Foundation
import LabCore

/// The planner behind a JSON-lines conversation (docs/planner.md): `init` makes it, `ask`
/// proposes, `tell` records a result, `done` ends. One request per line, one reply per request.
public struct PlannerSession {
    /// Options for every `init`; its noise and transform fields can override them.
    let defaults: Planner.Options
    var planner: Planner?
    var bounds: [[Double]] = []
    var options = Planner.Options()
    var minimize = true
    /// Set once `done` arrives.
    public private(set) var finished = false

    public init(defaults: Planner.Options = Planner.Options()) { self.defaults = defaults }

    /// The reply to one line as `RequestLines` reads it: a line past the limit gets an error.
    public mutating func reply(to line: RequestLines.Line) -> String? {
        switch line {
        case .text(let text): reply(to: text)
        case .tooLong(let bytes):
            finished ? nil : Self.encoded(["error": "a request line is at most \(PlannerRequest.Limits.lineBytes) bytes, and this one had \(bytes): "
                                                     + "send one request per line, such as {\"op\":\"ask\"}"])
        }
    }

    /// The reply line to one request line (a blank one included, so that a client never waits
    /// for nothing); nil for `done` and after it.
    public mutating func reply(to line: String) -> String? {
        guard !finished else { return nil }
        let reply: [String: Any]
        do {
            let request = try PlannerRequest(line: line)
            if request.op == "done" {
                finished = true
                return nil
            }
            reply = try handle(request)
        } catch let error as LabError {
            reply = ["error": error.message]
        } catch {
            reply = ["error": "\(error)"]
        }
        return Self.encoded(reply)
    }

    private static func encoded(_ reply: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private mutating func handle(_ request: PlannerRequest) throws -> [String: Any] {
        typealias Limits = PlannerRequest.Limits
        switch request.op {
        case "init":
            guard let bounds = try request.numberLists("bounds") else {
                throw PlannerRequest.error("init needs bounds: [[low, high], ...], one pair per input, at most \(Limits.dimensions)")
            }
            guard (1...Limits.dimensions).contains(bounds.count) else {
                throw PlannerRequest.error("bounds must have 1 to \(Limits.dimensions) [low, high] pairs, one per input; got \(bounds.count)")
            }
            for (i, pair) in bounds.enumerated() {
                guard pair.count == 2, pair[0] < pair[1] else {
                    throw PlannerRequest.error("bounds[\(i)] must be a pair [low, high] with low < high; got \(pair)")
                }
                guard (pair[1] - pair[0]).isFinite else {
                    throw PlannerRequest.error("bounds[\(i)] spans more than the largest number (\(Double.greatestFiniteMagnitude)): "
                                               + "send a narrower range, or the input in larger units; got \(pair)")
                }
            }
            if let dim = try request.integer("dim", in: 1...Limits.dimensions), dim != bounds.count {
                throw PlannerRequest.error("dim is \(dim) but bounds has \(bounds.count) [low, high] \(bounds.count == 1 ? "pair" : "pairs"): send one pair per input")
            }
            let budget = try request.integer("budget", in: 1...Limits.budget)
            var options = defaults
            options.initialPoints = try request.integer("n_init", in: 1...Limits.initialPoints, default: 5)!
            guard options.initialPoints * bounds.count <= Limits.designNumbers else {
                throw PlannerRequest.error("n_init × inputs is at most \(Limits.designNumbers) (the initial design is drawn at each ask): "
                                           + "with \(bounds.count) inputs, send n_init at most \(Limits.designNumbers / bounds.count)")
            }
            if let budget, options.initialPoints > budget {
                throw PlannerRequest.error("n_init (\(options.initialPoints)) is more than the budget (\(budget)): send n_init at most \(budget)")
            }
            let seed = try request.integer("seed", in: 0...Int.max, default: 0)!
            if let name = try request.string("noise", oneOf: ["inferred", "noise-free", "known"]) {
                options.noise = Planner.Noise(jsonName: name)!
            }
            if let name = try request.string("transform", oneOf: OutputTransform.allCases.map(\.rawValue)) {
                options.outputTransform = OutputTransform(rawValue: name)!
            }
            if let name = try request.string("expect_best", oneOf: Planner.ExpectBest.allCases.map(\.rawValue)) {
                options.expectBest = Planner.ExpectBest(rawValue: name)!
            }
            minimize = try request.boolean("minimize", default: true)
            let dimensions = bounds.enumerated().map { PlannerSpace.Parameter.real(name: "x\($0.offset)", lower: $0.element[0], upper: $0.element[1], logScale: false) }
            planner = Planner(space: PlannerSpace(dimensions), options: options, seed: UInt64(seed))
            (self.bounds, self.options) = (bounds, options)
            return ["ok": true]
        case "ask":
            guard var planner else { throw PlannerRequest.error("send init first") }
            let count = try request.integer("n", in: 1...Limits.batch)
            // Every pending point joins the model at each ask: a client that never tells must not grow it without end.
            guard planner.pending.count + (count ?? 1) <= Limits.batch else {
                let room = Limits.batch - planner.pending.count
                throw PlannerRequest.error("\(planner.pending.count) \(planner.pending.count == 1 ? "point is" : "points are") pending (asked for, not told) and at most \(Limits.batch) may be: "
                                           + (room > 0 ? "ask for at most \(room), or " : "") + "tell their results first (y null for a run that failed or was not done)")
            }
            let proposals = try planner.propose(count ?? 1).map { vector($0.values) }
            self.planner = planner
            return count == nil ? ["x": proposals[0]] : ["xs": proposals]
        case "tell":
            guard var planner else { throw PlannerRequest.error("send init first") }
            guard var x = try request.numbers("x") else {
                throw PlannerRequest.error("tell needs x: a list of \(bounds.count) numbers, the point that was run")
            }
            guard x.count == bounds.count else {
                throw PlannerRequest.error("x must be a list of \(bounds.count) numbers, one per input of init's bounds; got \(x.count)")
            }
            // A point asked for on a bound may come back rounded a hair past it: it is taken at the bound.
            if let i = x.indices.first(where: { !Self.contains(bounds[$0], x[$0]) }), !planner.answersPending(Self.point(x)) {
                throw PlannerRequest.error("x[\(i)] is \(x[i]), outside its bounds [\(bounds[i][0]), \(bounds[i][1])]: tell the point that was run, within the bounds")
            }
            x = zip(x, bounds).map { min(max($0, $1[0]), $1[1]) }
            guard request.has("y") else { throw PlannerRequest.error("tell needs y: a number, or null for a failed experiment") }
            let y = try request.number("y", largest: Planner.largestResult, null: "for a failed experiment")
            // The log needs a result above zero, and not so near zero that its slope overflows.
            if let y, options.outputTransform == .log, !(1 / Planner.largestResult...Planner.largestResult).contains(y) {
                throw PlannerRequest.error("y is \(y), and transform log takes results from \(1 / Planner.largestResult) to \(Planner.largestResult): "
                                           + "send a result above zero, or init with transform auto (the default), which takes any values")
            }
            let noise = try request.number("noise", largest: .greatestFiniteMagnitude)
            let largestNoise = Planner.largestResult * Planner.largestResult
            if let noise, !(0...largestNoise).contains(noise) {
                throw PlannerRequest.error("noise is \(noise): send the variance of y, a number from 0 to \(largestNoise)")
            }
            // A noise the model would ignore, or a missing one it would guess, is a client's mistake.
            if noise != nil, options.noise != .known {
                throw PlannerRequest.error("noise is taken only after init with noise known: send y alone, or init with \"noise\": \"known\"")
            }
            if noise == nil, y != nil, options.noise == .known {
                throw PlannerRequest.error("noise is known (from init or --noise), so tell needs noise: the variance of y (0 if it is exact)")
            }
            let outcome = y.map { Outcome(objectives: [minimize ? -$0 : $0], noiseVariance: noise) }
            planner.observe(Self.point(x), outcome: outcome)
            self.planner = planner
            return ["ok": true]
        default:
            throw PlannerRequest.error("unknown op \(request.op)")
        }
    }

    /// Within the bounds, give or take a rounding of the numbers on their way through the client
    /// (and through a JSON parser an ulp off, which matters where the range is tiny beside its values).
    private static func contains(_ bounds: [Double], _ value: Double) -> Bool {
        let slack = max(1e-9 * (bounds[1] - bounds[0]), 4 * max(abs(bounds[0]), abs(bounds[1])).ulp)
        return value >= bounds[0] - slack && value <= bounds[1] + slack
    }

    private static func point(_ x: [Double]) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: x.enumerated().map { ("x\($0.offset)", $0.element) })
    }

    private func vector(_ values: [String: Double]) -> [Double] {
        (0..<values.count).map { values["x\($0)"]! }
    }
}

extension Planner.InitialDesign {
    /// The name the command line and the JSON protocol use.
    public init?(jsonName: String) {
        switch jsonName {
        case "sobol": self = .sobol
        case "latin-hypercube": self = .latinHypercube
        case "random": self = .random
        default: return nil
        }
    }
}

extension Planner.Noise {
    /// The name the command line and the JSON protocol use.
    public init?(jsonName: String) {
        switch jsonName {
        case "inferred": self = .inferred
        case "noise-free": self = .noiseFree
        case "known": self = .known
        default: return nil
        }
    }
}
