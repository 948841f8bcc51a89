import Foundation

/// Gaussian-process regression on the unit cube: a Matérn-5/2 kernel with one length scale per
/// input and a signal variance, outputs standardised to mean 0 and variance 1, and a prior mean
/// estimated from the data (see `PriorMean` and `weights`). Hyperparameters are
/// the maximum a posteriori estimate (see `Fit.logPrior`), found by L-BFGS with analytic gradients
/// of the log marginal likelihood.
public struct GaussianProcess: Sendable {
    /// How measurement noise is treated.
    public enum NoiseModel: Sendable, Hashable {
        /// Repeat runs give the same result (a simulation, a very precise instrument): the model
        /// interpolates, keeping only a tiny variance for numerical stability.
        case noiseFree
        /// The noise is unknown and estimated from the data.
        case inferred
        /// Each observation's noise variance is known, in the units of the outputs squared.
        case known([Double])
    }

    /// What the model expects far from every result.
    public enum PriorMean: Sendable, Hashable {
        /// 0, with the outputs used as they are (not standardised): a classifier of ±1 labels
        /// should say 0 far from every label, not the labels' average.
        case zero
        /// A constant estimated from the results.
        case constant
        /// A constant that falls towards the edges and corners of the unit cube, as far as the
        /// results say it does (never rising: then it is the constant). Without it the variance far
        /// from every result draws proposals to the corners (decision 20).
        case bowl
    }

    public struct Hyperparameters: Sendable, Hashable, Codable {
        public var lengthScales: [Double]
        /// Variance of the standardised signal (about 1).
        public var signalVariance: Double
        /// Noise variance of the standardised outputs (for `.known`, added to the known variances).
        public var noise: Double

        public init(lengthScales: [Double], signalVariance: Double = 1, noise: Double = 1e-6) {
            self.lengthScales = lengthScales; self.signalVariance = signalVariance; self.noise = noise
        }
    }

    public let inputs: [[Double]]
    public let hyperparameters: Hyperparameters
    public let noiseModel: NoiseModel
    /// Standardisation: output = mean + scale · standardised.
    public let mean: Double
    public let scale: Double
    let standardised: [Double]
    let factor: Cholesky
    public let priorMean: PriorMean
    /// The prior mean (standardised), constant + curvature · `bowl(x)`: what the model expects far
    /// from every result. The curvature is 0 or below.
    let constant: Double
    let curvature: Double
    /// K⁻¹(y − prior mean).
    let alpha: [Double]
    let noiseDiagonal: [Double]

    /// The smallest noise variance (standardised) a model of the objective keeps, for numerical
    /// stability: small enough that noise-free results are interpolated to about 10⁻⁴ of their
    /// spread, where the last digits of a campaign are won (decision 18).
    public static let minimumNoise = 1e-8
    /// The floor of the models of outcome constraints and of failures, which at 10⁻⁸ misjudged
    /// where a linear constraint holds (decision 18).
    public static let coarseNoise = 1e-6

    /// Fits the hyperparameters (starting also from `warmStart`, if given), then conditions on the data.
    public init?(inputs: [[Double]], outputs: [Double], noise: NoiseModel = .inferred, warmStart: Hyperparameters? = nil,
                 maxIterations: Int = 200, priorMean: PriorMean = .constant, noiseFloor: Double = minimumNoise) {
        guard let first = inputs.first, inputs.count == outputs.count else { return nil }
        let (mean, scale) = priorMean == .zero ? (0, 1) : Self.standardisation(outputs)
        let y = outputs.map { ($0 - mean) / scale }
        let fit = Fit(inputs: inputs, y: y, noiseModel: noise, scale: scale, dimensions: first.count, estimatesMean: priorMean != .zero,
                      noiseFloor: noiseFloor)
        // From the last fit, which is usually near the new optimum, and from the prior's mode; with no
        // last fit, also from short length scales, in case the data are wiggly.
        let starts = warmStart.map { [fit.vector($0), fit.priorMode] }
            ?? [fit.priorMode, fit.vector(Hyperparameters(lengthScales: Array(repeating: 0.2, count: first.count)))]
        var best: (theta: [Double], value: Double)?
        for start in starts {
            let result = BoxLBFGS.minimize({ fit.negativeLogPosterior($0) }, from: start, lower: fit.lower, upper: fit.upper,
                                           maxIterations: maxIterations, tolerance: 1e-7)
            if result.value < best?.value ?? .infinity { best = (result.x, result.value) }
        }
        guard let best else { return nil }
        self.init(inputs: inputs, outputs: outputs, hyperparameters: fit.hyperparameters(best.theta), noise: noise,
                  priorMean: priorMean, noiseFloor: noiseFloor)
    }

