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

    /// Where the best result is expected to lie.
    public enum ExpectBest: String, Sendable, Codable, CaseIterable {
        /// Inside the ranges: where the results fall towards the limits, unexplored limits and
        /// corners are expected to be worse still (a bowl in the model's prior mean, decision 20).
        case inside
        /// Anywhere, the limits included: far from every result the model expects one level.
        case anywhere
    }

    /// What "a promising next experiment" means.
    public enum Acquisition: Sendable, Codable, Hashable {
        /// log expected improvement over the best result so far: the default.
        case logExpectedImprovement
        /// mean + √β · standard deviation: explores more as β grows.
        case upperConfidenceBound(beta: Double)
    }

    public struct Options: Sendable, Codable {
        public var acquisition: Acquisition = .logExpectedImprovement
        public var initialDesign: InitialDesign = .latinHypercube
        public var initialPoints = 5
        public var noise: Noise = .inferred
        public var failures: Failures = .avoid
        public var outputTransform: OutputTransform = .auto
        public var expectBest: ExpectBest = .inside
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
    /// The last fit's hyperparameters and how many results it saw, to start the next fit from (and,
    /// with many results, to reuse); for results modelled as measured because they look noisy, their own.
    private var lastFit: GaussianProcess.Hyperparameters?
    private var lastFitCount = 0
    private var lastMeasuredFit: GaussianProcess.Hyperparameters?
    private var lastMeasuredFitCount: Int?

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
        forgetPending(x)
        let valid = outcome.flatMap { o in
            (o.objectives + o.constraintSlacks).allSatisfy { abs($0) <= Self.largestResult } && !o.objectives.isEmpty
                && (0...Self.largestResult * Self.largestResult).contains(o.noiseVariance ?? 0) ? o : nil
        }
        observations.append(Observation(x: x, outcome: valid))
    }

    /// Forgets a proposal that will not be run (a person rejected it): it is no longer pending.
    public mutating func withdraw(_ values: [String: Double]) {
        forgetPending(space.encode(values))
    }

    /// The pending point nearest x stops being pending, if x is within `toldMatch` of it in every
    /// input: a client rounds the point it was given (to an instrument's resolution, or through a
    /// CSV file), and a result must not leave the point asked for pending for good.
    private mutating func forgetPending(_ x: [Double]) {
        if let index = pendingAnswered(by: x) { pending.remove(at: index) }
    }

    /// The pending point nearest x, among those x is within `toldMatch` of in every input.
    private func pendingAnswered(by x: [Double]) -> Int? {
        let tolerances = space.sameness.map { max(Self.toldMatch, $0) }
        let matching = pending.indices.filter { i in pending[i].indices.allSatisfy { abs(pending[i][$0] - x[$0]) <= tolerances[$0] } }
        return matching.min { Self.distance(pending[$0], x) < Self.distance(pending[$1], x) }
    }

    /// Whether values answer a pending point (perhaps rounded a hair past the bound it lies on).
    public func answersPending(_ values: [String: Double]) -> Bool {
        pendingAnswered(by: space.encode(values)) != nil
    }

    /// How far, as a fraction of each input's range, a point told may lie from the pending point it
    /// answers.
    static let toldMatch = 1e-3

    /// The next `count` points to run, as values by name, with who chose each. Points handed out in
    /// one call, or not yet observed from earlier calls, are kept apart.
    public mutating func propose(_ count: Int = 1) throws -> [(values: [String: Double], chosenBy: String)] {
        var result: [(values: [String: Double], chosenBy: String)] = []
        // The initial design is drawn once per call, not once per point of a batch, and so are the
        // models of failures and constraints (fitted to the results alone, which a batch does not change).
        var design: [[Double]]?
        var probabilities: [ProbabilityModel]?
        for _ in 0..<count {
            let (x, chosenBy) = try proposeOne(design: &design, probabilities: &probabilities)
            let values = space.decode(x)
            // Pending as it will be told back: the values handed out, encoded again (a range tiny
            // beside its values, 10¹² to 10¹² + 1, rounds them), so that telling it clears it.
            pending.append(space.encode(values))
            proposals += 1
            result.append((values, chosenBy))
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

    private mutating func proposeOne(design: inout [[Double]]?, probabilities cached: inout [ProbabilityModel]?) throws -> ([Double], String) {
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
        let failed = observations.filter { $0.outcome == nil }
        let weights = rng  // the same ParEGO weights whichever transform is fitted
        var (notes, scalar, model) = try fitted(successes, failed: failed, options.outputTransform, asMeasured: false, using: &rng)
        // Results that look noisy are modelled again, as measured (should that fit fail, the bent
        // model serves).
        var noisy = false
        if options.outputTransform == .auto, looksNoisy(model, results: successes.count) {
            var measuredWeights = weights
            if let measured = try? fitted(successes, failed: failed, .none, asMeasured: true, using: &measuredWeights) {
                notes = ["as measured: noisy, noise \((100 * model.hyperparameters.noise).formatted(.number.precision(.significantDigits(2)))) % of their variance"]
                (noisy, scalar, model, rng) = (true, measured.scalar, measured.model, measuredWeights)
            }
        }
        let probabilities = cached ?? probabilityModels(successes, failed: failed)
        cached = probabilities
        // Pending points are believed to come out at the model's mean (the "kriging believer").
        var believed = model
        if !pending.isEmpty {
            let xs = model.inputs + pending
            let ys = model.outputs + pending.map { model.predictMean($0) }
            believed = GaussianProcess(inputs: xs, outputs: ys, hyperparameters: model.hyperparameters,
                                       noise: model.noiseModel.forCount(xs.count), priorMean: model.priorMean) ?? model
        }
        // The incumbent: the best result that met the outcome constraints (of noisy results, the
        // best posterior mean at them: the best result is also the luckiest); with none yet, the
        // acquisition only seeks where they are met.
        let meeting = zip(successes, scalar).filter { $0.0.outcome!.meetsConstraints }
        let values = noisy ? meeting.map { model.predictMean($0.0.x) } : meeting.map(\.1)
        let top = values.indices.max { values[$0] < values[$1] }
        let best = top.map { values[$0] }
        // Once the first results have settled which basin to climb, every other proposal climbs: it
        // stays in a trust region around the incumbent (decision 18).
        let region = started % 2 == 0 && successes.count >= Self.resultsBeforeClimbing ? top.flatMap {
            TrustRegion(centre: meeting[$0].0.x, results: scalar, initial: options.initialPoints,
                        lengthScales: model.hyperparameters.lengthScales)
        } : nil
        var optimizer = AcquisitionOptimizer(model: believed, acquisition: options.acquisition, probabilities: probabilities,
                                             best: best, space: space,
                                             avoid: observations.map(\.x), pending: pending, rawSamples: options.rawSamples,
                                             restarts: options.restarts, region: region)
        var proposal = optimizer.maximize(using: &rng)
        if proposal == nil, region != nil {  // nothing runnable in the region: anywhere will do
            optimizer.region = nil
            proposal = optimizer.maximize(using: &rng)
        }
        guard let x = proposal else {
            throw LabError(.planner, space.constraints.isEmpty ? "no point is left to propose: every candidate has been run or is pending; "
                               + "tell the pending points' results, or widen the ranges"
                                                               : "no point satisfies the constraints")
        }
        let climb = optimizer.region.map { ", climbing near the best (box \($0.length.formatted(.number.precision(.significantDigits(1...2)))) of the range)" } ?? ""
        let scalarised = successes[0].outcome!.objectives.count > 1 ? "ParEGO, " : ""
        let criterion = if case .upperConfidenceBound = options.acquisition { "upper confidence bound" } else { "log expected improvement" }
        let bowl = model.curvature < 0 ? ", worse results expected towards the range limits" : ""
        return (x, "planner (GP, \(scalarised)\(criterion)\(climb)\(bowl)\(Self.modelled(notes)))")
    }

    /// The chance that a run succeeds (learnt from the failures, if they are to be avoided) and that
    /// it meets each outcome constraint.
    private func probabilityModels(_ successes: [Observation], failed: [Observation]) -> [ProbabilityModel] {
        var models: [ProbabilityModel] = []
        if !failed.isEmpty, options.failures == .avoid, let classifier = ProbabilityModel(classifying: observations) {
            models.append(classifier)
        }
        for j in 0..<successes[0].outcome!.constraintSlacks.count {
            if let m = ProbabilityModel(constraint: successes.map(\.x), slacks: successes.map { $0.outcome!.constraintSlacks[j] }) {
                models.append(m)
            }
        }
        return models
    }

    /// The results' objectives, each transformed over all results, scalarised (ParEGO), and the model
    /// fitted to them, with what each transform did. A known noise follows the first objective's
    /// slope (held finite: a steep slope, as the log's near zero, must not overflow it).
    private mutating func fitted(_ successes: [Observation], failed: [Observation], _ transform: OutputTransform, asMeasured: Bool,
                                 using rng: inout SplitMix64) throws -> (notes: [String?], scalar: [Double], model: GaussianProcess) {
        let objectives = successes[0].outcome!.objectives.count
        let columns = try (0..<objectives).map { i in try transform.apply(successes.map { $0.outcome!.objectives[i] }) }
        let scalar = Self.scalarisation(successes.indices.map { r in columns.map { $0.values[r] } }, using: &rng)
        var training = successes.indices.map { r in
            (x: successes[r].x, y: scalar[r],
             noise: successes[r].outcome!.noiseVariance.map { min($0 * pow(columns[0].slopes[r], 2), Self.largestResult * Self.largestResult) })
        }
        if options.failures == .worst, let worst = scalar.min() {
            training += failed.map { (x: $0.x, y: worst, noise: nil) }
        }
        guard let model = fitObjective(training, asMeasured: asMeasured) else {
            throw LabError(.planner, "the Gaussian process could not be fitted to \(training.count) results")
        }
        return (columns.map(\.note), scalar, model)
    }

    /// Whether the results look like noisy measurements: with at least `resultsBeforeNoiseCheck` of
    /// them (before that the fitted noise mostly reflects its prior), the model needs a noise
    /// variance above `noisyResults` of theirs to explain them. By 15 results, noise-free test
    /// functions have mostly fallen to the floor (10⁻⁶); Branin with noise of SD 1 (about 1/50 of its
    /// results' spread) sits at 0.3–0.9 %. Decision 17.
    func looksNoisy(_ model: GaussianProcess, results: Int) -> Bool {
        options.noise == .inferred && results >= Self.resultsBeforeNoiseCheck && model.hyperparameters.noise > Self.noisyResults
    }

    static let resultsBeforeNoiseCheck = 15
    /// Climbing from the start narrowed the search while the first results were still deciding the
    /// basin: more Hartmann-6 campaigns ended in the second-best one (decision 18).
    static let resultsBeforeClimbing = 15
    static let noisyResults = 2e-3

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
                // Relative, whatever the objective's units: equal results all scale to 0.
                let range = highs[i] - lows[i]
                return range > 0 ? weights[i] * (o[i] - lows[i]) / range : 0
            }
            return scaled.min()! + 0.05 * scaled.reduce(0, +)
        }
    }

    /// The model of the training results (`asMeasured`: noisy results, modelled as measured, whose
    /// fits are remembered apart from the transformed results').
    private mutating func fitObjective(_ training: [(x: [Double], y: Double, noise: Double?)], asMeasured: Bool) -> GaussianProcess? {
        let (previous, previousCount) = asMeasured ? (lastMeasuredFit, lastMeasuredFitCount ?? 0) : (lastFit, lastFitCount)
        // Noisy results are shrunk towards the prior mean, so a bowl would pull the estimates of the
        // results near a limit down with it, and the best estimate is the result to beat (decision 20).
        let priorMean: GaussianProcess.PriorMean = asMeasured || options.expectBest == .anywhere ? .constant : .bowl
        let xs = training.map(\.x), ys = training.map(\.y)
        let noise: GaussianProcess.NoiseModel = switch options.noise {
        case .noiseFree: .noiseFree
        case .inferred: .inferred
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
        if let previous, xs.count > Self.maximumFittingPoints, Double(xs.count) < 1.1 * Double(previousCount),
           let gp = GaussianProcess(inputs: keptX, outputs: keptY, hyperparameters: previous, noise: keptNoise, priorMean: priorMean) {
            return gp
        }
        // Each step of the fit costs O(n³): with many data, fit to a subset (the best results, where
        // the model matters most, and an even spread of the rest), then condition on everything kept.
        let subset = Self.fittingSubset(ys, size: Self.maximumFittingPoints)
        guard let fitted = GaussianProcess(inputs: subset.map { xs[$0] }, outputs: subset.map { ys[$0] },
                                           noise: noise.subset(subset), warmStart: previous, priorMean: priorMean) else { return nil }
        if asMeasured { (lastMeasuredFit, lastMeasuredFitCount) = (fitted.hyperparameters, xs.count) }
        else { (lastFit, lastFitCount) = (fitted.hyperparameters, xs.count) }
        return subset.count == xs.count ? fitted
            : GaussianProcess(inputs: keptX, outputs: keptY, hyperparameters: fitted.hyperparameters, noise: keptNoise, priorMean: priorMean)
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
        guard case .known(let variances) = self else { return self }
        return .known(indices.map { variances[$0] })
    }

    /// The same model for a data set grown to `count` points (known noise: the new points get the mean).
    func forCount(_ count: Int) -> Self {
        guard case .known(let variances) = self, variances.count < count else { return self }
        let mean = variances.reduce(0, +) / Double(max(variances.count, 1))
        return .known(variances + Array(repeating: mean, count: count - variances.count))
    }
}
