import Foundation
import LabCore

/// References, units and limits: what makes a protocol that validates safe to run.
extension ProtocolCompiler {
    // MARK: channels

    func channel(_ node: Node) -> (ChannelRef, ChannelSpec?)? {
        guard let ref = source.channelRef(node, "channel") else { return nil }
        guard let role = roles[ref.instrument] else {
            source.error(node, "unknown instrument '\(ref.instrument)'",
                         hint: suggestion(for: ref.instrument, among: roles.keys) ?? "declare it under 'instruments:'")
            return nil
        }
        guard let driver = drivers[role.driver] else { return (ref, nil) }
        guard let spec = driver.channel(ref.channel) else {
            source.error(node, "unknown channel '\(ref.instrument).\(ref.channel)'",
                         hint: suggestion(for: ref.channel, among: driver.channels.keys))
            return nil
        }
        return (ref, spec)
    }

    func writableChannel(_ node: Node) -> ChannelRef? {
        guard let (ref, spec) = channel(node) else { return nil }
        if let spec, !spec.writable { source.error(node, "channel '\(ref)' is read-only") }
        return ref
    }

    /// `arrays`: whether the step can take an array channel's reading (only `measure` can).
    func readableChannel(_ node: Node, arrays: Bool = false) -> ChannelRef? {
        guard let (ref, spec) = channel(node) else { return nil }
        if let spec, !spec.readable { source.error(node, "channel '\(ref)' cannot be read") }
        if let spec, spec.array != nil, !arrays {
            source.error(node, "'\(ref)' is an array channel: only measure reads it", hint: "wait on a numeric channel")
        }
        if let spec, spec.isText {
            source.error(node, "'\(ref)' is a string channel: its text is recorded with each run, not measured",
                         hint: "docs/drivers.md, \"String channels\"")
        }
        return ref
    }

    func channelSpec(_ ref: ChannelRef) -> ChannelSpec? {
        roles[ref.instrument].flatMap { drivers[$0.driver] }?.channel(ref.channel)
    }

    // MARK: types

    /// The type an expression will have, where it can be known before running; reports unknown
    /// names and mismatched units at `node`.
    func type(of expr: Expr, _ node: Node) -> ValueType? {
        switch expr {
        case .number(let q): return q.unit == .one ? .bare : .quantity(q.dimension)
        case .boolean: return .bool
        case .text: return .text
        case .parameter(let name):
            if let variable = variables.last(where: { $0.name == name }) { return variable.type }
            guard let spec = parameters[name] else {
                let known = Array(parameters.keys) + variables.map(\.name)
                source.error(node, "unknown parameter '$\(name)'", hint: suggestion(for: name, among: known))
                return nil
            }
            switch spec.kind {
            case .real(let unit, _, _, _): return unit == .one ? .bare : .quantity(unit.dimension)
            case .integer: return .bare
            case .boolean: return .bool
            case .choice: return .text
            }
        case .series(let name):
            if context.arraySeries.contains(name) {
                source.error(node, "'\(name)' is an array series; expressions read numbers only",
                             hint: "export the run to analyse its arrays")
                return nil
            }
            guard let unit = context.measured[name] else {
                source.error(node, "'\(name)' is not measured before it is used",
                             hint: suggestion(for: name, among: context.measured.keys) ?? "add a measure step with 'as: \(name)'")
                return nil
            }
            // Without its driver, a series' unit is unknown: no unit check rather than a false one.
            return context.unknownUnits.contains(name) ? nil : .quantity(unit.dimension)
        case .call(let function, let argument):
            guard let inner = type(of: argument, node) else { return function == .count ? .bare : nil }
            switch function {
            case .count: return .bare
            case .slope: return inner.dimension.map { .quantity($0 / .time) }
            default: return inner
            }
        case .absolute(let inner), .negate(let inner):
            let t = type(of: inner, node)
            if let t, t.dimension == nil { source.error(node, "'\(expr)' needs a number, not a \(t.name)") }
            return t
        case .convert(let inner, let unit):
            if let t = type(of: inner, node), let d = t.dimension, t != .bare, d != unit.dimension {
                source.error(node, "cannot express a \(d) in \(unit.symbol) (a \(unit.dimension))")
            }
            return .quantity(unit.dimension)
        case .not(let inner):
            checkType(inner, .bool, node)
            return .bool
        case .binary(let op, let l, let r):
            let (a, b) = (type(of: l, node), type(of: r, node))
            guard let a, let b else { return op.isComparison || op == .and || op == .or ? .bool : nil }
            return combine(op, a, b, expr, node)
        }
    }

