public import LabCore
import Yams
import Foundation

/// Compiles a protocol file into a `ProtocolDefinition`, reporting every problem with its place.
/// Given the driver specs of the instruments it will run on, it also checks channels, access,
/// units and constant limits, so that a file that validates does not fail on a typo at 3 a.m.
public enum ProtocolParser {
    public static let languageVersion = 1
    /// Caps that keep hostile files from exhausting memory or stack.
    static let maximumSteps = 100_000
    static let maximumNesting = 32

    public static func load(path: String, drivers: [String: DriverSpec] = [:]) throws -> ProtocolDefinition {
        try parse(readUserFile(path), path: path, drivers: drivers)
    }

    public static func parse(_ text: String, path: String, drivers: [String: DriverSpec] = [:]) throws(ValidationError) -> ProtocolDefinition {
        let source = YAMLSource(path: path, text: text)
        var compiler = Compiler(source: source, drivers: drivers)
        let definition = source.root().flatMap { compiler.compile($0) }
        guard let definition, source.diagnostics.isEmpty else {
            throw ValidationError(source.diagnostics.sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }, source: text)
        }
        return definition
    }
}

private struct Compiler {
    let source: YAMLSource
    let drivers: [String: DriverSpec]
    var roles: [String: InstrumentRole] = [:]
    var parameters: [String: ParameterSpec] = [:]
    var measured: [String: LabUnit] = [:]
    var stepCount = 0

    init(source: YAMLSource, drivers: [String: DriverSpec]) {
        self.source = source; self.drivers = drivers
    }

    mutating func compile(_ root: Node) -> ProtocolDefinition? {
        guard let top = source.mapping(root, "protocol") else { return nil }
        var version = ProtocolParser.languageVersion
        if let node = top.required("serendip", hint: "start the file with 'serendip: 1'") {
            if let v = source.integer(node, "serendip", in: 1...1_000) {
                version = v
                if v != ProtocolParser.languageVersion {
                    source.error(node, "language version \(v) is not supported", hint: "this Serendip reads 'serendip: 1'")
                }
            }
        }
        let name = top.required("name").flatMap { source.string($0, "name") } ?? ""
        _ = top.optional("description")
        if let node = top.required("instruments"), let map = source.mapping(node, "instruments") {
            for (role, keyNode, value) in map.pairs {
                guard let driver = source.string(value, "driver of '\(role)'") else { continue }
                if !drivers.isEmpty && drivers[driver] == nil {
                    source.error(value, "no driver file for '\(driver)'", hint: suggestion(for: driver, among: drivers.keys))
                }
                roles[role] = InstrumentRole(role: role, driver: driver, location: source.location(keyNode))
            }
        }
        if let node = top.optional("parameters"), let map = source.mapping(node, "parameters") {
            for (name, keyNode, value) in map.pairs {
                if let p = parameter(name, keyNode, value) { parameters[name] = p }
            }
        }
        let steps = top.required("steps").map { block($0, "steps", depth: 0) } ?? []
        let finallySteps = top.optional("finally").map { block($0, "finally", depth: 0) } ?? []
        var outputs: [OutputSpec] = []
        if let node = top.optional("outputs"), let map = source.mapping(node, "outputs") {
            for (name, keyNode, value) in map.pairs {
                if let expr = source.expression(value, "output '\(name)'") {
                    checkReferences(expr, value)
                    outputs.append(OutputSpec(name: name, expression: expr, location: source.location(keyNode)))
                }
            }
        }
        top.rejectUnknownKeys()
        let ordered = roles.values.sorted { $0.role < $1.role }
        let params = parameters.values.sorted { ($0.location.line, $0.name) < ($1.location.line, $1.name) }
        return ProtocolDefinition(name: name, languageVersion: version, instruments: ordered, parameters: params,
                                  steps: steps, finally: finallySteps, outputs: outputs,
                                  source: SourceText(path: source.path, text: source.text, sha256: source.sha256))
    }

