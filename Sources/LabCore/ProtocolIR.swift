/// The validated, typed form of a protocol file. The engine interprets it; a simulator runs the
/// same data. Nothing here performs I/O.
public struct ProtocolDefinition: Sendable {
    public var name: String
    public var languageVersion: Int
    public var instruments: [InstrumentRole]
    public var parameters: [ParameterSpec]
    public var steps: [Step]
    public var finally: [Step]
    public var outputs: [OutputSpec]
    public var source: SourceText
    /// Files included as sub-protocols, for provenance.
    public var includes: [SourceText]

    public init(name: String, languageVersion: Int, instruments: [InstrumentRole], parameters: [ParameterSpec],
                steps: [Step], finally: [Step], outputs: [OutputSpec], source: SourceText, includes: [SourceText] = []) {
        self.name = name; self.languageVersion = languageVersion; self.instruments = instruments
        self.parameters = parameters; self.steps = steps; self.finally = finally
        self.outputs = outputs; self.source = source; self.includes = includes
    }

    public func parameter(named name: String) -> ParameterSpec? { parameters.first { $0.name == name } }

    /// Parameter values for a run: the given ones checked, the rest from their defaults.
    public func resolveParameters(_ given: [String: ExprValue]) throws(LabError) -> [String: ExprValue] {
        for name in given.keys where parameter(named: name) == nil {
            throw LabError(.unknownReference, "\(self.name) has no parameter $\(name)")
        }
        var resolved: [String: ExprValue] = [:]
        for spec in parameters {
            guard let value = given[spec.name] ?? spec.defaultValue else {
                throw LabError(.unknownReference, "no value for parameter $\(spec.name) and it has no default")
            }
            resolved[spec.name] = try spec.checked(value)
        }
        return resolved
    }
}

/// The text a definition was compiled from, kept for provenance.
public struct SourceText: Sendable, Hashable {
    public var path: String
    public var text: String
    public var sha256: String

    public init(path: String, text: String, sha256: String) {
        self.path = path; self.text = text; self.sha256 = sha256
    }
}

/// A role the protocol needs (`reactor`) and the driver type that can fill it (`thermo-reactor`).
public struct InstrumentRole: Sendable, Hashable {
    public var role: String
    public var driver: String
    public var location: SourceLocation

    public init(role: String, driver: String, location: SourceLocation) {
        self.role = role; self.driver = driver; self.location = location
    }
}

public struct ParameterSpec: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case real(unit: LabUnit, lower: Double, upper: Double, logScale: Bool)
        case integer(lower: Int, upper: Int)
        case boolean
        case choice([String])
    }

    public var name: String
    public var kind: Kind
    public var defaultValue: ExprValue?
    public var description: String?
    public var location: SourceLocation

    public init(name: String, kind: Kind, defaultValue: ExprValue? = nil, description: String? = nil,
                location: SourceLocation) {
        self.name = name; self.kind = kind; self.defaultValue = defaultValue; self.description = description
        self.location = location
    }

    /// The value converted to the parameter's unit, or an error a person can act on.
    public func checked(_ value: ExprValue) throws(LabError) -> ExprValue {
        switch (kind, value) {
        case (.real(let unit, let lower, let upper, _), .quantity(let q)):
            let x = try (q.unit == .one ? Quantity(q.value, unit) : q).converted(to: unit).value
            guard x.isFinite else { throw LabError(.notANumber, "refused $\(name) = \(x): not a finite number") }
            guard x >= lower, x <= upper else {
                // Rounded to six decimals for reading, except where that would overflow (1e308 is not "inf").
                let shown = abs(x) < 1e300 ? (x * 1e6).rounded() / 1e6 : x
                throw LabError(.outOfLimits, "$\(name) = \(shown) \(unit) is outside \(lower)…\(upper) \(unit)")
            }
            return .quantity(Quantity(x, unit))
        case (.integer(let lower, let upper), .quantity(let q)) where q.unit == .one:
            guard q.value.isFinite else { throw LabError(.notANumber, "refused $\(name) = \(q.value): not a finite number") }
            guard q.value == q.value.rounded(), q.value >= Double(lower), q.value <= Double(upper) else {
                throw LabError(.outOfLimits, "$\(name) must be a whole number from \(lower) to \(upper), not \(q.value)")
            }
            return value
        case (.boolean, .bool):
            return value
        case (.choice(let options), .text(let s)):
            guard options.contains(s) else {
                throw LabError(.outOfLimits, "$\(name) must be one of \(options.joined(separator: ", ")), not '\(s)'")
            }
            return value
        case (_, .quantity(let q)) where !q.value.isFinite:
            throw LabError(.notANumber, "refused $\(name) = \(q.value): not a finite number")
        default:
            throw LabError(.invalidFile, "$\(name) does not take \(value)")
        }
    }

    /// A value from a number an advisor works in: a real in the parameter's unit, an integer
    /// rounded, a boolean as 0 or 1, a choice as the index of its option.
    /// A coordinate that is not a finite number is passed on as a number, for `checked` to refuse:
    /// never rounded, clamped or read as false.
    public func value(coordinate x: Double) -> ExprValue {
        guard x.isFinite else { return .quantity(Quantity(x)) }
        return switch kind {
        case .real(let unit, _, _, _): .quantity(Quantity(x, unit))
        case .integer: .quantity(Quantity(x.rounded()))
        case .boolean: .bool(x >= 0.5)
        case .choice(let options): .text(options[min(max(Int(x.rounded()), 0), options.count - 1)])
        }
    }

    /// The number an advisor works in for a value this parameter accepts (see `value(coordinate:)`).
    public func coordinate(of value: ExprValue) -> Double? {
        switch (kind, value) {
        case (.real(let unit, _, _, _), .quantity(let q)): try? q.converted(to: unit).value
        case (.integer, .quantity(let q)): q.value
        case (.boolean, .bool(let b)): b ? 1 : 0
        case (.choice(let options), .text(let s)): options.firstIndex(of: s).map(Double.init)
        default: nil
        }
    }

    /// The unit of a real parameter, the dimensionless unit otherwise.
    public var unit: LabUnit {
        if case .real(let unit, _, _, _) = kind { return unit }
        return .one
    }
}

