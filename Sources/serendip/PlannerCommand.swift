import ArgumentParser
import Foundation
import LabPlanner

/// `serendip planner --stdio`: the planner as a process speaking JSON lines, so any tool in any
/// language can ask it for experiments (docs/planner.md).
struct PlannerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "planner", abstract: "Serve the Bayesian-optimisation planner over JSON lines on stdin/stdout.")

    @Flag(help: "Read requests from standard input and answer on standard output (the only mode so far).")
    var stdio = false

    @Option(help: "Noise model when init does not give one: inferred, noise-free or known (each tell gives the variance of y).")
    var noise = "inferred"

    @Option(help: "Initial design: sobol, latin-hypercube or random.")
    var initialDesign = "latin-hypercube"

    @Option(help: "Output transform when init does not give one: auto (power, or none with the best predicted value to beat once the results look noisy), power (learnt from the results), none or log.")
    var transform = "auto"

    @Option(help: "Where the best is expected when init does not say: inside the ranges (results falling towards their limits make unexplored limits look worse still) or anywhere.")
    var expectBest = "inside"

    func validate() throws {
        guard Planner.InitialDesign(jsonName: initialDesign) != nil else { throw ValidationError("--initial-design is sobol, latin-hypercube or random") }
        guard stdio else { throw ValidationError("pass --stdio") }
        guard Planner.Noise(jsonName: noise) != nil else { throw ValidationError("--noise is inferred, noise-free or known") }
        guard OutputTransform(rawValue: transform) != nil else { throw ValidationError("--transform is auto, power, none or log") }
        guard Planner.ExpectBest(rawValue: expectBest) != nil else { throw ValidationError("--expect-best is inside or anywhere") }
    }

    func run() throws {
        var defaults = Planner.Options()
        defaults.noise = Planner.Noise(jsonName: noise)!
        defaults.initialDesign = Planner.InitialDesign(jsonName: initialDesign)!
        defaults.outputTransform = OutputTransform(rawValue: transform)!
        defaults.expectBest = Planner.ExpectBest(rawValue: expectBest)!
        var session = PlannerSession(defaults: defaults)
        // Every line gets a reply until `done`; a client that stops reading ends the session.
        var lines = RequestLines(descriptor: STDIN_FILENO)
        while let line = lines.next(), let reply = session.reply(to: line) {
            guard Output.line(reply) else {
                Output.error("planner: standard output is closed; ending the session")
                throw ExitCode(74)  // EX_IOERR
            }
        }
    }
}

