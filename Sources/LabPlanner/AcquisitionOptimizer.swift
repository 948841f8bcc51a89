import Foundation

/// The probability that something holds at x, from a Gaussian process: that a run succeeds (fitted
/// to ±1 labels, success or failure, and squashed through the normal CDF), or that an outcome
/// constraint is met (fitted to its slack, P = Φ(μ/σ)). Cheap, smooth, and enough to steer proposals
/// away from where runs fail or results break a constraint.
struct ProbabilityModel {
    let gp: GaussianProcess
    /// Added to the variance under the square root: 1 for the classifier's probit, 0 for a slack.
    let offset: Double

    init?(classifying observations: [Planner.Observation]) {
        guard let gp = GaussianProcess(inputs: observations.map(\.x), outputs: observations.map { $0.outcome == nil ? -1 : 1 },
                                       noise: .inferred, maxIterations: 60, priorMean: .zero,
                                       noiseFloor: GaussianProcess.coarseNoise) else { return nil }
        (self.gp, offset) = (gp, 1)
    }

    init?(constraint inputs: [[Double]], slacks: [Double]) {
        guard let gp = GaussianProcess(inputs: inputs, outputs: slacks, noise: .inferred, maxIterations: 60,
                                       noiseFloor: GaussianProcess.coarseNoise) else { return nil }
        (self.gp, offset) = (gp, 0)
    }

    /// Whether x is on the failing side: the classifier leans towards failure there. Such points
    /// are not proposed at all (a penalty alone saturates, and a large expected improvement
    /// inside a failing region would outweigh it).
    func rulesOut(_ x: [Double]) -> Bool {
        offset == 1 && gp.predictStandardised(x, gradient: false).mean < 0
    }

    /// log P and its gradient.
    func logProbability(_ x: [Double], gradient: Bool) -> (Double, [Double]) {
        let p = gp.predictStandardised(x, gradient: gradient)
        let mean = gp.mean + gp.scale * p.mean, variance = gp.scale * gp.scale * p.variance
        let denominator = (offset + variance).squareRoot()
        let z = mean / denominator
        let logCDF = Self.logNormalCDF(z)
        guard gradient else { return (logCDF, []) }
        // d log Φ(z)/dz = φ(z)/Φ(z); dz/dx = dmean/s − mean·dv/(2s³) with s = √(offset + v).
        let ratio = exp(-z * z / 2 - 0.5 * log(2 * Double.pi) - logCDF)
        let g = x.indices.map { j in
            let dMean = gp.scale * p.dMean[j], dVariance = gp.scale * gp.scale * p.dVariance[j]
            return ratio * (dMean / denominator - mean * dVariance / (2 * denominator * denominator * denominator))
        }
        return (logCDF, g)
    }

    static func logNormalCDF(_ z: Double) -> Double {
        if z > -5 { return log(0.5 * erfc(-z / 2.squareRoot())) }
        let u = -z / 2.squareRoot()
        return log(LogExpectedImprovement.erfcx(u) / 2) - z * z / 2
    }
}

/// Finds the point of highest acquisition value: scores quasi-random candidates and candidates
/// near the best points so far, then refines the most promising few with L-BFGS on analytic
/// gradients. Every point it returns can be run: on whole numbers, one-hot, inside the constraints,
/// and not a repeat of a point already run or pending.
struct AcquisitionOptimizer {
    let model: GaussianProcess
    var acquisition: Planner.Acquisition = .logExpectedImprovement
    let probabilities: [ProbabilityModel]
    /// The incumbent; nil when no result meets the outcome constraints yet (then only the
    /// probabilities count).
    let best: Double?
    let space: PlannerSpace
    /// Points already run: never proposed again.
    let avoid: [[Double]]
    /// Points proposed and still running: a new proposal keeps a tenth of a length scale away from
    /// each, since the kriging believer alone lets a batch crowd around one optimum.
    var pending: [[Double]] = []
    let rawSamples: Int
    let restarts: Int
    /// Where the proposal must lie, if anywhere in particular.
    var region: TrustRegion?

    /// log EI (or UCB) + Σ log P, with its gradient when asked.
    func value(_ x: [Double], gradient: Bool = false) -> (Double, [Double]) {
        var value = 0.0
        var g = [Double](repeating: 0, count: gradient ? x.count : 0)
        if case .upperConfidenceBound(let beta) = acquisition {
            let p = model.predictStandardised(x, gradient: gradient)
            let sigma = p.variance.squareRoot(), root = beta.squareRoot()
            value = UpperConfidenceBound.value(mean: p.mean, sigma: sigma, beta: beta)
            if gradient {
                for j in g.indices { g[j] = p.dMean[j] + root * p.dVariance[j] / (2 * sigma) }
            }
        } else if let best {
            let p = model.predictStandardised(x, gradient: gradient)
            let sigma = p.variance.squareRoot()
            let ei = LogExpectedImprovement.value(mean: p.mean, sigma: sigma, best: (best - model.mean) / model.scale)
            value = ei.value
            if gradient {
                for j in g.indices { g[j] = ei.dMean * p.dMean[j] + ei.dSigma * p.dVariance[j] / (2 * sigma) }
            }
        }
        for model in probabilities {
            let (logP, dLogP) = model.logProbability(x, gradient: gradient)
            value += logP
            if gradient { for j in g.indices { g[j] += dLogP[j] } }
        }
        return (value, g)
    }

