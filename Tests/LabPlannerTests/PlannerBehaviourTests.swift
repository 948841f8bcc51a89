import Foundation
import LabCore
@testable import LabPlanner
import Testing

/// What the planner promises a campaign: constraints never broken, whole numbers and categories
/// respected, failures and outcome constraints steered away from, batches spread out, several
/// objectives traded off, and a saved planner resuming exactly where it stopped.
@Suite struct PlannerBehaviourTests {
    static func options(initial: Int = 4, rawSamples: Int = 256) -> Planner.Options {
        var o = Planner.Options()
        o.initialPoints = initial
        o.rawSamples = rawSamples
        o.restarts = 3
        return o
    }

    /// Runs `budget` single proposals on `f` (maximised; nil = the run failed).
    static func run(_ planner: inout Planner, budget: Int, _ f: ([String: Double]) -> Outcome?) throws -> [[String: Double]] {
        var proposed: [[String: Double]] = []
        for _ in 0..<budget {
            let values = try planner.propose(1)[0].values
            proposed.append(values)
            planner.observe(values, outcome: f(values))
        }
        return proposed
    }

    /// A peak inside the ranges, flat far from it: once it is found, proposals explore elsewhere
    /// without piling onto the limits of the ranges, where the variance alone draws them, unless the
    /// campaign expects the best anywhere (the planner before decision 20).
    @Test func proposalsAroundAnInnerPeakStayOffTheLimitsUnlessTheBestIsExpectedAnywhere() throws {
        let names = ["a", "b", "c", "d"], peak = [0.3, 0.6, 0.45, 0.55]
        let space = PlannerSpace(names.map { .real(name: $0, lower: 0, upper: 1, logScale: false) })
        func proposals(expecting expectBest: Planner.ExpectBest) throws -> (onALimit: Int, inACorner: Int) {
            var onALimit = 0, inACorner = 0
            for seed in UInt64(1)...6 {
                var options = Self.options(initial: 5)
                options.expectBest = expectBest
                var planner = Planner(space: space, options: options, seed: seed)
                let proposed = try Self.run(&planner, budget: 30) { v in
                    Outcome(exp(-zip(names, peak).reduce(0) { $0 + pow((v[$1.0]! - $1.1) / 0.25, 2) }))
                }
                for v in proposed.dropFirst(5) {
                    let limits = names.filter { v[$0] == 0 || v[$0] == 1 }.count
                    if limits > 0 { onALimit += 1 }
                    if limits == names.count { inACorner += 1 }
                }
            }
            return (onALimit, inACorner)
        }
        let inside = try proposals(expecting: .inside), anywhere = try proposals(expecting: .anywhere)
        #expect(inside.onALimit <= 150 / 20 && inside.inACorner == 0, "\(inside) of 150 proposals on a limit, in a corner")
        #expect(anywhere.onALimit >= 3 * inside.onALimit && anywhere.inACorner > 0, "\(anywhere) against \(inside)")
    }