    /// Conditions on the data with given hyperparameters.
    public init?(inputs: [[Double]], outputs: [Double], hyperparameters: Hyperparameters, noise: NoiseModel = .inferred,
                 priorMean: PriorMean = .constant, noiseFloor: Double = minimumNoise) {
        let (mean, scale) = priorMean == .zero ? (0, 1) : Self.standardisation(outputs)
        let y = outputs.map { ($0 - mean) / scale }
        let diagonal = Self.noiseDiagonal(noise, hyperparameters.noise, floor: noiseFloor, scale: scale, count: inputs.count)
        guard let factor = Cholesky(Self.covariance(inputs, hyperparameters, diagonal), n: inputs.count) else { return nil }
        self.inputs = inputs
        self.hyperparameters = hyperparameters
        self.noiseModel = noise
        self.priorMean = priorMean
        self.mean = mean
        self.scale = scale
        self.standardised = y
        self.factor = factor
        (self.constant, self.curvature, self.alpha) = Self.weights(factor, y, priorMean, inputs)
        self.noiseDiagonal = diagonal
    }

    /// The outputs conditioned on, as given.
    var outputs: [Double] { standardised.map { mean + scale * $0 } }

    /// Posterior mean and variance of the latent function at x, in the units of the outputs.
    public func predict(_ x: [Double]) -> (mean: Double, variance: Double) {
        let p = predictStandardised(x, gradient: false)
        return (mean + scale * p.mean, scale * scale * p.variance)
    }

    /// Posterior mean at x, in the units of the outputs, without the variance's O(n²) cost.
    func predictMean(_ x: [Double]) -> Double {
        var mu = prior(x)
        for i in inputs.indices { mu += hyperparameters.signalVariance * Self.matern(x, inputs[i], hyperparameters.lengthScales).value * alpha[i] }
        return mean + scale * mu
    }

    /// Mean and variance in standardised units, with their gradients in x when asked.
    func predictStandardised(_ x: [Double], gradient: Bool) -> (mean: Double, variance: Double, dMean: [Double], dVariance: [Double]) {
        let n = inputs.count, d = x.count
        let ls = hyperparameters.lengthScales, sf2 = hyperparameters.signalVariance
        var k = [Double](repeating: 0, count: n)
        var dk: [Double] = gradient ? [Double](repeating: 0, count: n * d) : []
        for i in 0..<n {
            let xi = inputs[i]
            let m = Self.matern(x, xi, ls)
            k[i] = sf2 * m.value
            if gradient {
                // ∂k/∂x_j = −σ²·(5/3)(1 + √5 r) e^{−√5 r} · (x_j − x_ij)/ℓ_j²
                let c = -sf2 * m.slope
                for j in 0..<d { dk[i * d + j] = c * (x[j] - xi[j]) / (ls[j] * ls[j]) }
            }
        }
        var mu = prior(x)
        for i in 0..<n { mu += k[i] * alpha[i] }
        let v = factor.forward(k)
        let variance = max(sf2 - BoxLBFGS.dot(v, v), 1e-12 * sf2)
        guard gradient else { return (mu, variance, [], []) }
        let w = factor.backward(v)  // K⁻¹ k
        // ∂bowl/∂xⱼ = 8(xⱼ − 0.5)/d
        var dMean = x.map { curvature * 8 / Double(d) * ($0 - 0.5) }, dVariance = [Double](repeating: 0, count: d)
        for i in 0..<n {
            for j in 0..<d {
                dMean[j] += alpha[i] * dk[i * d + j]
                dVariance[j] -= 2 * w[i] * dk[i * d + j]
            }
        }
        return (mu, variance, dMean, dVariance)
    }

    /// The prior mean at x (standardised).
    func prior(_ x: [Double]) -> Double {
        curvature == 0 ? constant : constant + curvature * Self.bowl(x)
    }

    /// The bowl's shape: 0 at the centre of the unit cube, 1 at its corners, 1/d at the middle of a face.
    static func bowl(_ x: [Double]) -> Double {
        var sum = 0.0
        for v in x { sum += (v - 0.5) * (v - 0.5) }
        return 4 * sum / Double(x.count)
    }