    private func combine(_ op: BinaryOperator, _ a: ValueType, _ b: ValueType, _ expr: Expr, _ node: Node) -> ValueType? {
        switch op {
        case .and, .or:
            if a != .bool || b != .bool { source.error(node, "'\(op.rawValue)' joins conditions; '\(expr)' has a \(a == .bool ? b.name : a.name)") }
            return .bool
        default:
            break
        }
        if (op == .equal || op == .notEqual) && (a == .text || a == .bool) {
            if a != b { source.error(node, "'\(expr)' compares a \(a.name) with a \(b.name)") }
            return .bool
        }
        guard let da = a.dimension, let db = b.dimension else {
            source.error(node, "'\(op.rawValue)' cannot combine a \(a.name) and a \(b.name) in '\(expr)'")
            return nil
        }
        switch op {
        case .multiply: return a == .bare ? b : b == .bare ? a : .quantity(da * db)
        case .divide: return b == .bare ? a : .quantity(da / db)
        default:
            if !Self.compatible(a, b) {
                source.error(node, "'\(expr)' mixes a \(da) and a \(db)")
                return op.isComparison ? .bool : nil
            }
            return op.isComparison ? .bool : (a == .bare ? b : a)
        }
    }

    /// Bare numbers go with anything numeric (they take the other side's unit).
    static func compatible(_ a: ValueType, _ b: ValueType) -> Bool {
        if a == b || (a == .bare && b.dimension != nil) || (b == .bare && a.dimension != nil) { return true }
        return a.dimension != nil && a.dimension == b.dimension
    }

    func checkType(_ expr: Expr, _ expected: ValueType, _ node: Node, example: String? = nil) {
        guard let actual = type(of: expr, node) else { return }
        if !Self.compatible(actual, expected) {
            source.error(node, "'\(expr)' is a \(actual.name), expected a \(expected.name)", hint: example.map { "e.g. '\($0)'" })
        } else if expr.parameterNames.isEmpty, expr.seriesNames.isEmpty,
                  case .quantity(let q)? = try? ExprEnvironment().evaluate(expr), !q.value.isFinite {
            // `0/0`, `1 degC / 0`: known now, so not left for the run to find.
            source.error(node, "'\(expr)' is not a finite number (it comes to \(q.value.isNaN ? "NaN" : q.value > 0 ? "infinity" : "-infinity"))", hint: "look for a division by zero or a number too large")
        }
    }

    /// A duration must say its unit: `hold: 5` could be seconds or hours.
    func duration(_ node: Node, _ what: String) -> Expr? {
        guard let expr = source.expression(node, what) else { return nil }
        if type(of: expr, node) == .bare {
            source.error(node, "\(what) needs a time unit", hint: "e.g. '\(expr) s' or '\(expr) min'")
            return nil
        }
        checkType(expr, .quantity(.time), node, example: "10 min")
        return expr
    }

    // MARK: limits

    /// The value a `set` writes: right kind, right dimension, and — where it can be known before
    /// running — inside the channel's limits for every value its parameters and loop variables can take.
    func checkAssignment(_ value: Expr, to ref: ChannelRef, _ node: Node) {
        guard let spec = channelSpec(ref) else { _ = type(of: value, node); return }
        if spec.type == .bool {
            checkType(value, .bool, node, example: "true")
            return
        }
        checkType(value, .quantity(spec.unit.dimension), node, example: "25 \(spec.unit.symbol)")
        if let limits = spec.limits { checkLimits(value, limits, spec.unit, ref, node) }
    }

