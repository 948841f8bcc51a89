import Foundation
public import LabCore

/// Bayesian optimisation as a value: a space, options, and what has been observed. `propose` fits
/// a Gaussian process to the results and returns the point of highest log expected improvement,
/// weighted by the probability that a run there succeeds and meets the outcome constraints. Several
/// objectives are scalarised with random weights per proposal (ParEGO), so successive proposals
/// spread along the Pareto front. Pure and deterministic given its seed, and Codable, so a
/// campaign's planner state can be saved and resumed after a restart.
public struct Planner: Sendable, Codable {
    public enum InitialDesign: String, Sendable, Codable {
        case sobol, latinHypercube, random

        var label: String {
            switch self {
            case .sobol: "Sobol"
            case .latinHypercube: "Latin hypercube"
            case .random: "random"
            }
        }
    }
    public enum Noise: String, Sendable, Codable {
        /// Repeat runs agree exactly; the model interpolates.
        case noiseFree
        /// Estimated from the data.
        case inferred
        /// Given with each result (`Outcome.noiseVariance`).
        case known
    }
    /// What a failed run teaches.
    public enum Failures: String, Sendable, Codable {
        /// Learn where runs fail (a classifier) and steer away.
        case avoid
        /// Count a failure as the worst result so far.
        case worst
    }

    /// What "a promising next experiment" means.
    public enum Acquisition: Sendable, Codable, Hashable {
        /// log expected improvement over the best result so far: the default.
        case logExpectedImprovement
        /// mean + √β · standard deviation: explores more as β grows.
        case upperConfidenceBound(beta: Double)
        /// log probability of improvement over the best result so far.
        case probabilityOfImprovement
    }

    public struct Options: Sendable, Codable {
        public var acquisition: Acquisition = .logExpectedImprovement
        public var initialDesign: InitialDesign = .latinHypercube
        public var initialPoints = 5
        public var noise: Noise = .inferred
        public var failures: Failures = .avoid
        public var outputTransform: OutputTransform = .power
        /// Quasi-random candidates scored before the best few are refined by L-BFGS.
        public var rawSamples = 1024
        public var restarts = 8
        public init() {}
    }

    /// One finished experiment: where (unit coordinates), and its outcome, or nil if the run failed.
    public struct Observation: Sendable, Codable, Hashable {
        public var x: [Double]
        public var outcome: Outcome?
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

    /// The largest size of a result the model takes. Beyond it the squares that standardising the
    /// results sums overflow, and the model, and every later proposal, would be lost.
    public static let largestResult = 1e100

    /// Records a result at a point given in the space's values; the point stops being pending.
    /// Numbers in the outcome that are not finite, or beyond ±`largestResult` (a noise variance:
    /// below zero or beyond its square), count as a failed run.
    public mutating func observe(_ values: [String: Double], outcome: Outcome?) {
        let x = space.encode(values)
        if let index = pending.firstIndex(where: { Self.distance($0, x) < 1e-9 }) { pending.remove(at: index) }
        let valid = outcome.flatMap { o in
            (o.objectives + o.constraintSlacks).allSatisfy { abs($0) <= Self.largestResult } && !o.objectives.isEmpty
                && (0...Self.largestResult * Self.largestResult).contains(o.noiseVariance ?? 0) ? o : nil
        }
        observations.append(Observation(x: x, outcome: valid))
    }

    /// Forgets a proposal that will not be run (a person rejected it): it is no longer pending.
    public mutating func withdraw(_ values: [String: Double]) {
        let x = space.encode(values)
        if let index = pending.firstIndex(where: { Self.distance($0, x) < 1e-9 }) { pending.remove(at: index) }
    }

    /// The next `count` points to run, as values by name, with who chose each. Points handed out in
    /// one call, or not yet observed from earlier calls, are kept apart.
    public mutating func propose(_ count: Int = 1) throws -> [(values: [String: Double], chosenBy: String)] {
        var result: [(values: [String: Double], chosenBy: String)] = []
        // The initial design is drawn once per call, not once per point of a batch.
        var design: [[Double]]?
        for _ in 0..<count {
            let (x, chosenBy) = try proposeOne(design: &design)
            pending.append(x)
            proposals += 1
            result.append((space.decode(x), chosenBy))
        }
        return result
    }

    /// The successful results no other successful result beats on every objective (among those
    /// meeting the outcome constraints), with their values.
    public func paretoFront() -> [(values: [String: Double], objectives: [Double])] {
        let candidates = observations.compactMap { o in o.outcome.flatMap { $0.meetsConstraints ? (o.x, $0.objectives) : nil } }
        return candidates.filter { a in
            !candidates.contains { b in
                zip(b.1, a.1).allSatisfy { $0 >= $1 } && zip(b.1, a.1).contains { $0 > $1 }
            }
        }.map { (space.decode($0.0), $0.1) }
    }