    func parameter(_ name: String, _ keyNode: Node, _ node: Node) -> ParameterSpec? {
        guard let map = source.mapping(node, "parameter '\(name)'") else { return nil }
        if let type = map.optional("type").flatMap({ source.string($0, "type") }), type != "real" {
            source.error(map.optional("type"), "parameter type '\(type)' is not supported yet", hint: "use 'real'")
        }
        let unit = map.optional("unit").flatMap { source.unit($0, "unit") } ?? .one
        let range = map.required("range", hint: "give [low, high]").flatMap { source.range($0, "range") }
        _ = map.optional("description")
        map.rejectUnknownKeys()
        guard let range else { return nil }
        return ParameterSpec(name: name, unit: unit, lower: range.lowerBound, upper: range.upperBound,
                             location: source.location(keyNode))
    }

    mutating func block(_ node: Node, _ what: String, depth: Int) -> [Step] {
        guard depth < ProtocolParser.maximumNesting else {
            source.error(node, "\(what) is nested more than \(ProtocolParser.maximumNesting) levels deep")
            return []
        }
        guard let items = node.sequence else {
            source.error(node, "\(what) must be a list of steps (each line starting with '- ')")
            return []
        }
        return items.compactMap { step($0, depth: depth) }
    }

    mutating func step(_ node: Node, depth: Int) -> Step? {
        stepCount += 1
        guard stepCount <= ProtocolParser.maximumSteps else {
            if stepCount == ProtocolParser.maximumSteps + 1 {
                source.error(node, "more than \(ProtocolParser.maximumSteps) steps", hint: "use sub-protocols")
            }
            return nil
        }
        guard let map = source.mapping(node, "step") else { return nil }
        let at = source.location(node)
        let kinds = ["set", "wait_until", "hold", "measure", "log", "if"]
        let present = map.pairs.map(\.key).filter(kinds.contains)
        guard present.count == 1, let kind = present.first else {
            if present.isEmpty, let first = map.pairs.first {
                source.error(first.keyNode, "unknown step '\(first.key)'", hint: suggestion(for: first.key, among: kinds)
                             ?? "a step is one of: \(kinds.joined(separator: ", "))")
            } else {
                source.error(node, "a step does exactly one thing; this one has \(present.isEmpty ? "none" : present.joined(separator: " and "))")
            }
            return nil
        }
        var action: Step.Action?
        switch kind {
        case "set":
            if let target = map.optional("set").flatMap({ writableChannel($0) }),
               let valueNode = map.required("to"), let value = source.expression(valueNode, "to") {
                checkReferences(value, valueNode)
                checkAssignment(value, to: target, valueNode)
                action = .set(target, value)
            }
        case "wait_until":
            if let body = map.optional("wait_until").flatMap({ source.mapping($0, "wait_until") }) {
                action = waitUntil(body).map(Step.Action.waitUntil)
                body.rejectUnknownKeys()
            }
        case "hold":
            if let node = map.optional("hold"), let duration = duration(node, "hold") { action = .hold(duration) }
        case "measure":
            if let body = map.optional("measure").flatMap({ source.mapping($0, "measure") }) {
                action = measure(body).map(Step.Action.measure)
                body.rejectUnknownKeys()
            }
        case "log":
            if let text = map.optional("log").flatMap({ source.string($0, "log") }) { action = .log(text) }
        default:
            if let condNode = map.optional("if"), let condition = source.expression(condNode, "if") {
                checkReferences(condition, condNode)
                let thenSteps = map.required("then").map { block($0, "then", depth: depth + 1) } ?? []
                let elseSteps = map.optional("else").map { block($0, "else", depth: depth + 1) } ?? []
                action = .branch(condition: condition, then: thenSteps, otherwise: elseSteps)
            }
        }
        map.rejectUnknownKeys()
        return action.map { Step($0, at: at) }
    }

    mutating func waitUntil(_ body: MappingReader) -> WaitUntil? {
        // Read every key before giving up on any, so one mistake does not hide the others.
        let channel = body.required("channel").flatMap { readableChannel($0) }
        let targetNode = body.required("of"), toleranceNode = body.required("within")
        let target = targetNode.flatMap { source.expression($0, "of") }
        let tolerance = toleranceNode.flatMap { source.expression($0, "within") }
        let timeout = body.required("timeout", hint: "every wait needs a timeout, e.g. 'timeout: 10 min'")
            .flatMap { duration($0, "timeout") }
        let poll = body.optional("poll").flatMap { duration($0, "poll") } ?? .number(Quantity(1, .second))
        guard let channel, let targetNode, let toleranceNode, let target, let tolerance, let timeout else { return nil }
        checkReferences(target, targetNode)
        checkReferences(tolerance, toleranceNode)
        if let unit = channelUnit(channel) {
            checkDimension(target, unit.dimension, targetNode)
            checkDimension(tolerance, unit.dimension, toleranceNode)
        }
        return WaitUntil(channel: channel, target: target, tolerance: tolerance, timeout: timeout, pollEvery: poll)
    }