    /// Refuses a write that can leave the channel's limits for some allowed parameter value: the
    /// run-time guard would stop that run half-way, so it is a protocol bug found now.
    private func checkLimits(_ value: Expr, _ limits: ClosedRange<Double>, _ unit: LabUnit, _ ref: ChannelRef, _ node: Node) {
        guard let range = ValueRange.of(value, knownRanges(for: value)) else { return }
        func inUnit(_ q: Quantity) -> Double? { q.unit == .one ? q.value : (try? q.converted(to: unit))?.value }
        guard let low = inUnit(range.low.value), let high = inUnit(range.high.value) else { return }
        let allowed = "outside the limits \(Self.number(limits.lowerBound))…\(Self.number(limits.upperBound))\(unit.afterNumber) of '\(ref)'"
        let names = value.parameterNames.sorted().map { "$\($0)" }.joined(separator: ", ")
        if names.isEmpty {
            // A constant: checkType has already refused one that is not a finite number.
            guard low.isFinite, !limits.contains(low) else { return }
            if case .number(let q) = value, q.unit == unit || q.unit == .one {
                source.error(node, "'\(value)' is \(allowed)")
            } else {
                source.error(node, "'\(value)' is \(Self.number(low))\(unit.afterNumber), \(allowed)")
            }
            return
        }
        let within = "\(Self.number(limits.lowerBound))…\(Self.number(limits.upperBound))\(unit.afterNumber)"
        let either = value.parameterNames.sorted().map { "$\($0)" }.joined(separator: " or ")
        let remedy = "narrow the range of \(either) so that it stays within \(within)"
        if high < limits.lowerBound || low > limits.upperBound {
            source.error(node, "'\(value)' is \(Self.number(low))…\(Self.number(high)) \(unit) for the allowed values of \(names), always \(allowed)",
                         hint: "change the expression or the range of \(either) so that it lies within \(within)")
            return
        }
        for end in [range.high, range.low] {
            guard let witness = end.witness else {
                // Only division by a range that contains zero leaves an end unknown.
                if !end.value.value.isFinite {
                    source.error(node, "'\(value)' has no bound: it divides by a value that can be zero for the allowed values of \(names), so it can be \(allowed)",
                             hint: "narrow the range of \(either) so that the divisor cannot be zero")
                    return
                }
                continue
            }
            guard let q = try? ExprEnvironment(parameters: witness).quantity(value), let reached = inUnit(q),
                  !limits.contains(reached) else { continue }
            let at = witness.filter { value.parameterNames.contains($0.key) }.sorted { $0.key < $1.key }
                .map { "$\($0.key) = \($0.value)" }.joined(separator: ", ")
            source.error(node, "'\(value)' reaches \(Self.number(reached)) \(unit) at \(at), \(allowed)", hint: remedy)
            return
        }
    }

    /// Refuses a ramp rate that can exceed the channel's `max_rate` (per second, in its unit): the
    /// write guard would refuse the ramp's first step.
    func checkRate(_ rate: Expr, _ maxRate: Double, _ unit: LabUnit, _ ref: ChannelRef, _ node: Node) {
        let perSecond = LabUnit("\(unit.symbol)/s", unit.dimension / .time, scale: unit.scale)
        guard let range = ValueRange.of(rate, knownRanges(for: rate)),
              let low = try? range.low.value.convertedDifference(to: perSecond).value,
              let high = try? range.high.value.convertedDifference(to: perSecond).value else { return }
        let fastest = max(abs(low), abs(high))
        guard fastest > maxRate * (1 + 1e-9) else { return }
        let max = "\(Self.number(maxRate * 60)) \(unit)/min"
        if rate.parameterNames.isEmpty {
            source.error(node, "ramp rate '\(rate)' is \(Self.number(fastest * 60)) \(unit)/min, faster than the max_rate \(max) of '\(ref)'",
                         hint: "ramp at \(max) or slower")
        } else {
            let names = rate.parameterNames.sorted().map { "$\($0)" }.joined(separator: " or ")
            source.error(node, "ramp rate '\(rate)' reaches \(Self.number(fastest * 60)) \(unit)/min for allowed values of \(names), faster than the max_rate \(max) of '\(ref)'",
                         hint: "narrow the range of \(names) so that the rate stays within \(max)")
        }
    }