    private var random: SplitMix64 { SplitMix64(seed: seed, stream: UInt64(proposals + 1)) }

    private mutating func proposeOne(design: inout [[Double]]?) throws -> ([Double], String) {
        let started = observations.count + pending.count
        if started < options.initialPoints {
            if design == nil { design = initialDesign(options.initialPoints) }
            return (initialPoint(started, of: design!), "initial design (\(options.initialDesign.label))")
        }
        var rng = random
        let successes = observations.filter { $0.outcome != nil }
        guard successes.count >= 2 else {
            return (feasibleRandomPoints(1, using: &rng).first ?? initialPoint(started, of: initialDesign(started + 1)),
                    "random (fewer than two successful runs)")
        }
        let objectives = successes[0].outcome!.objectives.count
        let environment = ProcessInfo.processInfo.environment
        // Each objective transformed over all results; a known noise follows the first one's slope
        // (held finite: a steep slope, as the log's near zero, must not overflow it).
        var transform = options.outputTransform
        if ProcessInfo.processInfo.environment["SERENDIP_EXP_CHOOSE"] != nil, objectives == 1, transform == .power, options.noise == .inferred {
            transform = Self.likelierTransform([.power, .none], inputs: successes.map(\.x), values: successes.map { $0.outcome!.objectives[0] }) ?? transform
        }
        let columns = try (0..<objectives).map { i in try transform.apply(successes.map { $0.outcome!.objectives[i] }) }
        let scalar = Self.scalarisation(successes.indices.map { r in columns.map { $0.values[r] } }, using: &rng)
        var training = successes.indices.map { r in
            (x: successes[r].x, y: scalar[r],
             noise: successes[r].outcome!.noiseVariance.map { min($0 * pow(columns[0].slopes[r], 2), Self.largestResult * Self.largestResult) })
        }
        var probabilities: [ProbabilityModel] = []
        let failed = observations.filter { $0.outcome == nil }
        if !failed.isEmpty {
            switch options.failures {
            case .avoid:
                if let classifier = ProbabilityModel(classifying: observations) { probabilities.append(classifier) }
            case .worst:
                let worst = scalar.min()!
                training += failed.map { (x: $0.x, y: worst, noise: nil) }
            }
        }
        // Experiment: the inferred noise follows the transform's slope (single objective).
        var relative: [Double]? = nil
        if environment["SERENDIP_EXP_SLOPENOISE"] != nil, objectives == 1, options.noise == .inferred {
            let squares = columns[0].slopes.map { $0 * $0 }
            let mean = squares.reduce(0, +) / Double(squares.count)
            if mean > 0, mean.isFinite {
                relative = squares.map { $0 / mean } + Array(repeating: 1, count: training.count - squares.count)
            }
        }
        if environment["SERENDIP_EXP_GRADCHECK"] != nil {
            let gp0 = GaussianProcess(inputs: training.map(\.x), outputs: training.map(\.y), hyperparameters: .init(lengthScales: Array(repeating: 0.5, count: space.width)))!
            let fit = Fit(inputs: gp0.inputs, y: gp0.standardised, noiseModel: .inferred, scale: gp0.scale, dimensions: space.width, warps: true)
            let theta = fit.priorMode.indices.map { 0.3 * sin(Double($0) * 1.7 + 0.4) + fit.priorMode[$0] }
            let g = fit.negativeLogPosterior(theta)!.gradient
            let fd = theta.indices.map { k -> Double in
                var p = theta, m = theta; p[k] += 1e-6; m[k] -= 1e-6
                return (fit.negativeLogPosterior(p)!.value - fit.negativeLogPosterior(m)!.value) / 2e-6
            }
            FileHandle.standardError.write(Data("grad \(zip(g, fd).map { "\(($0 * 1e4).rounded() / 1e4)/\(($1 * 1e4).rounded() / 1e4)" })\n".utf8))
        }
        guard let model = fitObjective(training, relative: relative) else {
            throw LabError(.planner, "the Gaussian process could not be fitted to \(training.count) results")
        }
        let slackCounts = successes[0].outcome!.constraintSlacks.count
        for j in 0..<slackCounts {
            if let m = ProbabilityModel(constraint: successes.map(\.x), slacks: successes.map { $0.outcome!.constraintSlacks[j] }) {
                probabilities.append(m)
            }
        }
        // Pending points are believed to come out at the model's mean (the "kriging believer").
        var believed = model
        if !pending.isEmpty {
            let xs = model.inputs + pending
            let ys = training.map(\.y) + pending.map { model.predict($0).mean }
            believed = GaussianProcess(inputs: xs, outputs: ys, hyperparameters: model.hyperparameters,
                                       noise: model.noiseModel.forCount(xs.count)) ?? model
        }
        let pairs = Int(environment["SERENDIP_EXP_PAIRS"] ?? "") ?? 0
        var ensemble: [GaussianProcess] = []
        var ensembleSettings: [GaussianProcess.Hyperparameters] = []
        if pairs > 0 {
            var ensembleRandom = SplitMix64(seed: ~seed, stream: UInt64(proposals + 1))
            let settings = HyperparameterEnsemble.laplace(model, pairs: pairs, inflation: Double(environment["SERENDIP_EXP_INFLATION"] ?? "") ?? 1,
                                                          using: &ensembleRandom)
            ensembleSettings = Array(settings.dropFirst())
        }
        let modes = Int(environment["SERENDIP_EXP_MODES"] ?? "") ?? 0
        if modes > 0 {
            var ensembleRandom = SplitMix64(seed: ~seed, stream: UInt64(proposals + 1))
            ensembleSettings += HyperparameterEnsemble.modes(model, starts: modes, delta: Double(environment["SERENDIP_EXP_MODEDELTA"] ?? "") ?? 3,
                                                             using: &ensembleRandom)
        }
        if !ensembleSettings.isEmpty {
            let outputs = believed.standardised.map { believed.mean + believed.scale * $0 }
            ensemble = ensembleSettings.compactMap {
                GaussianProcess(inputs: believed.inputs, outputs: outputs, hyperparameters: $0, noise: believed.noiseModel)
            }
        }
        // The incumbent: the best result that met the outcome constraints; with none yet, the
        // acquisition only seeks where they are met.
        var best = zip(successes, scalar).filter { $0.0.outcome!.meetsConstraints }.map(\.1).max()
        if environment["SERENDIP_EXP_BEST"] == "mean", best != nil {
            best = successes.filter { $0.outcome!.meetsConstraints }.map { model.predict($0.x).mean }.max()
        }
        // Experiment: early on, every other proposal climbs the best result away from the incumbent.
        var box: (lower: [Double], upper: [Double])? = nil
        let climbs = Int(environment["SERENDIP_EXP_RUNNERUP"] ?? "") ?? 0
        let step = observations.count - options.initialPoints
        let every = Int(environment["SERENDIP_EXP_RUEVERY"] ?? "") ?? 0
        let lsRadius = Double(environment["SERENDIP_EXP_LSRADIUS"] ?? "")
        func apart(_ a: [Double], _ b: [Double]) -> Double {
            guard lsRadius != nil else { return Self.distance(a, b) }
            return zip(zip(a, b), model.hyperparameters.lengthScales).reduce(0) { $0 + pow(($1.0.0 - $1.0.1) / $1.1, 2) }.squareRoot()
        }
        if (climbs > 0 && step < 2 * climbs && step % 2 == 1) || (every > 0 && step % every == every - 1), let incumbent = best {
            let radius = lsRadius ?? Double(environment["SERENDIP_EXP_RADIUS"] ?? "") ?? 0.5
            let half = Double(environment["SERENDIP_EXP_BOX"] ?? "") ?? 0.15
            let top = zip(successes, scalar).first { $0.1 == incumbent }!.0.x
            if let runnerUp = zip(successes, scalar).filter({ apart($0.0.x, top) > radius && $0.0.outcome!.meetsConstraints })
                .max(by: { $0.1 < $1.1 }) {
                best = runnerUp.1
                box = (runnerUp.0.x.map { max($0 - half, 0) }, runnerUp.0.x.map { min($0 + half, 1) })
                // Experiment: a model of the results near the runner-up only, with its own length scales.
                if let reach = Double(environment["SERENDIP_EXP_LOCALGP"] ?? "") {
                    let near = zip(successes, scalar).filter { zip($0.0.x, runnerUp.0.x).allSatisfy { abs($0 - $1) <= reach } }
                    if near.count >= 4, let local = GaussianProcess(inputs: near.map(\.0.x), outputs: near.map(\.1), noise: .inferred) {
                        believed = local
                    }
                }
            }
        }
        if environment["SERENDIP_EXP_DEBUG"] != nil {
            FileHandle.standardError.write(Data("n=\(successes.count) \(columns[0].note ?? "none") noise=\(model.hyperparameters.noise) sf2=\(model.hyperparameters.signalVariance) ls=\(model.hyperparameters.lengthScales) best=\(best ?? .nan) maxobs=\(scalar.max()!) scale=\(model.scale)\n".utf8))
        }
        var acquisition = options.acquisition
        if environment["SERENDIP_EXP_PORTFOLIO"] != nil {
            var choice = SplitMix64(seed: seed ^ 0x5EED, stream: UInt64(proposals + 1))
            let t = Double(observations.count + 1), d = Double(space.width)
            let beta = Double(environment["SERENDIP_EXP_BETA"] ?? "") ?? 2 * 0.5 * log(pow(t, d / 2 + 2) * Double.pi * Double.pi / (3 * 0.1))
            acquisition = [Acquisition.logExpectedImprovement, .probabilityOfImprovement, .upperConfidenceBound(beta: beta)][Int(choice.next() % 3)]
        }
        let optimizer = AcquisitionOptimizer(model: believed, acquisition: acquisition, probabilities: probabilities,
                                             best: best, space: space,
                                             avoid: observations.map(\.x), pending: pending, rawSamples: options.rawSamples,
                                             restarts: options.restarts, ensemble: ensemble, box: box)
        guard let x = optimizer.maximize(using: &rng) else { throw LabError(.planner, "no point satisfies the constraints") }
        let scalarised = objectives > 1 ? "ParEGO, " : ""
        let criterion = switch acquisition {
        case .upperConfidenceBound: "upper confidence bound"
        case .probabilityOfImprovement: "probability of improvement"
        case .logExpectedImprovement: "log expected improvement"
        }
        return (x, "planner (GP, \(scalarised)\(criterion)\(Self.modelled(columns.map(\.note))))")
    }