public struct OutputSpec: Sendable, Hashable {
    public var name: String
    public var expression: Expr
    public var location: SourceLocation

    public init(name: String, expression: Expr, location: SourceLocation) {
        self.name = name; self.expression = expression; self.location = location
    }
}

public struct Step: Sendable, Hashable {
    public var action: Action
    public var location: SourceLocation
    /// The step's number in the file (pre-order, from 1), stored with every reading it takes.
    public var id: Int
    /// False for a step that must not be done twice (a dispense): an immediate pause after it waits
    /// for the next checkpoint instead of rewinding over it, or aborts the run if `abortsOnPause`.
    public var repeatable = true
    public var abortsOnPause = false
    /// The longest the step may take on the run's clock; past it the step fails.
    public var timeout: Expr?

    public init(_ action: Action, at location: SourceLocation, id: Int = 0) {
        self.action = action; self.location = location; self.id = id
    }

    public enum Action: Sendable, Hashable {
        case set(ChannelRef, Expr)
        case ramp(Ramp)
        case waitUntil(WaitUntil)
        case hold(Expr)
        case measure(Measure)
        case log(String)
        case annotate([String: String])
        case checkpoint(String)
        case branch(condition: Expr, then: [Step], otherwise: [Step])
        case parallel([[Step]])
        /// `repeat` and `for_each`: the body once per value, with the value bound to `variable`;
        /// stops early once `until` holds after an iteration.
        case loop(variable: String?, values: [Expr], body: [Step], until: Expr?)
        /// An included sub-protocol: its parameters bound from the including protocol's expressions.
        case scope(name: String, bindings: [String: Expr], body: [Step])
    }

    /// The steps nested inside this one.
    public var children: [[Step]] {
        switch action {
        case .branch(_, let then, let otherwise): [then, otherwise]
        case .parallel(let branches): branches
        case .loop(_, _, let body, _), .scope(_, _, let body): [body]
        default: []
        }
    }
}

public struct Ramp: Sendable, Hashable {
    public var channel: ChannelRef
    public var target: Expr
    public var rate: Expr
    public var every: Expr

    public init(channel: ChannelRef, target: Expr, rate: Expr, every: Expr) {
        self.channel = channel; self.target = target; self.rate = rate; self.every = every
    }
}

public struct WaitUntil: Sendable, Hashable {
    public enum OnTimeout: String, Sendable, Hashable, CaseIterable { case fail, `continue` }

    public var channel: ChannelRef
    public var target: Expr
    public var tolerance: Expr
    public var timeout: Expr
    public var pollEvery: Expr
    public var onTimeout: OnTimeout

    public init(channel: ChannelRef, target: Expr, tolerance: Expr, timeout: Expr, pollEvery: Expr,
                onTimeout: OnTimeout = .fail) {
        self.channel = channel; self.target = target; self.tolerance = tolerance
        self.timeout = timeout; self.pollEvery = pollEvery; self.onTimeout = onTimeout
    }
}

public struct Measure: Sendable, Hashable {
    public var channel: ChannelRef
    public var name: String
    /// The number of readings; with `until`, the most readings taken.
    public var count: Int
    public var every: Expr?
    public var until: Expr?

    public init(channel: ChannelRef, name: String, count: Int, every: Expr?, until: Expr? = nil) {
        self.channel = channel; self.name = name; self.count = count; self.every = every; self.until = until
    }
}
