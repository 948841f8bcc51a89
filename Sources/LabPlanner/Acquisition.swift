import Foundation

/// Expected improvement over the best value seen, for maximisation.
public enum ExpectedImprovement {
    public static func value(mean: Double, variance: Double, best: Double) -> Double {
        let sigma = variance.squareRoot()
        guard sigma > 1e-12 else { return max(mean - best, 0) }
        let z = (mean - best) / sigma
        return (mean - best) * normalCDF(z) + sigma * normalPDF(z)
    }

    static func normalPDF(_ z: Double) -> Double { exp(-z * z / 2) / (2 * Double.pi).squareRoot() }
    static func normalCDF(_ z: Double) -> Double { 0.5 * erfc(-z / 2.squareRoot()) }
}

/// Space-filling designs on the unit cube.
public enum LatinHypercube {
    /// n points in d dimensions, one in each of n equal slices of every axis.
    public static func sample<R: RandomNumberGenerator>(count n: Int, dimensions d: Int, using rng: inout R) -> [[Double]] {
        var columns: [[Double]] = (0..<d).map { _ in
            (0..<n).map { (Double($0) + Double.random(in: 0..<1, using: &rng)) / Double(n) }.shuffled(using: &rng)
        }
        if d == 0 { columns = [] }
        return (0..<n).map { i in (0..<d).map { columns[$0][i] } }
    }
}