    /// The prior mean's constant c and curvature a, and K⁻¹(y − c − a·bowl). Both are the
    /// generalised-least-squares estimates, which maximise the likelihood: unlike the plain average,
    /// c does not rise as results crowd around a good region, so unexplored regions are not imagined
    /// to be as good as the best one. A curvature above 0 (the results are better towards the edges)
    /// is not taken: then the mean is the constant alone.
    static func weights(_ factor: Cholesky, _ y: [Double], _ priorMean: PriorMean, _ inputs: [[Double]])
        -> (constant: Double, curvature: Double, alpha: [Double]) {
        let kY = factor.solve(y)
        guard priorMean != .zero else { return (0, 0, kY) }
        let k1 = factor.solve([Double](repeating: 1, count: y.count))
        let m = kY.reduce(0, +) / k1.reduce(0, +)
        let flat = (m, 0.0, zip(kY, k1).map { $0 - m * $1 })
        guard priorMean == .bowl else { return flat }
        // The normal equations of c + a·q: [1ᵀK⁻¹1 1ᵀK⁻¹q; qᵀK⁻¹1 qᵀK⁻¹q] (c, a) = (1ᵀK⁻¹y, qᵀK⁻¹y).
        let q = inputs.map(bowl), kQ = factor.solve(q)
        let s11 = k1.reduce(0, +), s12 = BoxLBFGS.dot(q, k1), s22 = BoxLBFGS.dot(q, kQ)
        let r1 = kY.reduce(0, +), r2 = BoxLBFGS.dot(q, kY)
        let determinant = s11 * s22 - s12 * s12
        guard determinant > 1e-12 * s11 * s22 else { return flat }  // the results all equally far from the centre
        let constant = (s22 * r1 - s12 * r2) / determinant, curvature = (s11 * r2 - s12 * r1) / determinant
        guard curvature < 0 else { return flat }
        return (constant, curvature, kY.indices.map { kY[$0] - constant * k1[$0] - curvature * kQ[$0] })
    }

    /// Mean and standard deviation; a deviation below 10⁻¹² of the results' size (equal results, up
    /// to rounding) is taken as 1. Relative, not absolute: currents in amperes or amounts in moles
    /// vary by 10⁻¹² and less, and are not all equal. Computed on the results scaled by their size,
    /// so that squares of tiny results do not underflow.
    static func standardisation(_ y: [Double]) -> (Double, Double) {
        let mean = y.reduce(0, +) / Double(y.count)
        let size = y.reduce(0) { max($0, abs($1)) }
        guard size > 0 else { return (mean, 1) }
        let relative = (y.reduce(0) { $0 + pow(($1 - mean) / size, 2) } / Double(max(y.count - 1, 1))).squareRoot()
        return (mean, relative > 1e-12 ? relative * size : 1)
    }

    /// Matérn-5/2 correlation between two points.
    static func kernel(_ a: [Double], _ b: [Double], _ lengthScales: [Double]) -> Double {
        matern(a, b, lengthScales).value
    }

    /// The Matérn-5/2 correlation k(r) = (1 + √5 r + 5r²/3) e^{−√5 r}, r² = Σ ((a − b)/ℓ)², and
    /// `slope` = (5/3)(1 + √5 r) e^{−√5 r}, the factor every derivative of k shares.
    @inline(__always)
    static func matern(_ a: [Double], _ b: [Double], _ lengthScales: [Double]) -> (value: Double, slope: Double) {
        var r2 = 0.0
        for i in a.indices {
            let d = (a[i] - b[i]) / lengthScales[i]
            r2 += d * d
        }
        let r = (5 * r2).squareRoot(), e = exp(-r)
        return ((1 + r + r * r / 3) * e, (5.0 / 3) * (1 + r) * e)
    }

    static func noiseDiagonal(_ model: NoiseModel, _ noise: Double, floor: Double, scale: Double, count: Int) -> [Double] {
        switch model {
        case .noiseFree: Array(repeating: floor, count: count)
        case .inferred: Array(repeating: max(noise, floor), count: count)
        case .known(let variances): (0..<count).map { max(variances[$0] / (scale * scale) + noise, floor) }
        }
    }

    static func covariance(_ x: [[Double]], _ h: Hyperparameters, _ diagonal: [Double]) -> [Double] {
        let n = x.count
        var k = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<i {
                let value = h.signalVariance * kernel(x[i], x[j], h.lengthScales)
                k[i * n + j] = value
                k[j * n + i] = value
            }
            k[i * n + i] = h.signalVariance + diagonal[i]
        }
        return k
    }
}

/// The MAP objective over θ = (log ℓ₁…log ℓ_d, log σ², [log noise]) and its gradient.
struct Fit {
    let inputs: [[Double]]
    let y: [Double]
    let noiseModel: GaussianProcess.NoiseModel
    let scale: Double
    let dimensions: Int
    /// Whether a constant prior mean is estimated (profiled out: at its estimate the likelihood's
    /// derivative in m is 0, so the gradient in θ keeps its form). The hyperparameters of a model
    /// with a bowl are fitted with the constant alone: fitted with the bowl, they missed optima in
    /// a corner far more often (decision 20).
    var estimatesMean = true
    var noiseFloor = GaussianProcess.minimumNoise

