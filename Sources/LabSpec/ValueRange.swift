import LabCore

/// The values an expression over parameters can take: interval arithmetic over the parameters'
/// ranges. Each end remembers the parameter values that reach it, so a limit check can say which
/// values go too far, and check the claim by evaluating the expression there (a parameter used
/// twice, as in `$a - $a`, widens an interval beyond what the expression can really reach).
struct ValueRange {
    struct End {
        var value: Quantity
        /// Parameter values at which the expression takes this value; nil when none is known.
        var witness: [String: ExprValue]?
    }

    var low: End
    var high: End

    var isBounded: Bool { low.value.value.isFinite && high.value.value.isFinite }

    static func point(_ q: Quantity, _ witness: [String: ExprValue] = [:]) -> ValueRange {
        ValueRange(low: End(value: q, witness: witness), high: End(value: q, witness: witness))
    }

    /// Every number, in `unit`: what division by a range that contains zero gives.
    static func unbounded(_ unit: LabUnit) -> ValueRange {
        ValueRange(low: End(value: Quantity(-.infinity, unit), witness: nil),
                   high: End(value: Quantity(.infinity, unit), witness: nil))
    }

    /// The range of `expr` when each parameter or loop variable takes any value `known` allows;
    /// nil where it cannot be known before running (a series, text, a condition).
    static func of(_ expr: Expr, _ known: [String: ValueRange]) -> ValueRange? {
        switch expr {
        case .number(let q): return .point(q)
        case .parameter(let name): return known[name]
        case .negate(let inner):
            guard let r = of(inner, known) else { return nil }
            return ValueRange(low: r.high.negated, high: r.low.negated)
        case .absolute(let inner):
            guard let r = of(inner, known) else { return nil }
            if r.low.value.value >= 0 { return r }
            if r.high.value.value <= 0 { return ValueRange(low: r.high.negated, high: r.low.negated) }
            let top = -r.low.value.value > r.high.value.value ? r.low.negated : r.high
            return ValueRange(low: End(value: Quantity(0, r.low.value.unit), witness: nil), high: top)
        case .convert(let inner, let unit):
            // Conversions between units increase: the ends stay the ends.
            guard let r = of(inner, known),
                  let low = try? r.low.value.converted(to: unit), let high = try? r.high.value.converted(to: unit) else { return nil }
            return ValueRange(low: End(value: low, witness: r.low.witness), high: End(value: high, witness: r.high.witness))
        case .binary(let op, let l, let r):
            guard [.add, .subtract, .multiply, .divide].contains(op), let a = of(l, known), let b = of(r, known) else { return nil }
            return combine(op, a, b)
        case .boolean, .text, .series, .call, .not: return nil
        }
    }

    /// Sums and differences grow with each side; products and quotients of ranges (not containing
    /// zero, for a divisor) have their extremes among the four corners.
    private static func combine(_ op: BinaryOperator, _ a: ValueRange, _ b: ValueRange) -> ValueRange? {
        let pairs: [(End, End)] = switch op {
        case .add: [(a.low, b.low), (a.high, b.high)]
        case .subtract: [(a.low, b.high), (a.high, b.low)]
        default: [(a.low, b.low), (a.low, b.high), (a.high, b.low), (a.high, b.high)]
        }
        var ends: [End] = []
        for (x, y) in pairs {
            guard case .quantity(let q)? = try? ExprEnvironment().evaluate(.binary(op, .number(x.value), .number(y.value)))
            else { return nil }
            ends.append(End(value: q, witness: merged(x.witness, y.witness)))
        }
        let unit = ends[0].value.unit
        if op == .divide && b.low.value.value <= 0 && b.high.value.value >= 0 { return .unbounded(unit) }
        // inf - inf or 0 × inf: the range is already unbounded.
        if ends.contains(where: { $0.value.value.isNaN }) { return .unbounded(unit) }
        let low = ends.min { $0.value.value < $1.value.value }!, high = ends.max { $0.value.value < $1.value.value }!
        return ValueRange(low: low, high: high)
    }

    private static func merged(_ a: [String: ExprValue]?, _ b: [String: ExprValue]?) -> [String: ExprValue]? {
        guard let a, let b else { return nil }
        return a.merging(b) { first, _ in first }
    }
}

extension ValueRange.End {
    var negated: ValueRange.End {
        ValueRange.End(value: Quantity(-value.value, value.unit), witness: witness)
    }
}
