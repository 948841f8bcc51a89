import Foundation

/// A Gaussian-process regression on the unit cube with a Matérn-5/2 kernel and one length scale per
/// input. Outputs are standardised; hyperparameters (length scales, noise) are chosen by maximising
/// the log marginal likelihood over a coarse grid, one coordinate at a time.
public struct GaussianProcess: Sendable {
    public struct Hyperparameters: Sendable, Hashable {
        public var lengthScales: [Double]
        /// Noise variance relative to the (standardised) signal variance of 1.
        public var noise: Double
    }

    public let inputs: [[Double]]
    public let hyperparameters: Hyperparameters
    private let mean: Double
    private let scale: Double
    private let factor: Cholesky
    private let alpha: [Double]

    static let lengthScaleGrid = [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.5]
    static let noiseGrid = [1e-6, 1e-4, 1e-3, 1e-2, 5e-2, 0.2]

    /// Fits the hyperparameters, then conditions on the data.
    public init?(inputs: [[Double]], outputs: [Double]) {
        guard let first = inputs.first, inputs.count == outputs.count else { return nil }
        let (mean, scale) = Self.standardisation(outputs)
        let y = outputs.map { ($0 - mean) / scale }
        var best = Hyperparameters(lengthScales: Array(repeating: 0.3, count: first.count), noise: 1e-3)
        var bestLikelihood = Self.logMarginalLikelihood(inputs, y, best) ?? -.infinity
        for _ in 0..<3 {
            for dimension in 0...first.count {
                let options = dimension == first.count ? Self.noiseGrid : Self.lengthScaleGrid
                for option in options {
                    var candidate = best
                    if dimension == first.count { candidate.noise = option } else { candidate.lengthScales[dimension] = option }
                    if let l = Self.logMarginalLikelihood(inputs, y, candidate), l > bestLikelihood {
                        (best, bestLikelihood) = (candidate, l)
                    }
                }
            }
        }
        self.init(inputs: inputs, outputs: outputs, hyperparameters: best)
    }

    /// Conditions on the data with given hyperparameters.
    public init?(inputs: [[Double]], outputs: [Double], hyperparameters: Hyperparameters) {
        let (mean, scale) = Self.standardisation(outputs)
        let y = outputs.map { ($0 - mean) / scale }
        guard let factor = Cholesky(Self.covariance(inputs, hyperparameters), n: inputs.count) else { return nil }
        self.inputs = inputs
        self.hyperparameters = hyperparameters
        self.mean = mean
        self.scale = scale
        self.factor = factor
        alpha = factor.solve(y)
    }

    /// Posterior mean and variance of the latent function at x, in the units of the outputs.
    public func predict(_ x: [Double]) -> (mean: Double, variance: Double) {
        let k = inputs.map { Self.kernel($0, x, hyperparameters.lengthScales) }
        let mu = zip(k, alpha).reduce(0) { $0 + $1.0 * $1.1 }
        let v = factor.forward(k)
        let variance = max(1 - v.reduce(0) { $0 + $1 * $1 }, 1e-12)
        return (mean + scale * mu, scale * scale * variance)
    }

    static func standardisation(_ y: [Double]) -> (Double, Double) {
        let mean = y.reduce(0, +) / Double(y.count)
        let variance = y.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(y.count - 1, 1))
        return (mean, variance > 1e-18 ? variance.squareRoot() : 1)
    }

    static func kernel(_ a: [Double], _ b: [Double], _ lengthScales: [Double]) -> Double {
        var r2 = 0.0
        for i in a.indices {
            let d = (a[i] - b[i]) / lengthScales[i]
            r2 += d * d
        }
        let r = (5 * r2).squareRoot()
        return (1 + r + r * r / 3) * exp(-r)
    }

    static func covariance(_ x: [[Double]], _ h: Hyperparameters) -> [Double] {
        let n = x.count
        var k = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                let value = kernel(x[i], x[j], h.lengthScales) + (i == j ? h.noise : 0)
                k[i * n + j] = value
                k[j * n + i] = value
            }
        }
        return k
    }

    /// log p(y | X, θ) plus a weak log-normal prior on each length scale that keeps them off the
    /// extremes when data are scarce.
    static func logMarginalLikelihood(_ x: [[Double]], _ y: [Double], _ h: Hyperparameters) -> Double? {
        guard let factor = Cholesky(covariance(x, h), n: x.count) else { return nil }
        let alpha = factor.solve(y)
        let fit = zip(y, alpha).reduce(0) { $0 + $1.0 * $1.1 }
        let prior = h.lengthScales.reduce(0) { $0 - pow(log($1 / 0.3), 2) / 2 }
        return -0.5 * fit - 0.5 * factor.logDeterminant + prior
    }
}
