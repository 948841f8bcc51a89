/// An expression in a protocol file: `$temperature`, `0.5 degC`, `mean(absorbance) * 41.2`,
/// `$catalyst == "Pd1"`, `last(t) in K`. Expressions are data; every one is total (no loops, no
/// calls out), so evaluating one cannot hang.
public indirect enum Expr: Sendable, Hashable, CustomStringConvertible {
    case number(Quantity)
    case boolean(Bool)
    case text(String)
    case parameter(String)
    case series(String)
    case call(SeriesFunction, Expr)
    case absolute(Expr)
    case convert(Expr, LabUnit)
    case binary(BinaryOperator, Expr, Expr)
    case negate(Expr)
    case not(Expr)

    public var description: String {
        switch self {
        case .number(let q): q.description
        case .boolean(let b): "\(b)"
        case .text(let s): "\"\(s)\""
        case .parameter(let name): "$\(name)"
        case .series(let name): name
        case .call(let f, let arg): "\(f.rawValue)(\(arg))"
        case .absolute(let e): "abs(\(e))"
        case .convert(let e, let unit): "(\(e) in \(unit.symbol))"
        case .binary(let op, let l, let r): "(\(l) \(op.rawValue) \(r))"
        case .negate(let e): "-\(e)"
        case .not(let e): "not \(e)"
        }
    }

    /// The direct sub-expressions.
    public var children: [Expr] {
        switch self {
        case .number, .boolean, .text, .parameter, .series: []
        case .call(_, let e), .absolute(let e), .convert(let e, _), .negate(let e), .not(let e): [e]
        case .binary(_, let l, let r): [l, r]
        }
    }

    /// Names of measured series this expression reads.
    public var seriesNames: Set<String> {
        if case .series(let name) = self { return [name] }
        return children.reduce(into: []) { $0.formUnion($1.seriesNames) }
    }

    public var parameterNames: Set<String> {
        if case .parameter(let name) = self { return [name] }
        return children.reduce(into: []) { $0.formUnion($1.parameterNames) }
    }
}

public enum SeriesFunction: String, Sendable, CaseIterable {
    case mean, min, max, last, first, std, count, slope
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
    case text(String)

    public var description: String {
        switch self {
        case .quantity(let q): q.description
        case .bool(let b): "\(b)"
        case .text(let s): s
        }
    }
}

/// A measured series: values in one unit, with the monotonic time (s) of each reading.
public struct Series: Sendable, Hashable {
    public var unit: LabUnit
    public var values: [Double] = []
    public var times: [Double] = []

    public init(unit: LabUnit, values: [Double] = [], times: [Double] = []) {
        self.unit = unit; self.values = values; self.times = times
    }

    public mutating func append(_ value: Double, at time: Double) {
        values.append(value)
        times.append(time)
    }
}

/// The values an expression can see while a run executes.
public struct ExprEnvironment: Sendable {
    public var parameters: [String: ExprValue]
    public var series: [String: Series]

    public init(parameters: [String: ExprValue] = [:], series: [String: Series] = [:]) {
        self.parameters = parameters; self.series = series
    }

    public init(quantities: [String: Quantity]) {
        self.init(parameters: quantities.mapValues(ExprValue.quantity))
    }

    public func evaluate(_ expr: Expr) throws(LabError) -> ExprValue {
        switch expr {
        case .number(let q):
            return .quantity(q)
        case .boolean(let b):
            return .bool(b)
        case .text(let s):
            return .text(s)
        case .parameter(let name):
            guard let value = parameters[name] else { throw LabError(.unknownReference, "no value for parameter $\(name)") }
            return value
        case .series(let name):
            guard let s = series[name], let last = s.values.last else {
                throw LabError(.unknownReference, "no measurement named '\(name)' yet")
            }
            return .quantity(Quantity(last, s.unit))
        case .call(let function, let argument):
            guard case .series(let name) = argument else {
                throw LabError(.invalidFile, "\(function.rawValue)() takes the name of a measured series")
            }
            return .quantity(try Self.apply(function, to: series[name], name: name))
        case .absolute(let inner):
            let q = try quantity(inner)
            return .quantity(Quantity(abs(q.value), q.unit))
        case .convert(let inner, let unit):
            return .quantity(try quantity(inner).converted(to: unit))
        case .negate(let inner):
            let q = try quantity(inner)
            return .quantity(Quantity(-q.value, q.unit))
        case .not(let inner):
            return .bool(!(try condition(inner)))
        case .binary(let op, let l, let r):
            // `and`/`or` short-circuit, so `count(x) > 0 and last(x) > 1` never reads an empty series.
            if op == .and || op == .or {
                let left = try condition(l)
                if op == .and && !left { return .bool(false) }
                if op == .or && left { return .bool(true) }
                return .bool(try condition(r))
            }
            return try Self.combine(op, try evaluate(l), try evaluate(r))
        }
    }

