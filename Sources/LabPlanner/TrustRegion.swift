import Foundation

/// A box around the incumbent that every other proposal stays inside, sized as TuRBO sizes its
/// trust region (Eriksson et al., 2019): it doubles after 3 improvements in a row and halves after
/// max(4, d) results in a row that do not improve the best by a thousandth of the results' range; once
/// smaller than 0.8/2⁷ it starts again at 0.8. Its sides follow the model's length scales (their
/// geometric mean is the region's length), so it is long along inputs that matter little.
///
/// The size is replayed from the results in the order they came, so it needs no state of its own: a
/// saved planner, or one told results it did not propose, gets the same region. Decision 18: the
/// climb it forces is what long, curved valleys need (Rosenbrock), while the proposals in between,
/// over the whole space, keep looking for other basins.
struct TrustRegion {
    let lower: [Double]
    let upper: [Double]
    /// The side before the length scales shape it, in unit-cube lengths.
    let length: Double

    static let initialLength = 0.8, smallestLength = 0.8 / 128, largestLength = 1.6
    static let successesToGrow = 3

    /// The region around `centre` after `results` (objective values, higher is better, in the
    /// order they came; the first `initial` are the initial design's), or nil while only the
    /// initial design has been run.
    init?(centre: [Double], results: [Double], initial: Int, lengthScales: [Double]) {
        guard results.count > initial, let low = results.min(), let high = results.max() else { return nil }
        let failuresToShrink = max(4, lengthScales.count)
        let threshold = 1e-3 * (high - low)
        var length = Self.initialLength, successes = 0, failures = 0
        var best = results.prefix(initial).max() ?? -.infinity
        for y in results.dropFirst(initial) {
            if y > best + threshold { (successes, failures) = (successes + 1, 0) } else { (successes, failures) = (0, failures + 1) }
            best = max(best, y)
            if successes == Self.successesToGrow { (length, successes) = (min(2 * length, Self.largestLength), 0) }
            if failures == failuresToShrink { (length, failures) = (length / 2, 0) }
            if length < Self.smallestLength { length = Self.initialLength }
        }
        let meanLog = lengthScales.reduce(0) { $0 + log($1) } / Double(lengthScales.count)
        let halves = lengthScales.map { length * $0 / exp(meanLog) / 2 }
        self.length = length
        lower = zip(centre, halves).map { max($0 - $1, 0) }
        upper = zip(centre, halves).map { min($0 + $1, 1) }
    }

    /// x moved into the region, input by input.
    func clamp(_ x: [Double]) -> [Double] {
        x.indices.map { min(max(x[$0], lower[$0]), upper[$0]) }
    }

    /// A point of the unit cube mapped onto the region.
    func scale(_ u: [Double]) -> [Double] {
        u.indices.map { lower[$0] + u[$0] * (upper[$0] - lower[$0]) }
    }
}