    mutating func measure(_ body: MappingReader) -> Measure? {
        let channel = body.required("channel").flatMap { readableChannel($0) }
        let named = body.optional("as").flatMap { source.string($0, "as") }
        let count = body.optional("repeat").flatMap { source.integer($0, "repeat", in: 1...100_000) } ?? 1
        let every = body.optional("every").flatMap { duration($0, "every") }
        guard let channel else { return nil }
        let name = named ?? channel.channel
        measured[name] = channelUnit(channel) ?? .one
        return Measure(channel: channel, name: name, count: count, every: every)
    }

    func duration(_ node: Node, _ what: String) -> Expr? {
        guard let expr = source.expression(node, what) else { return nil }
        checkReferences(expr, node)
        checkDimension(expr, .time, node)
        return expr
    }

    // MARK: references and units

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

    func readableChannel(_ node: Node) -> ChannelRef? {
        guard let (ref, spec) = channel(node) else { return nil }
        if let spec, !spec.readable { source.error(node, "channel '\(ref)' cannot be read") }
        return ref
    }

    func channelSpec(_ ref: ChannelRef) -> ChannelSpec? {
        roles[ref.instrument].flatMap { drivers[$0.driver] }?.channel(ref.channel)
    }

    func channelUnit(_ ref: ChannelRef) -> LabUnit? { channelSpec(ref)?.unit }

    func checkReferences(_ expr: Expr, _ node: Node) {
        for name in expr.parameterNames.sorted() where parameters[name] == nil {
            source.error(node, "unknown parameter '$\(name)'", hint: suggestion(for: name, among: parameters.keys))
        }
        for name in expr.seriesNames.sorted() where measured[name] == nil {
            source.error(node, "'\(name)' is not measured before it is used",
                         hint: suggestion(for: name, among: measured.keys) ?? "add a measure step with 'as: \(name)'")
        }
    }

    func checkAssignment(_ value: Expr, to ref: ChannelRef, _ node: Node) {
        guard let spec = channelSpec(ref) else { return }
        if spec.type == .bool { return }
        checkDimension(value, spec.unit.dimension, node)
        // A constant is checked against the limits now; a parameter's whole range too.
        let env = ExprEnvironment(parameters: parameters.mapValues { Quantity($0.lower, $0.unit) })
        let envHigh = ExprEnvironment(parameters: parameters.mapValues { Quantity($0.upper, $0.unit) })
        guard let limits = spec.limits, value.seriesNames.isEmpty else { return }
        for e in [env, envHigh] {
            if let q = try? e.quantity(value), let v = try? q.converted(to: spec.unit).value, !limits.contains(v) {
                source.error(node, "\(value) can be \(v) \(spec.unit), outside the limits \(limits.lowerBound)…\(limits.upperBound) \(spec.unit) of '\(ref)'")
                return
            }
        }
    }

    func checkDimension(_ expr: Expr, _ expected: PhysicalDimension, _ node: Node) {
        guard let actual = dimension(of: expr) else { return }
        if actual != expected && !(actual == .dimensionless && isBareNumber(expr)) {
            source.error(node, "'\(expr)' is a \(actual), expected a \(expected)")
        }
    }

    private func isBareNumber(_ expr: Expr) -> Bool {
        if case .number(let q) = expr { return q.unit == .one }
        return false
    }

    /// The dimension an expression will have, where it can be known before running.
    func dimension(of expr: Expr) -> PhysicalDimension? {
        switch expr {
        case .number(let q): return q.dimension
        case .parameter(let name): return parameters[name]?.unit.dimension
        case .series(let name): return measured[name]?.dimension
        case .call(let f, let arg): return f == .count ? .dimensionless : dimension(of: arg)
        case .negate(let e): return dimension(of: e)
        case .binary(let op, let l, let r):
            guard let a = dimension(of: l), let b = dimension(of: r) else { return nil }
            switch op {
            case .add, .subtract: return a
            case .multiply: return a * b
            case .divide: return a / b
            default: return nil
            }
        }
    }
}