    /// Priors, as in Optuna's GP sampler: each inverse squared length scale λ = 1/ℓ² is kept near 1 by
    /// −0.1(λ + 1/λ); the signal variance follows Gamma(2, 1); the noise variance Gamma(1.1, 30), which
    /// favours small noise without forbidding more.
    static func logPrior(_ theta: [Double], dimensions d: Int, infersNoise: Bool) -> (value: Double, gradient: [Double]) {
        var value = 0.0, gradient = [Double](repeating: 0, count: theta.count)
        for c in 0..<d {
            let l2 = exp(2 * theta[c])
            value -= 0.1 * (l2 + 1 / l2)
            gradient[c] = -0.2 * (l2 - 1 / l2)
        }
        let signal = exp(theta[d])
        value += theta[d] - signal
        gradient[d] = 1 - signal
        if infersNoise {
            let noise = exp(theta[d + 1])
            value += 0.1 * theta[d + 1] - 30 * noise
            gradient[d + 1] = 0.1 - 30 * noise
        }
        return (value, gradient)
    }

    var infersNoise: Bool {
        if case .noiseFree = noiseModel { return false }
        return true
    }
    var count: Int { dimensions + 1 + (infersNoise ? 1 : 0) }
    var lower: [Double] {
        Array(repeating: log(1e-3), count: dimensions) + [log(0.05)] + (infersNoise ? [log(noiseFloor)] : [])
    }
    var upper: [Double] { Array(repeating: log(1e3), count: dimensions) + [log(20.0)] + (infersNoise ? [log(2.0)] : []) }

    var priorMode: [Double] {
        Array(repeating: 0, count: dimensions) + [0] + (infersNoise ? [log(0.1 / 30)] : [])
    }

    func vector(_ h: GaussianProcess.Hyperparameters) -> [Double] {
        h.lengthScales.map { log($0) } + [log(h.signalVariance)] + (infersNoise ? [log(max(h.noise, noiseFloor))] : [])
    }

    func hyperparameters(_ theta: [Double]) -> GaussianProcess.Hyperparameters {
        GaussianProcess.Hyperparameters(lengthScales: theta.prefix(dimensions).map { exp($0) }, signalVariance: exp(theta[dimensions]),
                                        noise: infersNoise ? exp(theta[dimensions + 1]) : noiseFloor)
    }

    /// −log p(θ | y) up to a constant, and its gradient: ½ tr((ααᵀ − K⁻¹) ∂K/∂θ) per component.
    func negativeLogPosterior(_ theta: [Double]) -> (value: Double, gradient: [Double])? {
        let h = hyperparameters(theta)
        let n = inputs.count, d = dimensions
        let diagonal = GaussianProcess.noiseDiagonal(noiseModel, h.noise, floor: noiseFloor, scale: scale, count: n)
        guard let factor = Cholesky(GaussianProcess.covariance(inputs, h, diagonal), n: n) else { return nil }
        let (constant, _, alpha) = GaussianProcess.weights(factor, y, estimatesMean ? .constant : .zero, inputs)
        var logPosterior = -0.5 * BoxLBFGS.dot(y.map { $0 - constant }, alpha) - 0.5 * factor.logDeterminant
        var gradient = [Double](repeating: 0, count: count)
        let inverse = factor.inverse()
        let ls = h.lengthScales, sf2 = h.signalVariance
        for i in 0..<n {
            let xi = inputs[i]
            for j in 0..<i {
                let w = alpha[i] * alpha[j] - inverse[i * n + j]
                let xj = inputs[j]
                let m = GaussianProcess.matern(xi, xj, ls)
                // Off-diagonal pairs count twice, and the ½ of the trace cancels that.
                gradient[d] += w * sf2 * m.value
                let c5 = w * sf2 * m.slope
                for c in 0..<d {
                    let t = (xi[c] - xj[c]) / ls[c]
                    gradient[c] += c5 * t * t
                }
            }
            let wii = alpha[i] * alpha[i] - inverse[i * n + i]
            gradient[d] += 0.5 * wii * sf2
            if infersNoise { gradient[d + 1] += 0.5 * wii * h.noise }
        }
        let prior = Self.logPrior(theta, dimensions: d, infersNoise: infersNoise)
        logPosterior += prior.value
        for c in gradient.indices { gradient[c] += prior.gradient[c] }
        return (-logPosterior, gradient.map { -$0 })
    }
}
