import Foundation
public import LabCore

/// How results are reshaped before the model sees them. A Gaussian process expects results that
/// vary on one scale everywhere; a yield that is 0.1 % in most conditions and 80 % in a few, or an
/// impurity spanning four orders of magnitude, does not. Each transform is increasing, so "better"
/// keeps its meaning, and it is refitted to all results at every proposal.
///
/// `auto` is the default: `power`, until the results show the scatter of noisy measurements, when
/// they are modelled as measured (see `Planner.looksNoisy`). Measured against `none` over 20
/// seeds, `power` was better on Hartmann-6, Hartmann-3, Branin, the six-hump camel and a 4-D
/// Rosenbrock whose values span six orders of magnitude (where `log` was worse than `power` too);
/// on noisy results it was worse. See docs/planner.md and decisions 14 and 17.
public enum OutputTransform: String, Sendable, Codable, CaseIterable {
    /// The results as measured (standardised).
    case none
    /// The logarithm of the result's size: for results that span orders of magnitude. Every result
    /// must be above zero (or, for a minimised result, every one).
    case log
    /// The Yeo–Johnson power transform, its power chosen to make the results look most normal:
    /// for skewed results, without needing them positive.
    case power
    /// `power` while the results look noise-free; `none`, with the best posterior mean rather than
    /// the best (luckiest) result as the one to beat, once they look noisy. Decided by the planner
    /// at each proposal; applied on its own it is `power`.
    case auto

    /// The transformed values, each one's slope dT/dv, which carries a known noise variance
    /// across (variance × slope²), and what was done, in words, for the record of a proposal (nil:
    /// nothing).
    public func apply(_ values: [Double]) throws -> (values: [Double], slopes: [Double], note: String?) {
        switch self {
        case .none:
            return (values, values.map { _ in 1 }, nil)
        case .log:
            // Values arrive "higher is better": a minimised result comes negated, so a positive
            // quantity that is minimised shows as all-negative values, and −log(−v) keeps the order.
            let sign: Double = values.allSatisfy { $0 > 0 } ? 1 : values.allSatisfy { $0 < 0 } ? -1 : 0
            guard sign != 0 else {
                throw LabError(.planner, "the log transform needs every result above zero, and one is zero or below: "
                               + "use transform: auto (the default), which takes any values")
            }
            return (values.map { sign * Foundation.log(sign * $0) }, values.map { 1 / abs($0) }, "log")
        case .power, .auto:
            let (mean, scale) = GaussianProcess.standardisation(values)
            let z = values.map { ($0 - mean) / scale }
            let lambda = YeoJohnson.bestPower(z)
            return (z.map { YeoJohnson.transform($0, lambda) }, z.map { YeoJohnson.slope($0, lambda) / scale },
                    "power \((abs(lambda) < 0.005 ? 0 : lambda).formatted(.number.precision(.fractionLength(2))))")
        }
    }
}

/// The Yeo–Johnson family: (|v|+1)^λ-like curves that bend the upper side for λ < 1 and the lower
/// side for λ > 1, continuous in λ and defined for every real v.
enum YeoJohnson {
    static func transform(_ v: Double, _ lambda: Double) -> Double {
        if v >= 0 { return abs(lambda) < 1e-9 ? log1p(v) : (pow(v + 1, lambda) - 1) / lambda }
        let mirrored = 2 - lambda
        return abs(mirrored) < 1e-9 ? -log1p(-v) : -(pow(1 - v, mirrored) - 1) / mirrored
    }

    static func slope(_ v: Double, _ lambda: Double) -> Double {
        v >= 0 ? pow(v + 1, lambda - 1) : pow(1 - v, 1 - lambda)
    }

    /// The power that maximises the normal log-likelihood of the transformed values (with the
    /// transform's Jacobian), by golden-section search over [−3, 6], where it is unimodal in practice;
    /// 1 (no bend) for results that are all equal.
    /// (Up to 6, not 3: the long tail of bad results of a 4-D Rosenbrock took every power up to 3,
    /// and the stronger bend measured better there and no worse elsewhere; decision 17.)
    static func bestPower(_ v: [Double]) -> Double {
        // Equal results look equally normal under every power: leave them straight.
        guard v.contains(where: { $0 != v.first }) else { return 1 }
        func logLikelihood(_ lambda: Double) -> Double {
            let t = v.map { transform($0, lambda) }
            let mean = t.reduce(0, +) / Double(t.count)
            let variance = t.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(t.count)
            let jacobian = v.reduce(0) { $0 + ($1 >= 0 ? 1 : -1) * log1p(abs($1)) }
            return -Double(v.count) / 2 * log(max(variance, 1e-300)) + (lambda - 1) * jacobian
        }
        var (a, b) = (-3.0, 6.0)
        let ratio = (5.0.squareRoot() - 1) / 2
        while b - a > 1e-6 {
            let c = b - ratio * (b - a), d = a + ratio * (b - a)
            if logLikelihood(c) > logLikelihood(d) { b = d } else { a = c }
        }
        return (a + b) / 2
    }
}
