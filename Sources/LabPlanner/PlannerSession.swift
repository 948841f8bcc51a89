import Foundation
public import LabCore

/// The planner behind a JSON-lines conversation (docs/planner.md): `init` makes it, `ask`
/// proposes, `tell` records a result, `done` ends. One request per line, one reply per request.
public struct PlannerSession {
    struct Failure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    /// Options for every `init`; its noise and transform fields can override them.
    let defaults: Planner.Options
    var planner: Planner?
    var minimize = true
    /// Set once `done` arrives.
    public private(set) var finished = false

    public init(defaults: Planner.Options = Planner.Options()) { self.defaults = defaults }

    /// The reply line to one request line; nil for a blank line and for `done`.
    public mutating func reply(to line: String) -> String? {
        guard !line.allSatisfy(\.isWhitespace), !finished else { return nil }
        let reply: [String: Any]
        do {
            guard let request = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw Failure("a request is a JSON object")
            }
            if request["op"] as? String == "done" {
                finished = true
                return nil
            }
            reply = try handle(request)
        } catch let failure as Failure {
            reply = ["error": failure.message]
        } catch let error as LabError {
            reply = ["error": error.message]
        } catch {
            reply = ["error": "not JSON: \(error.localizedDescription)"]
        }
        let data = (try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private mutating func handle(_ request: [String: Any]) throws -> [String: Any] {
        switch request["op"] as? String {
        case "init":
            guard let bounds = request["bounds"] as? [[Double]], !bounds.isEmpty,
                  bounds.allSatisfy({ $0.count == 2 && $0[0].isFinite && $0[1].isFinite && $0[0] < $0[1] }) else {
                throw Failure("init needs bounds: [[low, high], ...] with low < high")
            }
            if let dim = request["dim"] as? Int, dim != bounds.count { throw Failure("dim is \(dim) but there are \(bounds.count) bounds") }
            let dimensions = bounds.enumerated().map { PlannerSpace.Parameter.real(name: "x\($0.offset)", lower: $0.element[0], upper: $0.element[1], logScale: false) }
            var options = defaults
            options.initialPoints = max(1, request["n_init"] as? Int ?? 5)
            if let name = request["noise"] as? String {
                guard let noise = Planner.Noise(jsonName: name) else { throw Failure("noise is inferred, noise-free or known") }
                options.noise = noise
            }
            if let name = request["transform"] as? String {
                guard let transform = OutputTransform(rawValue: name) else { throw Failure("transform is none, log or power") }
                options.outputTransform = transform
            }
            minimize = request["minimize"] as? Bool ?? true
            planner = Planner(space: PlannerSpace(dimensions), options: options, seed: UInt64(max(0, request["seed"] as? Int ?? 0)))
            return ["ok": true]
        case "ask":
            guard var planner else { throw Failure("send init first") }
            let count = request["n"] as? Int
            let proposals = try planner.propose(max(1, count ?? 1)).map { vector($0.values) }
            self.planner = planner
            return count == nil ? ["x": proposals[0]] : ["xs": proposals]
        case "tell":
            guard var planner else { throw Failure("send init first") }
            guard let x = request["x"] as? [Double], x.count == planner.space.width, x.allSatisfy(\.isFinite) else {
                throw Failure("tell needs x with \(planner.space.width) numbers")
            }
            // y null (or absent) is a failed experiment.
            let noise = request["noise"] as? Double
            let y = (request["y"] as? Double).map { Outcome(objectives: [minimize ? -$0 : $0], noiseVariance: noise) }
            planner.observe(Dictionary(uniqueKeysWithValues: x.enumerated().map { ("x\($0.offset)", $0.element) }), outcome: y)
            self.planner = planner
            return ["ok": true]
        default:
            throw Failure("unknown op; use init, ask, tell or done")
        }
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
