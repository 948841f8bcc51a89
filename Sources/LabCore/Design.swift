/// `coefficients · values (relation) bound` over parameters in their own units: what a campaign
/// file's parameter constraint compiles to, and what the planner never proposes against.
public struct LinearConstraint: Sendable, Hashable, Codable {
    public enum Relation: String, Sendable, Codable { case atMost, atLeast, equal }
    public var coefficients: [String: Double]
    public var relation: Relation
    public var bound: Double

    public init(coefficients: [String: Double], relation: Relation, bound: Double) {
        self.coefficients = coefficients; self.relation = relation; self.bound = bound
    }

    /// Whether the values meet the constraint, within a tolerance relative to the bound.
    public func holds(_ values: [String: Double], tolerance: Double = 1e-9) -> Bool {
        let lhs = coefficients.reduce(0) { $0 + $1.value * (values[$1.key] ?? 0) }
        let slack = tolerance * max(1, abs(bound))
        switch relation {
        case .atMost: return lhs <= bound + slack
        case .atLeast: return lhs >= bound - slack
        case .equal: return abs(lhs - bound) <= slack
        }
    }
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