    /// The range of each parameter and loop variable `expr` reads, each end with the value that is it.
    private func knownRanges(for expr: Expr) -> [String: ValueRange] {
        var known: [String: ValueRange] = [:]
        for name in expr.parameterNames {
            if let variable = variables.last(where: { $0.name == name }) {
                // A loop's values, where each is a constant number in one dimension.
                let values = variable.values.compactMap { try? ExprEnvironment().quantity($0) }
                guard values.count == variable.values.count, let first = values.first else { continue }
                let inFirst = values.compactMap { try? $0.converted(to: first.unit) }
                guard inFirst.count == values.count else { continue }
                let low = inFirst.min { $0.value < $1.value }!, high = inFirst.max { $0.value < $1.value }!
                known[name] = ValueRange(low: .init(value: low, witness: [name: .quantity(low)]),
                                         high: .init(value: high, witness: [name: .quantity(high)]))
            } else if let spec = parameters[name] {
                let (low, high): (Quantity, Quantity)
                switch spec.kind {
                case .real(let unit, let lower, let upper, _): (low, high) = (Quantity(lower, unit), Quantity(upper, unit))
                case .integer(let lower, let upper): (low, high) = (Quantity(Double(lower)), Quantity(Double(upper)))
                case .boolean, .choice: continue
                }
                known[name] = ValueRange(low: .init(value: low, witness: [name: .quantity(low)]),
                                         high: .init(value: high, witness: [name: .quantity(high)]))
            }
        }
        return known
    }

    /// `150`, `0.5`, `1e+300`: numbers as a person writes them.
    static func number(_ x: Double) -> String { String(format: "%g", x) }

    func checkParameterBinding(_ expr: Expr, _ spec: ParameterSpec, _ node: Node) {
        switch spec.kind {
        case .real(let unit, _, _, _): checkType(expr, unit == .one ? .bare : .quantity(unit.dimension), node)
        case .integer: checkType(expr, .bare, node)
        case .boolean: checkType(expr, .bool, node)
        case .choice: checkType(expr, .text, node)
        }
        guard expr.seriesNames.isEmpty else { return }
        for environment in candidateEnvironments(for: expr) {
            guard let value = try? environment.evaluate(expr) else { continue }
            do { _ = try spec.checked(value) } catch {
                source.error(node, error.message)
                return
            }
        }
    }

    /// Environments that put each parameter and loop variable the expression reads at each of its
    /// extreme or listed values, one at a time (others at their first value).
    func candidateEnvironments(for expr: Expr) -> [ExprEnvironment] {
        var options: [String: [ExprValue]] = [:]
        for name in expr.parameterNames {
            if let variable = variables.last(where: { $0.name == name }) {
                options[name] = variable.values.compactMap { try? ExprEnvironment().evaluate($0) }
            } else if let spec = parameters[name] {
                switch spec.kind {
                case .real(let unit, let lower, let upper, _):
                    options[name] = [.quantity(Quantity(lower, unit)), .quantity(Quantity(upper, unit))]
                case .integer(let lower, let upper):
                    options[name] = [.quantity(Quantity(Double(lower))), .quantity(Quantity(Double(upper)))]
                case .boolean: options[name] = [.bool(false), .bool(true)]
                case .choice(let values): options[name] = values.map(ExprValue.text)
                }
            }
        }
        guard options.count == expr.parameterNames.count, options.values.allSatisfy({ !$0.isEmpty }) else { return [] }
        let base = options.mapValues { $0[0] }
        var environments = [ExprEnvironment(parameters: base)]
        for (name, values) in options {
            for value in values.dropFirst() {
                var parameters = base
                parameters[name] = value
                environments.append(ExprEnvironment(parameters: parameters))
            }
        }
        return environments
    }
}

extension BinaryOperator {
    var isComparison: Bool {
        switch self {
        case .less, .lessEqual, .greater, .greaterEqual, .equal, .notEqual: true
        default: false
        }
    }
}