    /// Whether x can be proposed: feasible, not (nearly) a point already run or pending, and, unless
    /// relaxed, not crowding a pending point and not on the failing side.
    func admissible(_ x: [Double], relaxed: Relaxation = [], sameness: [Double]) -> Bool {
        guard space.isFeasible(unit: x), relaxed.contains(.mayFail) || !probabilities.contains(where: { $0.rulesOut(x) }),
              !avoid.contains(where: { Self.within($0, x, sameness, 1) }) else { return false }
        if relaxed.contains(.mayCrowd) { return !pending.contains { Self.within($0, x, sameness, 1) } }
        let lengthScales = model.hyperparameters.lengthScales
        return !pending.contains { Self.within($0, x, lengthScales, 0.01) }
    }

    /// Rules dropped, in turn, while no candidate meets them: first the distance kept from pending
    /// points (a batch larger than the space has room for, or length scales longer than the space
    /// when the results barely change), then the classifier's verdict (when most runs failed, its
    /// probability alone has to steer).
    struct Relaxation: OptionSet {
        let rawValue: Int
        static let mayCrowd = Relaxation(rawValue: 1), mayFail = Relaxation(rawValue: 2)
        static let inTurn: [Relaxation] = [[], [.mayCrowd], [.mayFail], [.mayCrowd, .mayFail]]
    }

    func maximize(using rng: inout some RandomNumberGenerator) -> [Double]? {
        let width = space.width
        var sobol = Sobol(dimensions: min(width, Sobol.maximumDimensions), scramble: &rng)
        // Scoring a candidate costs O(n²); with many data, fewer candidates keep a proposal fast.
        let samples = model.inputs.count > 200 ? max(256, rawSamples * 200 / model.inputs.count) : rawSamples
        var candidates: [[Double]] = (0..<samples).map { _ in
            var x = sobol.next()
            while x.count < width { x.append(Double.random(in: 0..<1, using: &rng)) }
            return region?.scale(x) ?? x
        }
        // Around the best results: Gaussian steps scaled by each input's length scale.
        let ranked = zip(model.inputs, model.standardised).sorted { $0.1 > $1.1 }.prefix(5).map(\.0)
        let lengthScales = model.hyperparameters.lengthScales
        for (rank, centre) in ranked.enumerated() {
            for k in 0..<(rank == 0 ? 200 : 60) {
                let spread = k % 2 == 0 ? 0.1 : 0.02
                let step = centre.indices.map { j in min(max(centre[j] + spread * min(lengthScales[j], 2) * Self.gaussian(&rng), 0), 1) }
                candidates.append(region?.clamp(step) ?? step)
            }
        }
        let runnable = candidates.compactMap { x -> [Double]? in
            let p = space.snap(x)
            guard !space.constraints.isEmpty, !space.isFeasible(unit: p) else { return p }
            return space.projectOntoConstraints(p).map(space.snap)
        }
        var relaxed: Relaxation = [], usable: [[Double]] = []
        let sameness = space.sameness.map { max(1e-6, $0) }
        for rules in Relaxation.inTurn where usable.isEmpty {
            relaxed = rules
            usable = runnable.filter { admissible($0, relaxed: rules, sameness: sameness) }
        }
        let scored = usable.map { ($0, value($0).0) }.filter { $0.1.isFinite }
        guard var best = scored.max(by: { $0.1 < $1.1 }) else { return nil }
        let lower = region?.lower ?? [Double](repeating: 0, count: width), upper = region?.upper ?? [Double](repeating: 1, count: width)
        for start in [best.0] + Self.roulette(scored, count: restarts - 1, excluding: best.0, using: &rng) {
            let refined = BoxLBFGS.minimize({ x in
                let (v, g) = self.value(x, gradient: true)
                return v.isFinite ? (-v, g.map { -$0 }) : nil
            }, from: start, lower: lower, upper: upper, maxIterations: 100, tolerance: 1e-10)
            var x = space.snap(refined.x)
            if !space.isFeasible(unit: x) {
                guard let projected = space.projectOntoConstraints(x) else { continue }
                x = space.snap(projected)
            }
            guard admissible(x, relaxed: relaxed, sameness: sameness) else { continue }
            let v = value(x).0
            if v > best.1 { best = (x, v) }
        }
        return best.0
    }

    /// Whether Σ ((aⱼ − bⱼ)/scalesⱼ)² < limit: b inside an ellipsoid around a, as the same run (scales
    /// the resolution of each input, limit 1) or crowding it (length scales, a tenth of one). Scored
    /// for every candidate against every point run or pending (a batch of hundreds): a plain loop.
    static func within(_ a: [Double], _ b: [Double], _ scales: [Double], _ limit: Double) -> Bool {
        var sum = 0.0
        for j in a.indices {
            let step = (a[j] - b[j]) / scales[j]
            sum += step * step
        }
        return sum < limit
    }

    /// Starting points drawn with probability proportional to their acquisition value (exp of its
    /// log), without replacement: promising, but spread over several basins rather than crowded
    /// around one.
    static func roulette(_ scored: [([Double], Double)], count: Int, excluding first: [Double],
                         using rng: inout some RandomNumberGenerator) -> [[Double]] {
        let top = scored.map(\.1).max() ?? 0
        var pool = scored.filter { $0.0 != first }.map { ($0.0, exp($0.1 - top)) }.filter { $0.1 > 0 }
        var chosen: [[Double]] = []
        while chosen.count < count, !pool.isEmpty {
            let total = pool.reduce(0) { $0 + $1.1 }
            var r = Double.random(in: 0..<total, using: &rng), index = 0
            while index < pool.count - 1, r >= pool[index].1 { r -= pool[index].1; index += 1 }
            chosen.append(pool.remove(at: index).0)
        }
        return chosen
    }

    static func gaussian(_ rng: inout some RandomNumberGenerator) -> Double {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &rng), v = Double.random(in: 0..<1, using: &rng)
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
