import Foundation
import LabCore
@testable import LabPlanner
import Testing

@Suite struct GaussianProcessTests {
    @Test func posteriorMatchesTheHandComputedOnePointCase() throws {
        // One observation y=2 at x=0, noise σ²=0.01, length scale 1. With standardisation of a single
        // value the mean is 2 and the scale 1, so at x the posterior mean is 2 + k(x,0)/(1+σ²)·0 = 2 and
        // the variance is 1 − k²/(1+σ²).
        let h = GaussianProcess.Hyperparameters(lengthScales: [1], noise: 0.01)
        let gp = try #require(GaussianProcess(inputs: [[0]], outputs: [2], hyperparameters: h))
        let k = GaussianProcess.kernel([0.5], [0], [1])
        let p = gp.predict([0.5])
        #expect(abs(p.mean - 2) < 1e-12)
        #expect(abs(p.variance - (1 - k * k / 1.01)) < 1e-12)
    }

    @Test func farFromTheDataThePredictionIsTheGeneralisedLeastSquaresMean() throws {
        // Two close results of 1 (correlation ρ) and a distant 0. The inverse covariance gives each of
        // the pair weight 1/(1+ρ) and the distant one weight 1, so the constant prior mean is
        // 2/(1+ρ) / (2/(1+ρ) + 1) = 2/(3+ρ): the pair counts as about one result, not two, and the
        // prediction far away stays near 0.55 instead of the average 0.67.
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.1], noise: 1e-9)
        let gp = try #require(GaussianProcess(inputs: [[0], [0.05], [1]], outputs: [1, 1, 0], hyperparameters: h, noise: .inferred))
        let r = 5.0.squareRoot() * 0.5
        let rho = (1 + r + r * r / 3) * exp(-r)
        #expect(abs(gp.predict([5]).mean - 2 / (3 + rho)) < 1e-6)
    }

    @Test func matchesTheHandComputedTwoPointMean() throws {
        // Outputs 0 and 2 standardise to −1/√2 and +1/√2 (mean 1, sd √2).
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.5], noise: 1e-6)
        let gp = try #require(GaussianProcess(inputs: [[0], [1]], outputs: [0, 2], hyperparameters: h))
        let k01 = GaussianProcess.kernel([0], [1], [0.5])
        let (a, b) = (1 + 1e-6, k01)
        let y = [-1 / 2.squareRoot(), 1 / 2.squareRoot()]
        let det = a * a - b * b
        let alpha = [(a * y[0] - b * y[1]) / det, (a * y[1] - b * y[0]) / det]
        let x = [0.3]
        let kx = [GaussianProcess.kernel(x, [0], [0.5]), GaussianProcess.kernel(x, [1], [0.5])]
        let expected = 1 + 2.squareRoot() * (kx[0] * alpha[0] + kx[1] * alpha[1])
        #expect(abs(gp.predict(x).mean - expected) < 1e-9)
    }

    /// Results lying exactly on 3 − 2·bowl(x), far apart beside the length scale (so K ≈ I and the
    /// generalised least squares are ordinary ones): far from them the prediction follows the bowl,
    /// down to 1 at a corner, where a constant mean would say their average.
    @Test func farFromTheDataABowlPredictsLessTowardsTheCorners() throws {
        let xs: [[Double]] = [[0.5, 0.5], [0.9, 0.5], [0.2, 0.8], [0.1, 0.1]]
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.01, 0.01], noise: 1e-6)
        let bowl = try #require(GaussianProcess(inputs: xs, outputs: xs.map { 3 - 2 * GaussianProcess.bowl($0) },
                                                hyperparameters: h, priorMean: .bowl))
        #expect(abs(GaussianProcess.bowl([1, 1]) - 1) < 1e-12 && abs(GaussianProcess.bowl([0.5, 0.9]) - 0.32) < 1e-12)
        #expect(abs(bowl.predict([1, 1]).mean - 1) < 1e-6)
        #expect(abs(bowl.predict([0.5, 0.9]).mean - 2.36) < 1e-6)
        #expect(abs(bowl.predict([0.4, 0.3]).mean - (3 - 2 * 0.1)) < 1e-6)
    }

    /// Results better towards the edges do not turn the bowl over: far away, the prediction is the
    /// constant's, as without a bowl.
    @Test func aBowlNeverRisesTowardsTheEdges() throws {
        let xs: [[Double]] = [[0.5, 0.5], [0.9, 0.5], [0.2, 0.8], [0.1, 0.1]]
        let ys = xs.map { 3 + 2 * GaussianProcess.bowl($0) }
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.01, 0.01], noise: 1e-6)
        let bowl = try #require(GaussianProcess(inputs: xs, outputs: ys, hyperparameters: h, priorMean: .bowl))
        let flat = try #require(GaussianProcess(inputs: xs, outputs: ys, hyperparameters: h, priorMean: .constant))
        #expect(bowl.curvature == 0)
        for x in [[1.0, 1.0], [0.5, 0.9], [0.0, 0.3]] {
            #expect(abs(bowl.predict(x).mean - flat.predict(x).mean) < 1e-12)
            #expect(abs(bowl.predict(x).mean - ys.reduce(0, +) / 4) < 1e-6)
        }
    }

    @Test func interpolatesNoiseFreeDataAndIsUncertainFarAway() throws {
        let xs: [[Double]] = (0..<8).map { [Double($0) / 7] }
        let ys = xs.map { sin(6 * $0[0]) }
        let gp = try #require(GaussianProcess(inputs: xs, outputs: ys))
        for (x, y) in zip(xs, ys) { #expect(abs(gp.predict(x).mean - y) < 0.05) }
        #expect(gp.predict([0.5 / 7]).variance < gp.predict([3]).variance)
    }
}

