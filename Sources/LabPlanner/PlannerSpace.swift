import Foundation
public import LabCore

/// The parameters a planner chooses, and how each maps onto the unit cube the model works in:
/// a real on a linear or log scale takes one coordinate, an integer one coordinate snapped to its
/// whole numbers, a categorical one coordinate per option (one-hot).
public struct PlannerSpace: Sendable, Hashable, Codable {
    public enum Parameter: Sendable, Hashable, Codable {
        case real(name: String, lower: Double, upper: Double, logScale: Bool)
        case integer(name: String, lower: Int, upper: Int)
        case categorical(name: String, options: [String])

        public var name: String {
            switch self { case .real(let n, _, _, _), .integer(let n, _, _), .categorical(let n, _): n }
        }

        var width: Int {
            if case .categorical(_, let options) = self { return options.count }
            return 1
        }
    }

    public var parameters: [Parameter]
    public var constraints: [LinearConstraint]

    public init(_ parameters: [Parameter], constraints: [LinearConstraint] = []) {
        self.parameters = parameters
        self.constraints = constraints
    }

    /// Coordinates in the unit cube.
    public var width: Int { parameters.reduce(0) { $0 + $1.width } }

    /// Values by name (a categorical by the index of its option) to unit coordinates.
    public func encode(_ values: [String: Double]) -> [Double] {
        parameters.flatMap { p -> [Double] in
            let v = values[p.name] ?? 0
            switch p {
            case .real(_, let lo, let hi, let logScale):
                if logScale { return [(log(v) - log(lo)) / max(log(hi) - log(lo), 1e-300)] }
                return [(v - lo) / max(hi - lo, 1e-300)]
            case .integer(_, let lo, let hi):
                return [(v - Double(lo)) / Double(max(hi - lo, 1))]
            case .categorical(_, let options):
                return options.indices.map { Double($0) == v.rounded() ? 1 : 0 }
            }
        }
    }

    /// Unit coordinates to values by name: integers rounded, a categorical its likeliest option.
    public func decode(_ x: [Double]) -> [String: Double] {
        var values: [String: Double] = [:], offset = 0
        for p in parameters {
            let u = x[offset..<offset + p.width].map { min(max($0, 0), 1) }
            switch p {
            case .real(let name, let lo, let hi, let logScale):
                values[name] = logScale ? exp(log(lo) + u[0] * (log(hi) - log(lo))) : lo + u[0] * (hi - lo)
                if let value = values[name] { values[name] = min(max(value, lo), hi) }
            case .integer(let name, let lo, let hi):
                values[name] = (Double(lo) + u[0] * Double(hi - lo)).rounded()
            case .categorical(let name, _):
                values[name] = Double(u.indices.max { u[$0] < u[$1] }!)
            }
            offset += p.width
        }
        return values
    }

    /// Whether any point of the cube can run as it is: every parameter is a real whose range is not
    /// so narrow beside its values (10¹² to 10¹² + 1) that a double rounds points of it together.
    var isContinuous: Bool {
        parameters.allSatisfy { Self.doubleWidth($0).map { $0 <= 1e-12 } ?? false }
    }

    /// How near, along each unit coordinate, two points are the same run: 10⁻⁹, or four doubles of
    /// a range tiny beside its values, where a client's JSON parser an ulp off (Foundation's can be)
    /// moves a point by 10⁻⁴ of the range. Per coordinate: such a range must not make points of the
    /// other parameters the same.
    public var sameness: [Double] {
        parameters.flatMap { p in Array(repeating: max(1e-9, 4 * (Self.doubleWidth(p) ?? 0)), count: p.width) }
    }

    /// For a real, the width in its unit coordinate of one double at the far end of its range: about
    /// 10⁻¹⁶ for most ranges, 10⁻⁴ for 10¹² to 10¹² + 1. Nil for integers and categoricals.
    static func doubleWidth(_ parameter: Parameter) -> Double? {
        guard case .real(_, let lo, let hi, let logScale) = parameter else { return nil }
        let top = max(abs(lo), abs(hi))
        return logScale ? top.ulp / top / (log(hi) - log(lo)) : top.ulp / (hi - lo)
    }

    /// The nearest point the space can actually run: integers on whole numbers, categoricals
    /// one-hot, reals on the doubles their range holds.
    public func snap(_ x: [Double]) -> [Double] {
        isContinuous ? x.map { min(max($0, 0), 1) } : encode(decode(x))
    }

    /// Whether a unit point meets every linear constraint.
    func isFeasible(unit x: [Double]) -> Bool { constraints.isEmpty || isFeasible(decode(x)) }

    /// Whether a point meets every linear constraint (within a relative tolerance).
    public func isFeasible(_ values: [String: Double], tolerance: Double = 1e-9) -> Bool {
        constraints.allSatisfy { $0.holds(values, tolerance: tolerance) }
    }

    /// The constraints in unit coordinates, `a · x (relation) b`, for parameters on a linear scale.
    var unitConstraints: [(a: [Double], relation: LinearConstraint.Relation, b: Double)] {
        constraints.map { c in
            var a = [Double](repeating: 0, count: width), b = c.bound, offset = 0
            for p in parameters {
                if let coefficient = c.coefficients[p.name] {
                    switch p {
                    case .real(_, let lo, let hi, _): a[offset] = coefficient * (hi - lo); b -= coefficient * lo
                    case .integer(_, let lo, let hi): a[offset] = coefficient * Double(hi - lo); b -= coefficient * Double(lo)
                    case .categorical: break
                    }
                }
                offset += p.width
            }
            return (a, c.relation, b)
        }
    }

    /// Moves a unit point onto the constraints and back into the cube, by alternating projections;
    /// nil if it does not get there (the caller then discards the point).
    func projectOntoConstraints(_ start: [Double]) -> [Double]? {
        let constraints = unitConstraints
        guard !constraints.isEmpty else { return start }
        var x = start
        for _ in 0..<200 {
            var worst = 0.0
            for c in constraints {
                let norm = BoxLBFGS.dot(c.a, c.a)
                guard norm > 0 else { continue }
                let excess = BoxLBFGS.dot(c.a, x) - c.b
                let violated = switch c.relation {
                case .atMost: excess > 0
                case .atLeast: excess < 0
                case .equal: excess != 0
                }
                guard violated else { continue }
                worst = max(worst, abs(excess))
                for i in x.indices { x[i] -= excess * c.a[i] / norm }
            }
            for i in x.indices { x[i] = min(max(x[i], 0), 1) }
            if worst < 1e-12 { break }
        }
        return isFeasible(decode(x), tolerance: 1e-7) ? x : nil
    }
}
