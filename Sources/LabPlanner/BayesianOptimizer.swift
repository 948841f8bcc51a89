import Foundation
public import LabCore

/// A box of real parameters the optimiser searches.
public struct SearchSpace: Sendable, Hashable {
    public struct Dimension: Sendable, Hashable {
        public var name: String
        public var lower: Double
        public var upper: Double

        public init(name: String, lower: Double, upper: Double) {
            self.name = name; self.lower = lower; self.upper = upper
        }
    }

    public var dimensions: [Dimension]

    public init(_ dimensions: [Dimension]) { self.dimensions = dimensions }

    func toUnit(_ values: [String: Double]) -> [Double] {
        dimensions.map { d in (values[d.name, default: d.lower] - d.lower) / max(d.upper - d.lower, 1e-300) }
    }

    func fromUnit(_ x: [Double]) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: zip(dimensions, x).map { d, u in
            (d.name, d.lower + min(max(u, 0), 1) * (d.upper - d.lower))
        })
    }
}

/// Bayesian optimisation for maximisation: a Latin-hypercube initial design, then the point of
/// highest expected improvement under a Gaussian-process surrogate. Deterministic given a seed.
/// An actor, so GP fitting never runs on the engine's executor.
public actor BayesianOptimizer: Advisor {
    public let space: SearchSpace
    public let initialPoints: Int
    private var rng: SplitMix64
    private lazy var design: [[Double]] = LatinHypercube.sample(count: initialPoints, dimensions: space.dimensions.count, using: &rng)
    private var observed: [(x: [Double], y: Double?)] = []
    private var proposals = 0

    /// Random candidates scored per proposal, and local perturbations around the best point.
    static let globalCandidates = 2048
    static let localCandidates = 512

    public init(space: SearchSpace, initialPoints: Int, seed: UInt64) {
        self.space = space
        self.initialPoints = initialPoints
        rng = SplitMix64(seed: seed)
    }

    public func suggest() throws -> Suggestion {
        proposals += 1
        let id = "bo-\(proposals)"
        if observed.count < initialPoints && observed.count < design.count {
            return Suggestion(values: space.fromUnit(design[observed.count]), chosenBy: "initial design (Latin hypercube)", proposalID: id)
        }
        // A failed run counts as the worst outcome seen, so the planner steers away from it.
        let successes = observed.compactMap(\.y)
        guard let worst = successes.min() else {
            let x = (0..<space.dimensions.count).map { _ in rng.nextUnit() }
            return Suggestion(values: space.fromUnit(x), chosenBy: "random (no successful run yet)", proposalID: id)
        }
        let inputs = observed.map(\.x), outputs = observed.map { $0.y ?? worst }
        guard let gp = GaussianProcess(inputs: inputs, outputs: outputs) else {
            throw LabError(.planner, "the Gaussian process could not be fitted to \(inputs.count) observations")
        }
        let best = outputs.max()!
        let incumbent = inputs[outputs.firstIndex(of: best)!]
        var candidates = (0..<Self.globalCandidates).map { _ in space.dimensions.map { _ in rng.nextUnit() } }
        candidates += (0..<Self.localCandidates).map { _ in
            incumbent.map { min(max($0 + 0.05 * rng.nextGaussian(), 0), 1) }
        }
        let scored = candidates.map { x -> (x: [Double], ei: Double) in
            let p = gp.predict(x)
            return (x, ExpectedImprovement.value(mean: p.mean, variance: p.variance, best: best))
        }
        let chosen = scored.max { $0.ei < $1.ei }!.x
        return Suggestion(values: space.fromUnit(chosen), chosenBy: "planner (GP expected improvement)", proposalID: id)
    }

    public func observe(_ values: [String: Double], outcome: Double?) {
        observed.append((space.toUnit(values), outcome))
    }
}