@Suite struct DesignTests {
    @Test func latinHypercubePutsOnePointInEverySliceOfEveryAxis() {
        var rng = SplitMix64(seed: 3)
        let points = LatinHypercube.sample(count: 10, dimensions: 3, using: &rng)
        for axis in 0..<3 {
            #expect(Set(points.map { Int($0[axis] * 10) }) == Set(0..<10))
        }
    }
}

@Suite struct BayesianOptimizerTests {
    static let space = PlannerSpace([.real(name: "x", lower: -2, upper: 2, logScale: false),
                                     .real(name: "y", lower: 0, upper: 10, logScale: false)])

    static func objective(_ v: [String: Double]) -> Double {
        -pow(v["x"]! - 0.7, 2) - pow((v["y"]! - 3) / 5, 2)
    }

    static func campaign(seed: UInt64, budget: Int) async throws -> [Suggestion] {
        let optimizer = BayesianOptimizer(space: space, seed: seed)
        var suggestions: [Suggestion] = []
        for _ in 0..<budget {
            let s = try await optimizer.suggest()
            suggestions.append(s)
            await optimizer.observe(s.values, outcome: Outcome(objective(s.values)))
        }
        return suggestions
    }

    @Test func theSameSeedGivesTheSameProposals() async throws {
        let a = try await Self.campaign(seed: 9, budget: 8), b = try await Self.campaign(seed: 9, budget: 8)
        #expect(a == b)
        #expect(try await Self.campaign(seed: 10, budget: 8) != a)
    }

    @Test func proposalsStayInsideTheBox() async throws {
        for s in try await Self.campaign(seed: 1, budget: 12) {
            #expect((-2...2).contains(s.values["x"]!) && (0...10).contains(s.values["y"]!))
        }
    }

    @Test func findsTheOptimumOfASmoothFunctionBetterThanItsInitialDesign() async throws {
        let s = try await Self.campaign(seed: 4, budget: 20)
        let initial = s.prefix(5).map { Self.objective($0.values) }.max()!
        let best = s.map { Self.objective($0.values) }.max()!
        #expect(best > initial)
        #expect(best > -0.01)
    }

    @Test func steersAwayFromAFailedRegion() async throws {
        let optimizer = BayesianOptimizer(space: Self.space, options: { var o = Planner.Options(); o.initialPoints = 3; return o }(), seed: 2)
        for _ in 0..<3 {
            let s = try await optimizer.suggest()
            await optimizer.observe(s.values, outcome: Outcome(Self.objective(s.values)))
        }
        // A failed run at the optimum: it must not be proposed again.
        let failed = ["x": 0.7, "y": 3.0]
        await optimizer.observe(failed, outcome: nil)
        let next = try await optimizer.suggest()
        #expect(abs(next.values["x"]! - 0.7) + abs(next.values["y"]! - 3) / 5 > 0.01)
    }
}