    @Test func proposalsNeverBreakALinearConstraintOverManyRandomSpaces() throws {
        var rng = SplitMix64(seed: 77)
        for trial in 0..<12 {
            let d = Int.random(in: 2...4, using: &rng)
            var parameters: [PlannerSpace.Parameter] = (0..<d).map { i in
                let lo = Double.random(in: -5...5, using: &rng)
                return .real(name: "p\(i)", lower: lo, upper: lo + Double.random(in: 0.5...10, using: &rng), logScale: false)
            }
            parameters.append(.integer(name: "n", lower: 0, upper: 6))
            // One inequality through the middle of the box, and on odd trials a mixture equality.
            let middle = parameters.reduce(0.0) { total, p in
                if case .real(_, let lo, let hi, _) = p { return total + (lo + hi) / 2 }
                return total + 3
            }
            var constraints = [LinearConstraint(
                coefficients: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, 1.0) }), relation: .atMost, bound: middle)]
            if trial % 2 == 1, case .real(_, let lo0, let hi0, _) = parameters[0], case .real(_, let lo1, let hi1, _) = parameters[1] {
                constraints.append(.init(coefficients: ["p0": 1, "p1": 1], relation: .equal, bound: (lo0 + hi0 + lo1 + hi1) / 2))
            }
            let space = PlannerSpace(parameters, constraints: constraints)
            var planner = Planner(space: space, options: Self.options(), seed: UInt64(trial))
            let proposed = try Self.run(&planner, budget: 10) { v in Outcome(-v.values.reduce(0) { $0 + $1 * $1 }) }
            for values in proposed {
                #expect(space.isFeasible(values, tolerance: 1e-7), "trial \(trial): \(values) breaks \(constraints)")
                #expect(values["n"]! == values["n"]!.rounded() && (0...6).contains(values["n"]!))
            }
        }
    }

    @Test func findsTheBestCategoryAndWholeNumber() throws {
        let space = PlannerSpace([.categorical(name: "catalyst", options: ["Pd", "Ni", "Cu"]), .integer(name: "n", lower: 1, upper: 9),
                                  .real(name: "t", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 5), seed: 3)
        // Ni is the good catalyst; the best n is 7.
        let proposed = try Self.run(&planner, budget: 20) { v in
            Outcome((v["catalyst"] == 1 ? 2 : 0) - pow(v["n"]! - 7, 2) / 10 - pow(v["t"]! - 0.4, 2))
        }
        for v in proposed { #expect([0, 1, 2].contains(v["catalyst"]!) && v["n"]! == v["n"]!.rounded()) }
        let lastFive = proposed.suffix(5)
        #expect(lastFive.filter { $0["catalyst"] == 1 }.count >= 4)
        #expect(lastFive.contains { $0["n"] == 7 })
    }

    @Test func failedRunsAreAvoidedAndNeverRepeated() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 6), seed: 5)
        // The reaction does not happen above x = 0.6, and the optimum (x = 0.75) is in there.
        let proposed = try Self.run(&planner, budget: 24) { v in v["x"]! > 0.6 ? nil : Outcome(-pow(v["x"]! - 0.75, 2) - pow(v["y"]! - 0.5, 2)) }
        // Later proposals probe the edge of the working region but stay out of the failing one.
        let later = proposed.dropFirst(12)
        #expect(later.allSatisfy { $0["x"]! < 0.65 }, "kept proposing in the failing region: \(later.map { ($0["x"]! * 1000).rounded() / 1000 })")
        let failed = planner.observations.filter { $0.outcome == nil }.map(\.x)
        for (i, a) in failed.enumerated() { for b in failed.dropFirst(i + 1) { #expect(Planner.distance(a, b) > 1e-6) } }
        // The best successful run sits near the edge of the working region.
        let best = planner.observations.compactMap { o in o.outcome.map { (o.x, $0.objectives[0]) } }.max { $0.1 < $1.1 }!
        #expect(best.0[0] > 0.55)
    }

    @Test func anOutcomeConstraintSteersProposalsToWhereItHolds() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 4), seed: 9)
        // Yield rises with x, but purity (≥ 0.5 required) falls: the constrained optimum is x = 0.5.
        let proposed = try Self.run(&planner, budget: 16) { v in
            Outcome(objectives: [v["x"]!], constraintSlacks: [(1 - v["x"]!) - 0.5])
        }
        let lastFour = proposed.suffix(4).map { $0["x"]! }
        #expect(lastFour.allSatisfy { $0 > 0.35 && $0 < 0.56 }, "\(lastFour)")
    }

    /// From `resultsBeforeClimbing` results on, every other proposal climbs in a trust region around
    /// the best result and says so; the ones between, and all before, search the whole space
    /// (decision 18).
    @Test func everyOtherProposalClimbsNearTheBestAndSaysSo() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 4), seed: 1)
        var notes: [String] = []
        for _ in 0..<(Planner.resultsBeforeClimbing + 6) {
            let proposal = try planner.propose(1)[0]
            notes.append(proposal.chosenBy)
            planner.observe(proposal.values, outcome: Outcome(-pow(proposal.values["x"]! - 0.3, 2) - pow(proposal.values["y"]! - 0.6, 2)))
        }
        for (i, note) in notes.enumerated().dropFirst(4) {
            #expect(note.contains("climbing near the best (box ") == (i >= Planner.resultsBeforeClimbing && i % 2 == 0), "\(i): \(note)")
        }
    }

    /// A trust region with nothing left to run in it (whole numbers, all tried nearby) gives way to
    /// the whole space: a campaign can try every value.
    @Test func aTrustRegionWithNothingLeftToRunGivesWayToTheWholeSpace() throws {
        let space = PlannerSpace([.integer(name: "n", lower: 0, upper: 19)])
        var planner = Planner(space: space, options: Self.options(initial: 3), seed: 2)
        let proposed = try Self.run(&planner, budget: 20) { v in Outcome(-abs(v["n"]! - 4)) }
        #expect(Set(proposed.map { $0["n"]! }) == Set((0...19).map(Double.init)))
    }

    @Test func aBatchIsSpreadOutAndPendingPointsAreNotProposedAgain() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 5), seed: 2)
        _ = try Self.run(&planner, budget: 8) { v in Outcome(-pow(v["x"]! - 0.3, 2) - pow(v["y"]! - 0.6, 2)) }
        let batch = try planner.propose(4).map { space.encode($0.values) }
        #expect(planner.pending.count == 4)
        for (i, a) in batch.enumerated() { for b in batch.dropFirst(i + 1) { #expect(Planner.distance(a, b) > 0.01) } }
    }

    @Test func twoObjectivesGiveAParetoFrontAlongTheTradeOff() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        var planner = Planner(space: space, options: Self.options(initial: 6), seed: 4)
        // Maximise both −x² and −(1−x)² (plus y off its best): the front is y = 0.5, x in [0, 1].
        _ = try Self.run(&planner, budget: 24) { v in
            let penalty = pow(v["y"]! - 0.5, 2)
            return Outcome(objectives: [-v["x"]! * v["x"]! - penalty, -pow(1 - v["x"]!, 2) - penalty])
        }
        let front = planner.paretoFront()
        #expect(front.count >= 4)
        // No point on the front is dominated by any observed point.
        let all = planner.observations.compactMap { $0.outcome?.objectives }
        for point in front {
            #expect(!all.contains { o in zip(o, point.objectives).allSatisfy { $0 >= $1 } && zip(o, point.objectives).contains { $0 > $1 } })
        }
        let xs = front.map { $0.values["x"]! }
        #expect(xs.max()! - xs.min()! > 0.4, "the front should span the trade-off, got x = \(xs)")
    }

    @Test func aSavedPlannerResumesWithTheSameNextProposal() throws {
        let space = PlannerSpace([.real(name: "x", lower: -1, upper: 1, logScale: false), .categorical(name: "c", options: ["a", "b"])])
        var planner = Planner(space: space, options: Self.options(initial: 4), seed: 8)
        _ = try Self.run(&planner, budget: 7) { v in v["x"]! < -0.8 ? nil : Outcome(-abs(v["x"]! - 0.2) + v["c"]!) }
        var resumed = try JSONDecoder().decode(Planner.self, from: JSONEncoder().encode(planner))
        let expected = try planner.propose(2).map(\.values)
        #expect(try resumed.propose(2).map(\.values) == expected)
    }

    /// A high-throughput lab's results outnumber what an exact model can take in a second: past
    /// `largestModel` the model keeps the best results and a spread of the rest, and still homes in.
    @Test func withMoreResultsThanTheModelKeepsTheProposalStillLandsByTheBest() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        let count = Planner.largestModel + 150
        var planner = Planner(space: space, options: Self.options(initial: count), seed: 6)
        let f = { (v: [String: Double]) in Outcome(-pow(v["x"]! - 0.3, 2) - pow(v["y"]! - 0.7, 2)) }
        _ = try Self.run(&planner, budget: count, f)
        let best = planner.observations.map { $0.outcome!.objectives[0] }.max()!
        let next = try planner.propose(1)[0]
        #expect(next.chosenBy.hasPrefix("planner (GP"))
        // At least about as good as the best of the 750 (about 0.037 apart in the unit square): the
        // results kept must be the best ones, each with its own point.
        #expect(f(next.values).objectives[0] > best - 0.002, "\(next.values)")
    }

    /// The power transform is on by default and its exponent, learnt from the results, is recorded
    /// with each proposal; `none` records nothing.
    @Test func eachProposalSaysHowTheResultsWereTransformed() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false)])
        // A minimised quantity spanning orders of magnitude arrives negated: heavily skewed.
        let f = { (v: [String: Double]) in Outcome(-pow(10, 4 * abs(v["x"]! - 0.4))) }
        var planner = Planner(space: space, options: Self.options(initial: 6), seed: 3)
        _ = try Self.run(&planner, budget: 8, f)
        let chosenBy = try planner.propose(1)[0].chosenBy
        let power = try #require(chosenBy.firstMatch(of: /results power (-?[0-9.]+)\)$/), "\(chosenBy)")
        // Skewed towards the bad end: the exponent bends it, far from 1.
        #expect(try #require(Double(power.1)) > 1.3, "\(chosenBy)")
        var plain = Self.options(initial: 6)
        plain.outputTransform = .none
        var untransformed = Planner(space: space, options: plain, seed: 3)
        _ = try Self.run(&untransformed, budget: 8, f)
        let untransformedChoice = try untransformed.propose(1)[0].chosenBy
        #expect(untransformedChoice.hasPrefix("planner (GP, log expected improvement") && !untransformedChoice.contains("results power")
                && !untransformedChoice.contains("as measured"),
                "\(untransformedChoice)")
    }

    /// Results worse towards the limits than in the middle put a bowl in the model, and each
    /// proposal says so; with `expect_best: anywhere`, or results better towards a limit, none.
    @Test func eachProposalSaysWhetherWorseResultsAreExpectedTowardsTheLimits() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false), .real(name: "y", lower: 0, upper: 1, logScale: false)])
        let peaked = { (v: [String: Double]) in Outcome(-pow(v["x"]! - 0.45, 2) - pow(v["y"]! - 0.55, 2)) }
        let rising = { (v: [String: Double]) in Outcome(v["x"]! + v["y"]!) }
        func choice(_ expectBest: Planner.ExpectBest, _ f: ([String: Double]) -> Outcome?) throws -> String {
            var options = Self.options(initial: 6)
            options.expectBest = expectBest
            var planner = Planner(space: space, options: options, seed: 5)
            _ = try Self.run(&planner, budget: 8, f)
            return try planner.propose(1)[0].chosenBy
        }
        let said = ", worse results expected towards the range limits"
        #expect(try choice(.inside, peaked).contains(said))
        #expect(try !choice(.anywhere, peaked).contains(said))
        #expect(try !choice(.inside, rising).contains(said))
    }

    /// `auto` models noisy results as measured, and says so, once there are enough of them to tell;
    /// noise-free results of the same function keep the power transform, and so does an explicit
    /// `power` on the noisy ones.
    @Test func noisyResultsAreModelledAsMeasuredAndTheRecordSaysWhy() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false),
                                  .real(name: "y", lower: 0, upper: 1, logScale: false)])
        let smooth = { (v: [String: Double]) in -pow(v["x"]! - 0.3, 2) - pow(v["y"]! - 0.6, 2) }
        func lastChoice(_ transform: OutputTransform, noiseSD: Double) throws -> String {
            var options = Self.options(initial: 6)
            options.outputTransform = transform
            var planner = Planner(space: space, options: options, seed: 5)
            var noise = SplitMix64(seed: 11)
            // Normal noise from a seeded generator: the same on every run.
            _ = try Self.run(&planner, budget: Planner.resultsBeforeNoiseCheck + 2) { v in Outcome(smooth(v) + noiseSD * noise.nextGaussian()) }
            return try planner.propose(1)[0].chosenBy
        }
        // Noise of SD 0.03 on results spread over about 0.2.
        let noisy = try lastChoice(.auto, noiseSD: 0.03)
        #expect(noisy.contains("results as measured: noisy, noise "), "\(noisy)")
        #expect(try lastChoice(.auto, noiseSD: 0).contains("results power "))
        #expect(try lastChoice(.power, noiseSD: 0.03).contains("results power "))
    }

    /// Noisy results, once modelled as measured, keep a constant prior mean: a bowl would pull the
    /// estimates near a limit down with them (decision 20). Bent (`power`), the same results get one.
    @Test func noisyResultsModelledAsMeasuredExpectNoWorseResultsTowardsTheLimits() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false),
                                  .real(name: "y", lower: 0, upper: 1, logScale: false)])
        func lastChoice(_ transform: OutputTransform) throws -> String {
            var options = Self.options(initial: 6)
            options.outputTransform = transform
            var planner = Planner(space: space, options: options, seed: 5)
            var noise = SplitMix64(seed: 11)
            _ = try Self.run(&planner, budget: Planner.resultsBeforeNoiseCheck + 2) { v in
                Outcome(-pow(v["x"]! - 0.45, 2) - pow(v["y"]! - 0.55, 2) + 0.03 * noise.nextGaussian())
            }
            return try planner.propose(1)[0].chosenBy
        }
        let measured = try lastChoice(.auto), bent = try lastChoice(.power)
        #expect(measured.contains("results as measured") && !measured.contains("worse results expected"), "\(measured)")
        #expect(bent.contains("worse results expected towards the range limits"), "\(bent)")
    }

    /// Results of any size are modelled alike: a current in amperes (10⁻¹² and below) is not taken
    /// for a set of equal results. The same campaign in units 10¹² times larger proposes the same points.
    @Test func tinyResultsAreModelledAsTheSameResultsInLargerUnits() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false),
                                  .real(name: "y", lower: 0, upper: 1, logScale: false)])
        func proposals(unit: Double) throws -> [[String: Double]] {
            var planner = Planner(space: space, options: Self.options(initial: 5), seed: 4)
            return try Self.run(&planner, budget: 12) { v in
                Outcome(unit * (2 - pow(v["x"]! - 0.3, 2) - pow(v["y"]! - 0.6, 2)))
            }
        }
        let tiny = try proposals(unit: 1e-14), plain = try proposals(unit: 1)
        for (a, b) in zip(tiny, plain) {
            #expect(abs(a["x"]! - b["x"]!) < 1e-3 && abs(a["y"]! - b["y"]!) < 1e-3, "\(a) against \(b)")
        }
        // And they home in: the last is near the optimum, not in a corner.
        #expect(abs(tiny.last!["x"]! - 0.3) < 0.1 && abs(tiny.last!["y"]! - 0.6) < 0.1, "\(tiny.last!)")
    }
}
