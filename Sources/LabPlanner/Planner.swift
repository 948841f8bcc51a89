import Foundation
public import LabCore

/// Bayesian optimisation as a value: a space, options, and what has been observed. `propose` fits
/// a Gaussian process to the results, and returns the points of highest (log) expected improvement,
/// weighted by the probability that a run there succeeds. Pure and deterministic given its seed, and
/// Codable, so a campaign's planner state can be saved and resumed after a restart.
public struct Planner: Sendable, Codable {
    public enum InitialDesign: String, Sendable, Codable { case sobol, latinHypercube, random }
    public enum Noise: String, Sendable, Codable { case noiseFree, inferred }

    public struct Options: Sendable, Codable {
        public var initialDesign: InitialDesign = .sobol
        public var initialPoints = 5
        public var noise: Noise = .inferred
        /// Quasi-random candidates scored before the best few are refined by L-BFGS.
        public var rawSamples = 1024
        public var restarts = 8
        public init() {}
    }

    /// One finished experiment: where (unit coordinates), and the result (higher is better) or nil
    /// if the run failed.
    public struct Observation: Sendable, Codable, Hashable {
        public var x: [Double]
        public var y: Double?
    }

    public let space: PlannerSpace
    public let options: Options
    public let seed: UInt64
    public private(set) var observations: [Observation] = []
    /// Proposals handed out and not yet observed; the next proposals keep away from them.
    public private(set) var pending: [[Double]] = []
    private var proposals = 0
    private var lastFit: GaussianProcess.Hyperparameters?
    private var lastFitCount = 0

    public init(space: PlannerSpace, options: Options = Options(), seed: UInt64) {
        self.space = space
        self.options = options
        self.seed = seed
    }

    /// Records a result at a point given in the space's values; the point stops being pending.
    public mutating func observe(_ values: [String: Double], outcome: Double?) {
        let x = space.encode(values)
        if let index = pending.firstIndex(where: { Self.distance($0, x) < 1e-9 }) { pending.remove(at: index) }
        observations.append(Observation(x: x, y: outcome.flatMap { $0.isFinite ? $0 : nil }))
    }

    /// The next `count` points to run, as values by name, with who chose each.
    public mutating func propose(_ count: Int = 1) throws -> [(values: [String: Double], chosenBy: String)] {
        var result: [(values: [String: Double], chosenBy: String)] = []
        for _ in 0..<count {
            let (x, chosenBy) = try proposeOne()
            pending.append(x)
            proposals += 1
            result.append((space.decode(x), chosenBy))
        }
        return result
    }