    /// The transform under which a fitted Gaussian process makes the results, as measured, most
    /// likely: its log marginal likelihood at the fitted hyperparameters (with their prior), less
    /// the log of the scale it standardised by, plus the log of the transform's slope at each result.
    static func likelierTransform(_ transforms: [OutputTransform], inputs: [[Double]], values: [Double]) -> OutputTransform? {
        var best: (OutputTransform, Double)?
        for transform in transforms {
            guard let t = try? transform.apply(values),
                  let gp = GaussianProcess(inputs: inputs, outputs: t.values, noise: .inferred) else { continue }
            let fit = Fit(inputs: inputs, y: gp.standardised, noiseModel: .inferred, scale: gp.scale, dimensions: inputs[0].count)
            guard let negative = fit.negativeLogPosterior(fit.vector(gp.hyperparameters))?.value else { continue }
            let score = -negative - Double(values.count) * log(gp.scale) + t.slopes.reduce(0) { $0 + log($1) }
            if ProcessInfo.processInfo.environment["SERENDIP_EXP_DEBUG"] != nil {
                FileHandle.standardError.write(Data("  \(transform) score=\(score) note=\(t.note ?? "")\n".utf8))
            }
            if score > best?.1 ?? -.infinity { best = (transform, score) }
        }
        return best?.0
    }

