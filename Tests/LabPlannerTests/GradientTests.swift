import Foundation
import LabCore
@testable import LabPlanner
import Testing

/// Analytic gradients against central finite differences: a wrong sign or a missing factor in any
/// of them silently ruins the fit or the acquisition search, so each is checked directly.
@Suite struct GradientTests {
    static func data(n: Int, d: Int, seed: UInt64) -> ([[Double]], [Double]) {
        var rng = SplitMix64(seed: seed)
        let xs = (0..<n).map { _ in (0..<d).map { _ in Double.random(in: 0..<1, using: &rng) } }
        let ys = xs.map { x in x.enumerated().reduce(0) { $0 + sin(3 * $1.element + Double($1.offset)) } }
        return (xs, ys)
    }

    static func finiteDifference(_ f: ([Double]) -> Double, at x: [Double], step: Double = 1e-6) -> [Double] {
        x.indices.map { i in
            var up = x, down = x
            up[i] += step
            down[i] -= step
            return (f(up) - f(down)) / (2 * step)
        }
    }

    static func expectClose(_ a: [Double], _ b: [Double], relative: Double = 1e-4, _ what: String) {
        for (u, v) in zip(a, b) {
            #expect(abs(u - v) <= relative * max(1, abs(u), abs(v)), "\(what): analytic \(a) vs numeric \(b)")
        }
    }

    @Test(arguments: [GaussianProcess.NoiseModel.inferred, .noiseFree, .known([0.01, 0.02, 0.01, 0.03, 0.01, 0.01, 0.02, 0.01, 0.01, 0.05, 0.01, 0.01])])
    func theMarginalLikelihoodGradientMatchesFiniteDifferences(noise: GaussianProcess.NoiseModel) throws {
        let (xs, ys) = Self.data(n: 12, d: 3, seed: 5)
        let (mean, scale) = GaussianProcess.standardisation(ys)
        let fit = Fit(inputs: xs, y: ys.map { ($0 - mean) / scale }, noiseModel: noise, scale: scale, dimensions: 3)
        for theta in [fit.priorMode, [log(0.3), log(0.7), log(2.0), log(1.3)] + (fit.infersNoise ? [log(0.01)] : [])] {
            let analytic = try #require(fit.negativeLogPosterior(theta)).gradient
            let numeric = Self.finiteDifference({ fit.negativeLogPosterior($0)!.value }, at: theta)
            Self.expectClose(analytic, numeric, "∂(−log posterior)/∂θ")
        }
    }

