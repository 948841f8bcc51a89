/// An expression in a protocol file: `$temperature`, `0.5 degC`, `mean(absorbance) * 41.2`.
/// Expressions are data; every one is total (no loops, no calls out), so evaluating one cannot hang.
public indirect enum Expr: Sendable, Hashable, CustomStringConvertible {
    case number(Quantity)
    case parameter(String)
    case series(String)
    case call(SeriesFunction, Expr)
    case binary(BinaryOperator, Expr, Expr)
    case negate(Expr)

    public var description: String {
        switch self {
        case .number(let q): q.description
        case .parameter(let name): "$\(name)"
        case .series(let name): name
        case .call(let f, let arg): "\(f.rawValue)(\(arg))"
        case .binary(let op, let l, let r): "(\(l) \(op.rawValue) \(r))"
        case .negate(let e): "-\(e)"
        }
    }

    /// Names of measured series this expression reads.
    public var seriesNames: Set<String> {
        switch self {
        case .number, .parameter: []
        case .series(let name): [name]
        case .call(_, let e), .negate(let e): e.seriesNames
        case .binary(_, let l, let r): l.seriesNames.union(r.seriesNames)
        }
    }

    public var parameterNames: Set<String> {
        switch self {
        case .number, .series: []
        case .parameter(let name): [name]
        case .call(_, let e), .negate(let e): e.parameterNames
        case .binary(_, let l, let r): l.parameterNames.union(r.parameterNames)
        }
    }
}

public enum SeriesFunction: String, Sendable, CaseIterable {
    case mean, min, max, last, std, count
}

public enum BinaryOperator: String, Sendable, CaseIterable {
    case add = "+", subtract = "-", multiply = "*", divide = "/"
    case less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">=", equal = "==", notEqual = "!="
    case and = "and", or = "or"
}

/// What an expression evaluates to.
public enum ExprValue: Sendable, Hashable, CustomStringConvertible {
    case quantity(Quantity)
    case bool(Bool)

    public var description: String {
        switch self {
        case .quantity(let q): q.description
        case .bool(let b): "\(b)"
        }
    }
}

/// The values an expression can see while a run executes.
public struct ExprEnvironment: Sendable {
    public var parameters: [String: Quantity]
    public var series: [String: [Quantity]]

    public init(parameters: [String: Quantity] = [:], series: [String: [Quantity]] = [:]) {
        self.parameters = parameters; self.series = series
    }

    public func evaluate(_ expr: Expr) throws(LabError) -> ExprValue {
        switch expr {
        case .number(let q):
            return .quantity(q)
        case .parameter(let name):
            guard let q = parameters[name] else { throw LabError(.unknownReference, "no value for parameter $\(name)") }
            return .quantity(q)
        case .series(let name):
            guard let last = series[name]?.last else { throw LabError(.unknownReference, "no measurement named '\(name)' yet") }
            return .quantity(last)
        case .call(let function, let argument):
            guard case .series(let name) = argument else {
                throw LabError(.invalidFile, "\(function.rawValue)() takes the name of a measured series")
            }
            return .quantity(try Self.apply(function, to: series[name] ?? [], name: name))
        case .negate(let inner):
            let q = try quantity(inner)
            return .quantity(Quantity(-q.value, q.unit))
        case .binary(let op, let l, let r):
            return try Self.combine(op, try evaluate(l), try evaluate(r))
        }
    }

    public func quantity(_ expr: Expr) throws(LabError) -> Quantity {
        guard case .quantity(let q) = try evaluate(expr) else {
            throw LabError(.invalidFile, "\(expr) is a condition, a number was expected")
        }
        return q
    }

    public func condition(_ expr: Expr) throws(LabError) -> Bool {
        guard case .bool(let b) = try evaluate(expr) else {
            throw LabError(.invalidFile, "\(expr) is a number, a condition was expected")
        }
        return b
    }

    static func apply(_ function: SeriesFunction, to values: [Quantity], name: String) throws(LabError) -> Quantity {
        if function == .count { return Quantity(Double(values.count)) }
        guard let unit = values.first?.unit else {
            throw LabError(.unknownReference, "\(function.rawValue)(\(name)): no measurements named '\(name)'")
        }
        let xs = values.map(\.value)
        let mean = xs.reduce(0, +) / Double(xs.count)
        switch function {
        case .mean: return Quantity(mean, unit)
        case .min: return Quantity(xs.min()!, unit)
        case .max: return Quantity(xs.max()!, unit)
        case .last: return Quantity(xs.last!, unit)
        case .count: return Quantity(Double(xs.count))
        case .std:
            guard xs.count > 1 else { return Quantity(0, unit) }
            let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)
            return Quantity(variance.squareRoot(), LabUnit(unit.symbol, unit.dimension, scale: unit.scale))
        }
    }

    static func combine(_ op: BinaryOperator, _ l: ExprValue, _ r: ExprValue) throws(LabError) -> ExprValue {
        switch (l, r) {
        case (.bool(let a), .bool(let b)):
            switch op {
            case .and: return .bool(a && b)
            case .or: return .bool(a || b)
            case .equal: return .bool(a == b)
            case .notEqual: return .bool(a != b)
            default: throw LabError(.invalidFile, "'\(op.rawValue)' does not apply to conditions")
            }
        case (.quantity(let a), .quantity(let b)):
            return try combine(op, a, b)
        default:
            throw LabError(.invalidFile, "'\(op.rawValue)' mixes a condition and a number")
        }
    }

    static func combine(_ op: BinaryOperator, _ a: Quantity, _ b: Quantity) throws(LabError) -> ExprValue {
        switch op {
        case .add, .subtract:
            // The right side is a difference in the left side's unit: 20 degC + 5 degC = 25 degC.
            let rhs = try b.convertedDifference(to: a.unit).value
            return .quantity(Quantity(op == .add ? a.value + rhs : a.value - rhs, a.unit))
        case .multiply, .divide:
            if b.dimension == .dimensionless && b.unit.offset == 0 {
                let k = b.unit.scale * b.value
                return .quantity(Quantity(op == .multiply ? a.value * k : a.value / k, a.unit))
            }
            if a.dimension == .dimensionless && a.unit.offset == 0 && op == .multiply {
                return .quantity(Quantity(a.unit.scale * a.value * b.value, b.unit))
            }
            let (x, y) = (a.unit.toSI(a.value), b.unit.toSI(b.value))
            let dimension = op == .multiply ? a.dimension * b.dimension : a.dimension / b.dimension
            let symbol = "\(a.unit.symbol)\(op == .multiply ? "·" : "/")\(b.unit.symbol)"
            return .quantity(Quantity(op == .multiply ? x * y : x / y, LabUnit(symbol, dimension)))
        case .less, .lessEqual, .greater, .greaterEqual, .equal, .notEqual:
            let x = a.value, y = try b.converted(to: a.unit).value
            let result: Bool = switch op {
            case .less: x < y
            case .lessEqual: x <= y
            case .greater: x > y
            case .greaterEqual: x >= y
            case .equal: x == y
            default: x != y
            }
            return .bool(result)
        case .and, .or:
            throw LabError(.invalidFile, "'\(op.rawValue)' joins conditions, not numbers")
        }
    }
}