    public func quantity(_ expr: Expr) throws(LabError) -> Quantity {
        guard case .quantity(let q) = try evaluate(expr) else {
            throw LabError(.invalidFile, "\(expr) is not a number")
        }
        guard q.value.isFinite else { throw LabError(.notANumber, "\(expr) evaluates to \(q.value)") }
        return q
    }

    public func condition(_ expr: Expr) throws(LabError) -> Bool {
        guard case .bool(let b) = try evaluate(expr) else {
            throw LabError(.invalidFile, "\(expr) is not a condition")
        }
        return b
    }

    static func apply(_ function: SeriesFunction, to series: Series?, name: String) throws(LabError) -> Quantity {
        let xs = series?.values ?? []
        if function == .count { return Quantity(Double(xs.count)) }
        guard let series, !xs.isEmpty else {
            throw LabError(.unknownReference, "\(function.rawValue)(\(name)): no measurements named '\(name)'")
        }
        let unit = series.unit
        let mean = xs.reduce(0, +) / Double(xs.count)
        // Spreads and slopes are differences: they keep the unit's scale but not its offset.
        let difference = LabUnit(unit.symbol, unit.dimension, scale: unit.scale)
        switch function {
        case .mean: return Quantity(mean, unit)
        case .min: return Quantity(xs.min()!, unit)
        case .max: return Quantity(xs.max()!, unit)
        case .last: return Quantity(xs.last!, unit)
        case .first: return Quantity(xs.first!, unit)
        case .count: return Quantity(Double(xs.count))
        case .std:
            guard xs.count > 1 else { return Quantity(0, difference) }
            let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)
            return Quantity(variance.squareRoot(), difference)
        case .slope:
            // Least-squares slope against time, per second.
            let rate = LabUnit("\(unit.symbol)/s", unit.dimension / .time, scale: unit.scale)
            guard xs.count > 1 else { return Quantity(0, rate) }
            let ts = series.times, tMean = ts.reduce(0, +) / Double(ts.count)
            let sxx = ts.reduce(0) { $0 + ($1 - tMean) * ($1 - tMean) }
            guard sxx > 0 else { return Quantity(0, rate) }
            let sxy = zip(ts, xs).reduce(0) { $0 + ($1.0 - tMean) * ($1.1 - mean) }
            return Quantity(sxy / sxx, rate)
        }
    }

    static func combine(_ op: BinaryOperator, _ l: ExprValue, _ r: ExprValue) throws(LabError) -> ExprValue {
        switch (l, r) {
        case (.bool(let a), .bool(let b)) where op == .equal || op == .notEqual:
            return .bool((a == b) == (op == .equal))
        case (.text(let a), .text(let b)) where op == .equal || op == .notEqual:
            return .bool((a == b) == (op == .equal))
        case (.quantity(let a), .quantity(let b)):
            return try combine(op, a, b)
        default:
            throw LabError(.invalidFile, "'\(op.rawValue)' cannot combine \(l) and \(r)")
        }
    }

    static func combine(_ op: BinaryOperator, _ a: Quantity, _ b: Quantity) throws(LabError) -> ExprValue {
        // A bare number beside a quantity is in that quantity's unit: `$temperature > 50`.
        var (a, b) = (a, b)
        if op != .multiply && op != .divide {
            if b.unit == .one && a.unit != .one { b.unit = a.unit }
            if a.unit == .one && b.unit != .one { a.unit = b.unit }
        }
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
            // Rates and products are differences: offsets do not take part (2 degC/min × 3 min = 6 K).
            let (x, y) = (a.value * a.unit.scale, b.value * b.unit.scale)
            let dimension = op == .multiply ? a.dimension * b.dimension : a.dimension / b.dimension
            let symbol = "\(a.unit.symbol)\(op == .multiply ? "·" : "/")\(b.unit.symbol)"
            return .quantity(Quantity(op == .multiply ? x * y : x / y, dimension == .dimensionless ? .one : LabUnit(symbol, dimension)))
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