    @Test func thePosteriorMeanAndVarianceGradientsMatchFiniteDifferences() throws {
        let (xs, ys) = Self.data(n: 15, d: 4, seed: 8)
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.4, 0.7, 0.3, 1.2], signalVariance: 1.3, noise: 1e-4)
        let gp = try #require(GaussianProcess(inputs: xs, outputs: ys, hyperparameters: h))
        let x = [0.31, 0.62, 0.45, 0.17]
        let p = gp.predictStandardised(x, gradient: true)
        Self.expectClose(p.dMean, Self.finiteDifference({ gp.predictStandardised($0, gradient: false).mean }, at: x), "∂mean/∂x")
        Self.expectClose(p.dVariance, Self.finiteDifference({ gp.predictStandardised($0, gradient: false).variance }, at: x), "∂variance/∂x")
    }

    /// With a bowl in the prior mean (results peaking mid-cube, so its curvature is below 0).
    @Test func thePosteriorMeanGradientWithABowlMatchesFiniteDifferences() throws {
        let (xs, ys) = Self.data(n: 15, d: 4, seed: 8)
        let peaked = zip(xs, ys).map { 0.1 * $0.1 - 3 * GaussianProcess.bowl($0.0) }
        let h = GaussianProcess.Hyperparameters(lengthScales: [0.4, 0.7, 0.3, 1.2], signalVariance: 1.3, noise: 1e-4)
        let gp = try #require(GaussianProcess(inputs: xs, outputs: peaked, hyperparameters: h, priorMean: .bowl))
        #expect(gp.curvature < 0)
        for x in [[0.31, 0.62, 0.45, 0.17], [0.95, 0.02, 0.5, 0.88]] {
            let p = gp.predictStandardised(x, gradient: true)
            Self.expectClose(p.dMean, Self.finiteDifference({ gp.predictStandardised($0, gradient: false).mean }, at: x), "∂mean/∂x")
            #expect(abs(gp.predictMean(x) - gp.predict(x).mean) < 1e-9 * max(1, abs(gp.predict(x).mean)))
        }
    }

    /// The cheap mean (no variance) used for the incumbent of noisy results is the full prediction's.
    @Test func theMeanAloneIsTheFullPredictionsMean() throws {
        let (xs, ys) = Self.data(n: 15, d: 4, seed: 9)
        let gp = try #require(GaussianProcess(inputs: xs, outputs: ys.map { 40 + 7 * $0 }))
        for x in [[0.31, 0.62, 0.45, 0.17], xs[3], [0, 1, 0.5, 0.99]] {
            #expect(abs(gp.predictMean(x) - gp.predict(x).mean) < 1e-9 * max(1, abs(gp.predict(x).mean)), "\(x)")
        }
    }

    @Test(arguments: [-40.0, -8, -1.5, -0.5, 0.3, 3])
    func logExpectedImprovementAndItsDerivativesMatchFiniteDifferences(z: Double) {
        let sigma = 0.7, best = 1.0, mean = best + z * sigma
        let v = LogExpectedImprovement.value(mean: mean, sigma: sigma, best: best)
        // Where EI is representable, log EI is its logarithm.
        let ei = (mean - best) * LogExpectedImprovement.normalCDF(z) + sigma * LogExpectedImprovement.normalPDF(z)
        if ei > 1e-300 { #expect(abs(v.value - log(ei)) < 1e-6 * max(1, abs(v.value))) }
        #expect(v.value.isFinite)
        let step = 1e-6 * max(1, abs(mean))
        let dMean = (LogExpectedImprovement.value(mean: mean + step, sigma: sigma, best: best).value
            - LogExpectedImprovement.value(mean: mean - step, sigma: sigma, best: best).value) / (2 * step)
        let dSigma = (LogExpectedImprovement.value(mean: mean, sigma: sigma + 1e-7, best: best).value
            - LogExpectedImprovement.value(mean: mean, sigma: sigma - 1e-7, best: best).value) / 2e-7
        Self.expectClose([v.dMean, v.dSigma], [dMean, dSigma], relative: 1e-4, "log EI at z=\(z)")
    }

    @Test func theAcquisitionGradientWithFailureAndConstraintModelsMatchesFiniteDifferences() throws {
        let (xs, ys) = Self.data(n: 14, d: 2, seed: 3)
        let observations = zip(xs, ys).enumerated().map {
            Planner.Observation(x: $0.element.0, outcome: $0.offset % 4 == 0 ? nil : Outcome($0.element.1))
        }
        let successes = observations.filter { $0.outcome != nil }
        let values = successes.map { $0.outcome!.objectives[0] }
        let gp = try #require(GaussianProcess(inputs: successes.map(\.x), outputs: values))
        let classifier = try #require(ProbabilityModel(classifying: observations))
        let constraint = try #require(ProbabilityModel(constraint: successes.map(\.x), slacks: values.map { $0 - 0.5 }))
        let optimizer = AcquisitionOptimizer(model: gp, probabilities: [classifier, constraint], best: values.max()!,
                                             space: PlannerSpace([.real(name: "a", lower: 0, upper: 1, logScale: false),
                                                                  .real(name: "b", lower: 0, upper: 1, logScale: false)]),
                                             avoid: [], rawSamples: 16, restarts: 1)
        var ucb = optimizer
        ucb.acquisition = .upperConfidenceBound(beta: 4)
        for x in [[0.2, 0.8], [0.55, 0.35]] {
            for candidate in [optimizer, ucb] {
                let (_, g) = candidate.value(x, gradient: true)
                Self.expectClose(g, Self.finiteDifference({ candidate.value($0).0 }, at: x), "∂acquisition/∂x (\(candidate.acquisition))")
            }
        }
    }

    @Test func lbfgsFindsTheMinimumOfARosenbrockValleyAndRespectsTheBox() {
        let f: ([Double]) -> (value: Double, gradient: [Double])? = { x in
            let (a, b) = (x[0], x[1])
            return (100 * pow(b - a * a, 2) + pow(1 - a, 2), [-400 * a * (b - a * a) - 2 * (1 - a), 200 * (b - a * a)])
        }
        let free = BoxLBFGS.minimize(f, from: [-1.2, 1], lower: [-2, -2], upper: [2, 2], maxIterations: 500, tolerance: 1e-14)
        #expect(abs(free.x[0] - 1) < 1e-4 && abs(free.x[1] - 1) < 1e-4)
        let boxed = BoxLBFGS.minimize(f, from: [-1.2, 0.5], lower: [-2, -2], upper: [0.5, 2], maxIterations: 500, tolerance: 1e-14)
        #expect(boxed.x[0] == 0.5)
        #expect(abs(boxed.x[1] - 0.25) < 1e-4)
    }
}