    /// How the results were transformed, for `chosenBy` ("…, results power 0.42": the Yeo–Johnson
    /// exponent learnt from them; 1 is no bend).
    static func modelled(_ notes: [String?]) -> String {
        notes.contains { $0 != nil } ? ", results " + notes.map { $0 ?? "as measured" }.joined(separator: " / ") : ""
    }

    /// One objective as it is; several as ParEGO's augmented Chebyshev scalarisation with random
    /// weights: each objective scaled to [0, 1] over the results, s = min λᵢfᵢ + 0.05 Σ λᵢfᵢ.
    static func scalarisation(_ objectives: [[Double]], using rng: inout some RandomNumberGenerator) -> [Double] {
        guard let count = objectives.first?.count, count > 1 else { return objectives.map { $0[0] } }
        let weights: [Double] = {
            let draws = (0..<count).map { _ in -log(Double.random(in: Double.ulpOfOne..<1, using: &rng)) }
            let total = draws.reduce(0, +)
            return draws.map { $0 / total }
        }()
        let lows = (0..<count).map { i in objectives.map { $0[i] }.min()! }
        let highs = (0..<count).map { i in objectives.map { $0[i] }.max()! }
        return objectives.map { (o: [Double]) -> Double in
            let scaled: [Double] = (0..<count).map { (i: Int) -> Double in
                let range = max(highs[i] - lows[i], 1e-12)
                return weights[i] * (o[i] - lows[i]) / range
            }
            return scaled.min()! + 0.05 * scaled.reduce(0, +)
        }
    }