    private var random: SplitMix64 { SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(proposals + 1)) }

    private mutating func proposeOne() throws -> ([Double], String) {
        let started = observations.count + pending.count
        if started < options.initialPoints {
            return (initialPoint(started), "initial design (\(options.initialDesign.rawValue))")
        }
        let successes = observations.filter { $0.y != nil }
        guard successes.count >= 2 else {
            var rng = random
            return (feasibleRandomPoints(1, using: &rng).first ?? initialPoint(started), "random (fewer than two successful runs)")
        }
        guard let model = fitObjective(successes) else {
            throw LabError(.planner, "the Gaussian process could not be fitted to \(successes.count) results")
        }
        let feasibility = observations.count > successes.count ? FeasibilityModel(observations) : nil
        // Pending points are believed to come out at the model's mean (the "kriging believer").
        var believed = model
        if !pending.isEmpty {
            let xs = model.inputs + pending
            let ys = successes.map { $0.y! } + pending.map { model.predict($0).mean }
            believed = GaussianProcess(inputs: xs, outputs: ys, hyperparameters: model.hyperparameters,
                                       noise: model.noiseModel.forCount(xs.count)) ?? model
        }
        let best = successes.map { $0.y! }.max()!
        var rng = random
        let avoid = observations.map(\.x) + pending
        let optimizer = AcquisitionOptimizer(model: believed, feasibility: feasibility, best: best, space: space, avoid: avoid,
                                             rawSamples: options.rawSamples, restarts: options.restarts)
        guard let x = optimizer.maximize(using: &rng) else { throw LabError(.planner, "no point satisfies the constraints") }
        return (x, "planner (GP, log expected improvement)")
    }

    private mutating func fitObjective(_ successes: [Observation]) -> GaussianProcess? {
        let noise: GaussianProcess.NoiseModel = options.noise == .noiseFree ? .noiseFree : .inferred
        let xs = successes.map(\.x), ys = successes.map { $0.y! }
        // Refit the hyperparameters while data are few; with many, only when they grew by a tenth
        // (conditioning on the new data is still exact).
        if let lastFit, xs.count > Self.maximumFittingPoints, Double(xs.count) < 1.1 * Double(lastFitCount),
           let gp = GaussianProcess(inputs: xs, outputs: ys, hyperparameters: lastFit, noise: noise) {
            return gp
        }
        // Each step of the fit costs O(n³): with many data, fit to a subset (the best results, where
        // the model matters most, and an even spread of the rest), then condition on everything.
        let subset = Self.fittingSubset(ys, size: Self.maximumFittingPoints)
        guard let fitted = GaussianProcess(inputs: subset.map { xs[$0] }, outputs: subset.map { ys[$0] }, noise: noise,
                                           warmStart: lastFit) else { return nil }
        (lastFit, lastFitCount) = (fitted.hyperparameters, xs.count)
        return subset.count == xs.count ? fitted
            : GaussianProcess(inputs: xs, outputs: ys, hyperparameters: fitted.hyperparameters, noise: noise)
    }

    static let maximumFittingPoints = 150

    /// Indices of at most `size` results: the better half of the budget by value, then every k-th of the rest.
    static func fittingSubset(_ ys: [Double], size: Int) -> [Int] {
        guard ys.count > size else { return Array(ys.indices) }
        let ranked = ys.indices.sorted { ys[$0] > ys[$1] }
        let rest = ranked.dropFirst(size / 2)
        let stride = Double(rest.count) / Double(size - size / 2)
        return Array(ranked.prefix(size / 2)) + (0..<(size - size / 2)).map { rest[rest.startIndex + Int(Double($0) * stride)] }
    }

    private func initialPoint(_ index: Int) -> [Double] {
        var rng = SplitMix64(seed: seed)
        let n = max(options.initialPoints, index + 1)
        let design: [[Double]] = switch options.initialDesign {
        case .sobol where space.width <= Sobol.maximumDimensions:
            { var sobol = Sobol(dimensions: space.width, scramble: &rng); return sobol.points(n) }()
        case .latinHypercube:
            LatinHypercube.sample(count: n, dimensions: space.width, using: &rng)
        default:
            (0..<n).map { _ in (0..<space.width).map { _ in Double.random(in: 0..<1, using: &rng) } }
        }
        var x = space.snap(design[index])
        if !space.isFeasible(unit: x) { x = space.projectOntoConstraints(x).map(space.snap) ?? x }
        if space.isFeasible(unit: x) { return x }
        var fallback = SplitMix64(seed: seed &+ UInt64(index))
        return feasibleRandomPoints(1, using: &fallback).first ?? x
    }

    /// Random points that meet the constraints (projected onto them where needed).
    func feasibleRandomPoints(_ count: Int, using rng: inout some RandomNumberGenerator) -> [[Double]] {
        var points: [[Double]] = []
        for _ in 0..<count * 20 where points.count < count {
            let x = (0..<space.width).map { _ in Double.random(in: 0..<1, using: &rng) }
            if let p = space.projectOntoConstraints(x).map(space.snap), space.isFeasible(unit: p) { points.append(p) }
        }
        return points
    }

    static func distance(_ a: [Double], _ b: [Double]) -> Double {
        var sum = 0.0
        for i in a.indices { sum += (a[i] - b[i]) * (a[i] - b[i]) }
        return sum.squareRoot()
    }
}

extension GaussianProcess.NoiseModel {
    /// The same model for a data set grown to `count` points (known noise: the new points get the mean).
    func forCount(_ count: Int) -> Self {
        guard case .known(let variances) = self, variances.count < count else { return self }
        let mean = variances.reduce(0, +) / Double(max(variances.count, 1))
        return .known(variances + Array(repeating: mean, count: count - variances.count))
    }
}
