import ArgumentParser
import Foundation
import LabCore
import LabPlanner

/// `serendip planner --stdio`: the planner as a process speaking JSON lines, so any tool in any
/// language can ask it for experiments (docs/planner.md).
struct PlannerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "planner", abstract: "Serve the Bayesian-optimisation planner over JSON lines on stdin/stdout.")

    @Flag(help: "Read requests from standard input and answer on standard output (the only mode so far).")
    var stdio = false

    @Option(help: "Noise model when init does not give one: inferred or noise-free.")
    var noise = "inferred"

    @Option(help: "Initial design: sobol, latin-hypercube or random.")
    var initialDesign = "latin-hypercube"

    func validate() throws {
        guard Planner.InitialDesign(jsonName: initialDesign) != nil else { throw ValidationError("--initial-design is sobol, latin-hypercube or random") }
        guard stdio else { throw ValidationError("pass --stdio") }
        guard Planner.Noise(jsonName: noise) != nil else { throw ValidationError("--noise is inferred or noise-free") }
    }

    func run() throws {
        var session = PlannerSession(defaultNoise: Planner.Noise(jsonName: noise)!,
                                     defaultDesign: Planner.InitialDesign(jsonName: initialDesign)!)
        while let line = readLine(strippingNewline: true) {
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            let reply: [String: Any]
            do {
                guard let request = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw PlannerSession.Failure("a request is a JSON object")
                }
                if request["op"] as? String == "done" { break }
                reply = try session.handle(request)
            } catch let failure as PlannerSession.Failure {
                reply = ["error": failure.message]
            } catch {
                reply = ["error": "\(error)"]
            }
            let data = try JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
    }
}

/// One client's planner: `init` makes it, `ask` proposes, `tell` records a result.
struct PlannerSession {
    struct Failure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    let defaultNoise: Planner.Noise
    let defaultDesign: Planner.InitialDesign
    var planner: Planner?
    var minimize = true

    mutating func handle(_ request: [String: Any]) throws -> [String: Any] {
        switch request["op"] as? String {
        case "init":
            guard let bounds = request["bounds"] as? [[Double]], !bounds.isEmpty,
                  bounds.allSatisfy({ $0.count == 2 && $0[0].isFinite && $0[1].isFinite && $0[0] < $0[1] }) else {
                throw Failure("init needs bounds: [[low, high], ...] with low < high")
            }
            let dimensions = bounds.enumerated().map { PlannerSpace.Parameter.real(name: "x\($0.offset)", lower: $0.element[0], upper: $0.element[1], logScale: false) }
            var options = Planner.Options()
            options.initialPoints = max(1, request["n_init"] as? Int ?? 5)
            options.initialDesign = defaultDesign
            if let name = request["noise"] as? String {
                guard let noise = Planner.Noise(jsonName: name) else { throw Failure("noise is inferred or noise-free") }
                options.noise = noise
            } else {
                options.noise = defaultNoise
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
            guard let x = request["x"] as? [Double], x.count == planner.space.width else {
                throw Failure("tell needs x with \(planner.space.width) numbers")
            }
            // y null (or absent) is a failed experiment.
            let y = (request["y"] as? Double).map { Outcome(minimize ? -$0 : $0) }
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
    init?(jsonName: String) {
        switch jsonName {
        case "sobol": self = .sobol
        case "latin-hypercube": self = .latinHypercube
        case "random": self = .random
        default: return nil
        }
    }
}

extension Planner.Noise {
    init?(jsonName: String) {
        switch jsonName {
        case "inferred": self = .inferred
        case "noise-free": self = .noiseFree
        default: return nil
        }
    }
}
