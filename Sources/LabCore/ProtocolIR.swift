/// The validated, typed form of a protocol file. The engine interprets it; a simulator can run the
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

    public init(name: String, languageVersion: Int, instruments: [InstrumentRole], parameters: [ParameterSpec],
                steps: [Step], finally: [Step], outputs: [OutputSpec], source: SourceText) {
        self.name = name; self.languageVersion = languageVersion; self.instruments = instruments
        self.parameters = parameters; self.steps = steps; self.finally = finally
        self.outputs = outputs; self.source = source
    }

    public func parameter(named name: String) -> ParameterSpec? { parameters.first { $0.name == name } }
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
    public var name: String
    public var unit: LabUnit
    public var lower: Double
    public var upper: Double
    public var location: SourceLocation

    public init(name: String, unit: LabUnit, lower: Double, upper: Double, location: SourceLocation) {
        self.name = name; self.unit = unit; self.lower = lower; self.upper = upper; self.location = location
    }

    public func contains(_ value: Double) -> Bool { value.isFinite && value >= lower && value <= upper }
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

    public init(_ action: Action, at location: SourceLocation) {
        self.action = action; self.location = location
    }

    public enum Action: Sendable, Hashable {
        case set(ChannelRef, Expr)
        case waitUntil(WaitUntil)
        case hold(Expr)
        case measure(Measure)
        case log(String)
        case branch(condition: Expr, then: [Step], otherwise: [Step])
    }
}

public struct WaitUntil: Sendable, Hashable {
    public var channel: ChannelRef
    public var target: Expr
    public var tolerance: Expr
    public var timeout: Expr
    public var pollEvery: Expr

    public init(channel: ChannelRef, target: Expr, tolerance: Expr, timeout: Expr, pollEvery: Expr) {
        self.channel = channel; self.target = target; self.tolerance = tolerance
        self.timeout = timeout; self.pollEvery = pollEvery
    }
}

public struct Measure: Sendable, Hashable {
    public var channel: ChannelRef
    public var name: String
    public var count: Int
    public var every: Expr?

    public init(channel: ChannelRef, name: String, count: Int, every: Expr?) {
        self.channel = channel; self.name = name; self.count = count; self.every = every
    }
}