    private mutating func fitObjective(_ training: [(x: [Double], y: Double, noise: Double?)], relative: [Double]? = nil) -> GaussianProcess? {
        let xs = training.map(\.x), ys = training.map(\.y)
        let noise: GaussianProcess.NoiseModel = switch options.noise {
        case .noiseFree: .noiseFree
        case .inferred: relative.map { .inferredRelative($0) } ?? .inferred
        case .known:
            .known({
                let given = training.compactMap(\.noise)
                let typical = given.isEmpty ? 0 : given.reduce(0, +) / Double(given.count)
                return training.map { $0.noise ?? typical }
            }())
        }
        // With very many results the model is conditioned on a subset (`largestModel`): the best
        // results and an even spread of the rest.
        let kept = Self.fittingSubset(ys, size: Self.largestModel)
        let (keptX, keptY, keptNoise) = (kept.map { xs[$0] }, kept.map { ys[$0] }, noise.subset(kept))
        // Refit the hyperparameters while data are few; with many, only when they grew by a tenth
        // (conditioning on the new data is still exact).
        if let lastFit, xs.count > Self.maximumFittingPoints, Double(xs.count) < 1.1 * Double(lastFitCount),
           let gp = GaussianProcess(inputs: keptX, outputs: keptY, hyperparameters: lastFit, noise: keptNoise) {
            return gp
        }
        // Each step of the fit costs O(n³): with many data, fit to a subset (the best results, where
        // the model matters most, and an even spread of the rest), then condition on everything kept.
        let subset = Self.fittingSubset(ys, size: Self.maximumFittingPoints)
        guard let fitted = GaussianProcess(inputs: subset.map { xs[$0] }, outputs: subset.map { ys[$0] },
                                           noise: noise.subset(subset), warmStart: lastFit,
                                           warps: ProcessInfo.processInfo.environment["SERENDIP_EXP_WARP"] != nil) else { return nil }
        (lastFit, lastFitCount) = (fitted.hyperparameters, xs.count)
        return subset.count == xs.count ? fitted
            : GaussianProcess(inputs: keptX, outputs: keptY, hyperparameters: fitted.hyperparameters, noise: keptNoise)
    }

    static let maximumFittingPoints = 150
    /// The most results the model is conditioned on. Conditioning costs O(n³) and each prediction
    /// O(n²), so past this a proposal would take seconds; a high-throughput lab's thousands of
    /// results are represented by the best half of this budget and an even spread of the rest.
    static let largestModel = 600

    /// Indices of at most `size` results: the better half of the budget by value, then every k-th of the rest.
    static func fittingSubset(_ ys: [Double], size: Int) -> [Int] {
        guard ys.count > size else { return Array(ys.indices) }
        let ranked = ys.indices.sorted { ys[$0] > ys[$1] }
        let rest = ranked.dropFirst(size / 2)
        let stride = Double(rest.count) / Double(size - size / 2)
        return Array(ranked.prefix(size / 2)) + (0..<(size - size / 2)).map { rest[rest.startIndex + Int(Double($0) * stride)] }
    }

    /// The first `n` points of the initial design, the same for the same seed.
    private func initialDesign(_ n: Int) -> [[Double]] {
        var rng = SplitMix64(seed: seed)
        return switch options.initialDesign {
        case .sobol where space.width <= Sobol.maximumDimensions:
            { var sobol = Sobol(dimensions: space.width, scramble: &rng); return sobol.points(n) }()
        case .latinHypercube:
            LatinHypercube.sample(count: n, dimensions: space.width, using: &rng)
        default:
            (0..<n).map { _ in (0..<space.width).map { _ in Double.random(in: 0..<1, using: &rng) } }
        }
    }

    private func initialPoint(_ index: Int, of design: [[Double]]) -> [Double] {
        var x = space.snap(design[index])
        if !space.isFeasible(unit: x) { x = space.projectOntoConstraints(x).map(space.snap) ?? x }
        if space.isFeasible(unit: x) { return x }
        var fallback = SplitMix64(seed: seed, stream: ~UInt64(index))
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
    func subset(_ indices: [Int]) -> Self {
        switch self {
        case .known(let variances): return .known(indices.map { variances[$0] })
        case .inferredRelative(let weights): return .inferredRelative(indices.map { weights[$0] })
        default: return self
        }
    }

    /// The same model for a data set grown to `count` points (known noise: the new points get the mean).
    func forCount(_ count: Int) -> Self {
        func padded(_ values: [Double]) -> [Double] {
            let mean = values.reduce(0, +) / Double(max(values.count, 1))
            return values + Array(repeating: mean, count: max(count - values.count, 0))
        }
        switch self {
        case .known(let variances): return .known(padded(variances))
        case .inferredRelative(let weights): return .inferredRelative(padded(weights))
        default: return self
        }
    }
}
