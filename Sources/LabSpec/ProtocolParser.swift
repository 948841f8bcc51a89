import Foundation
public import LabCore

/// Compiles a protocol file into a `ProtocolDefinition`, reporting every problem with its place.
/// Given the driver specs of the instruments it will run on, it also checks channels, access,
/// units and constant limits, so that a file that validates does not fail on a typo at 3 a.m.
public enum ProtocolParser {
    public static let languageVersion = 1
    /// Steps written in all files of one protocol (includes count).
    public static let maximumSteps = 100_000
    /// Steps one run may execute once loops are unrolled: every loop is bounded, and so is their product.
    public static let maximumExpandedSteps = 1_000_000
    /// Iterations of one `repeat` and values of one `for_each`.
    public static let maximumIterations = 10_000
    /// Blocks inside blocks (if, loops, parallel, include).
    public static let maximumNesting = 32

    public static func load(path: String, drivers: [String: DriverSpec] = [:]) throws -> ProtocolDefinition {
        try parse(readUserFile(path), path: path, drivers: drivers)
    }

    public static func parse(_ text: String, path: String, drivers: [String: DriverSpec] = [:]) throws(ValidationError) -> ProtocolDefinition {
        let context = CompileContext(drivers: drivers)
        let source = context.open(path: path, text: text)
        return try compile(source.root(), source: source, context: context)
    }

    /// Compiles a file already read into nodes (nil: it could not be, and `source` says why).
    static func compile(_ root: Node?, source: YAMLSource, context: CompileContext) throws(ValidationError) -> ProtocolDefinition {
        var compiler = ProtocolCompiler(source: source, context: context)
        let definition = root.flatMap { compiler.compile($0) }
        let diagnostics = context.sources.flatMap(\.diagnostics)
        guard let definition, diagnostics.isEmpty else {
            throw ValidationError(diagnostics, sources: Dictionary(context.sources.map { ($0.path, $0.text) },
                                                                   uniquingKeysWith: { a, _ in a }))
        }
        return definition
    }
}

/// What all files of one protocol share while compiling: drivers, step numbering, includes.
final class CompileContext {
    let drivers: [String: DriverSpec]
    /// Whether `drivers` is a lab's, so that a driver not among them is an error; otherwise (drivers
    /// found near a protocol checked without a lab) its instruments' channels go unchecked.
    let complete: Bool
    var sources: [YAMLSource] = []
    var includeStack: [String] = []
    var stepCount = 0
    /// Series measured so far, with their units; shared, since an include measures into its parent.
    var measured: [String: LabUnit] = [:]
    /// Series measured from a channel whose driver is not known: their unit is not known either.
    var unknownUnits: Set<String> = []
    /// Series of array readings (spectra): stored, but not numbers an expression can use.
    var arraySeries: Set<String> = []
    /// Checkpoint names and where each is: a person reads "paused at checkpoint 'dosed'".
    var checkpoints: [String: SourceLocation] = [:]

    init(drivers: [String: DriverSpec], complete: Bool = true) { self.drivers = drivers; self.complete = complete }

    func open(path: String, text: String) -> YAMLSource {
        let source = YAMLSource(path: path, text: text)
        sources.append(source)
        return source
    }

    func nextStepID() -> Int {
        stepCount += 1
        return stepCount
    }
}

/// The type of a value as the checker sees it before anything runs.
enum ValueType: Equatable {
    case bare, quantity(PhysicalDimension), bool, text

    var dimension: PhysicalDimension? {
        switch self {
        case .bare: .dimensionless
        case .quantity(let d): d
        default: nil
        }
    }

    var name: String {
        switch self {
        case .bare: "number"
        case .quantity(let d): d == .dimensionless ? "number" : d.description
        case .bool: "condition"
        case .text: "text"
        }
    }
}

struct ProtocolCompiler {
    let source: YAMLSource
    let context: CompileContext
    var roles: [String: InstrumentRole] = [:]
    var parameters: [String: ParameterSpec] = [:]
    /// Loop variables in scope, innermost last, with their possible values where known.
    var variables: [(name: String, type: ValueType?, values: [Expr])] = []
    var includes: [SourceText] = []

    var drivers: [String: DriverSpec] { context.drivers }

    init(source: YAMLSource, context: CompileContext) {
        self.source = source; self.context = context
    }

    mutating func compile(_ root: Node, asInclude: Bool = false) -> ProtocolDefinition? {
        guard let top = source.mapping(root, "protocol") else { return nil }
        var version = ProtocolParser.languageVersion
        if let node = top.required("serendip", hint: "start the file with 'serendip: 1'"),
           let v = source.integer(node, "serendip", in: 1...1_000) {
            version = v
            if v != ProtocolParser.languageVersion {
                source.error(node, "language version \(v) is not supported", hint: "this Serendip reads 'serendip: 1'")
            }
        }
        let name = top.required("name").flatMap { source.string($0, "name") } ?? ""
        _ = top.optional("description").flatMap { source.string($0, "description") }
        if let node = top.required("instruments"), let map = source.mapping(node, "instruments") {
            for (role, keyNode, value) in map.pairs {
                guard let driver = source.string(value, "driver of '\(role)'") else { continue }
                if context.complete && !drivers.isEmpty && drivers[driver] == nil {
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
        let finallyNode = top.optional("finally")
        if asInclude, let finallyNode {
            source.error(finallyNode, "an included protocol cannot have 'finally'", hint: "put cleanup in the including protocol's finally")
        }
        let finallySteps = finallyNode.map { block($0, "finally", depth: 0) } ?? []
        var outputs: [OutputSpec] = []
        if let node = top.optional("outputs"), let map = source.mapping(node, "outputs") {
            for (name, keyNode, value) in map.pairs {
                guard let expr = source.expression(value, "output '\(name)'") else { continue }
                if let type = type(of: expr, value), type == .text {
                    source.error(value, "output '\(name)' must be a number or a condition")
                }
                outputs.append(OutputSpec(name: name, expression: expr, location: source.location(keyNode)))
            }
        }
        top.rejectUnknownKeys()
        let expanded = Self.expandedCount(steps) + Self.expandedCount(finallySteps)
        if expanded > Double(ProtocolParser.maximumExpandedSteps) {
            // Point at the step that contributes most: the loop to shorten.
            let worst = (steps + finallySteps).max { Self.expandedCount([$0]) < Self.expandedCount([$1]) }
            source.error(at: worst?.location ?? source.location(root),
                         "this expands to \(String(format: "%.3g", Self.expandedCount(worst.map { [$0] } ?? []))) steps; a run may execute at most \(ProtocolParser.maximumExpandedSteps)",
                         hint: "run fewer iterations, or split the work into several runs")
        }
        return ProtocolDefinition(
            name: name, languageVersion: version, instruments: roles.values.sorted { $0.role < $1.role },
            parameters: parameters.values.sorted { ($0.location.line, $0.name) < ($1.location.line, $1.name) },
            steps: steps, finally: finallySteps, outputs: outputs,
            source: SourceText(path: source.path, text: source.text, sha256: source.sha256), includes: includes)
    }

    /// How many steps a run executes at most, loops unrolled and both sides of every branch counted.
    static func expandedCount(_ steps: [Step]) -> Double {
        steps.reduce(0) { total, step in
            let inner: Double = switch step.action {
            case .loop(_, let values, let body, _): Double(values.count) * expandedCount(body)
            default: step.children.reduce(0) { $0 + expandedCount($1) }
            }
            return total + 1 + inner
        }
    }

    // MARK: parameters

    func parameter(_ name: String, _ keyNode: Node, _ node: Node) -> ParameterSpec? {
        guard let map = source.mapping(node, "parameter '\(name)'") else { return nil }
        let typeName = map.optional("type").flatMap { source.string($0, "type") } ?? "real"
        let description = map.optional("description").flatMap { source.string($0, "description") }
        var kind: ParameterSpec.Kind?
        switch typeName {
        case "real":
            let unit = map.optional("unit").flatMap { source.unit($0, "unit") } ?? .one
            let logScale = map.optional("log").flatMap { source.bool($0, "log") } ?? false
            if let rangeNode = map.required("range", hint: "give [low, high]"), let range = source.range(rangeNode, "range") {
                if logScale && range.lowerBound <= 0 {
                    source.error(rangeNode, "a log-scale range must be above zero")
                } else {
                    kind = .real(unit: unit, lower: range.lowerBound, upper: range.upperBound, logScale: logScale)
                }
            }
        case "integer":
            if let rangeNode = map.required("range", hint: "give [low, high]"), let range = source.range(rangeNode, "range") {
                if range.lowerBound.rounded() != range.lowerBound || range.upperBound.rounded() != range.upperBound
                    || abs(range.upperBound) > 1e15 || abs(range.lowerBound) > 1e15 {
                    source.error(rangeNode, "an integer range takes whole numbers")
                } else {
                    kind = .integer(lower: Int(range.lowerBound), upper: Int(range.upperBound))
                }
            }
        case "boolean":
            kind = .boolean
        case "choice":
            if let valuesNode = map.required("values", hint: "list the options, e.g. values: [Pd1, Pd2]") {
                if let items = valuesNode.sequence, !items.isEmpty {
                    let options = items.compactMap { source.string($0, "a choice") }
                    if Set(options).count != options.count { source.error(valuesNode, "the same choice is listed twice") }
                    kind = .choice(options)
                } else {
                    source.error(valuesNode, "values must be a non-empty list")
                }
            }
        default:
            source.error(map.optional("type"), "unknown parameter type '\(typeName)'",
                         hint: suggestion(for: typeName, among: ["real", "integer", "boolean", "choice"]) ?? "use real, integer, boolean or choice")
        }
        var defaultValue: ExprValue?
        if let node = map.optional("default"), let kind {
            defaultValue = constant(node, for: ParameterSpec(name: name, kind: kind, location: source.location(keyNode)))
        }
        map.rejectUnknownKeys()
        guard let kind else { return nil }
        return ParameterSpec(name: name, kind: kind, defaultValue: defaultValue, description: description,
                             location: source.location(keyNode))
    }

    /// A constant value for a parameter (a default, a sweep value), checked against its type and range.
    func constant(_ node: Node, for spec: ParameterSpec) -> ExprValue? {
        var value: ExprValue?
        switch spec.kind {
        case .boolean: value = source.bool(node, "\(spec.name)").map(ExprValue.bool)
        case .choice: value = source.string(node, "\(spec.name)").map(ExprValue.text)
        case .real, .integer:
            guard let expr = source.expression(node, "\(spec.name)") else { return nil }
            do { value = try ExprEnvironment().evaluate(expr) } catch {
                source.error(node, "\(spec.name) must be a constant: \(error.message)")
                return nil
            }
        }
        guard let value else { return nil }
        do { return try spec.checked(value) } catch {
            source.error(node, error.message)
            return nil
        }
    }

    // MARK: steps

    mutating func block(_ node: Node, _ what: String, depth: Int) -> [Step] {
        guard depth < ProtocolParser.maximumNesting else {
            source.error(node, "\(what) is nested more than \(ProtocolParser.maximumNesting) blocks deep", hint: "use sub-protocols")
            return []
        }
        guard let items = node.sequence else {
            source.error(node, "\(what) must be a list of steps (each line starting with '- ')")
            return []
        }
        var steps: [Step] = []
        for item in items {
            guard context.stepCount < ProtocolParser.maximumSteps else {
                source.error(item, "more than \(ProtocolParser.maximumSteps) steps", hint: "use loops or sub-protocols")
                break
            }
            if let step = step(item, depth: depth) { steps.append(step) }
        }
        return steps
    }

    static let stepKinds = ["set", "ramp", "wait_until", "hold", "measure", "log", "annotate", "checkpoint", "if",
                            "parallel", "repeat", "for_each", "include"]

    mutating func step(_ node: Node, depth: Int) -> Step? {
        let id = context.nextStepID()
        guard let map = source.mapping(node, "step") else { return nil }
        let present = map.keyNames.filter(Self.stepKinds.contains)
        guard present.count == 1, let kind = present.first else {
            if present.isEmpty, let first = map.pairs.first {
                source.error(first.keyNode, "unknown step '\(first.key)'", hint: suggestion(for: first.key, among: Self.stepKinds)
                             ?? "a step is one of: \(Self.stepKinds.joined(separator: ", "))")
            } else {
                source.error(node, "a step does exactly one thing; this one has \(present.isEmpty ? "none" : present.joined(separator: " and "))")
            }
            return nil
        }
        let body = map.optional(kind)!
        var action: Step.Action?
        switch kind {
        case "set": action = set(body, map)
        case "ramp": action = source.mapping(body, "ramp").flatMap { ramp($0) }.map(Step.Action.ramp)
        case "wait_until": action = source.mapping(body, "wait_until").flatMap { waitUntil($0) }.map(Step.Action.waitUntil)
        case "hold": action = duration(body, "hold").map(Step.Action.hold)
        case "measure": action = source.mapping(body, "measure").flatMap { measure($0) }.map(Step.Action.measure)
        case "log": action = source.string(body, "log").map(Step.Action.log)
        case "annotate": action = annotate(body)
        case "checkpoint": action = checkpoint(body)
        case "if": action = branch(body, map, depth: depth)
        case "parallel": action = parallel(body, depth: depth)
        case "repeat": action = repeatLoop(body, map, depth: depth)
        case "for_each": action = forEach(body, map, depth: depth)
        default: action = include(body, map, depth: depth)
        }
        var step = action.map { Step($0, at: source.location(node), id: id) }
        stepOptions(map, kind: kind, &step)
        map.rejectUnknownKeys()
        return step
    }

    /// A named point a paused run goes on from; one name per point, so that a transition naming it is clear.
    func checkpoint(_ body: Node) -> Step.Action? {
        guard let name = source.string(body, "checkpoint") else { return nil }
        let location = source.location(body)
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty else {
            source.error(body, "a checkpoint needs a name", hint: "e.g. 'checkpoint: heated'")
            return nil
        }
        // The same step met again (a sub-protocol included twice) is the same checkpoint.
        if let other = context.checkpoints[name], other != location {
            source.error(body, "checkpoint '\(name)' is already at \(other)", hint: "give each checkpoint its own name")
        }
        context.checkpoints[name] = location
        return .checkpoint(name)
    }

    /// The keys any step may have: `timeout`, and `repeatable: false` with `on_pause` for a step
    /// that rewinding to a checkpoint must not repeat.
    func stepOptions(_ map: MappingReader, kind: String, _ step: inout Step?) {
        let timeoutNode = map.optional("timeout")
        let timeout = timeoutNode.flatMap { duration($0, "timeout") }
        if let timeout, let seconds = try? ExprEnvironment().quantity(timeout).seconds, !(seconds > 0) {
            source.error(timeoutNode, "a step's timeout must be longer than zero", hint: "e.g. 'timeout: 30 min'")
        }
        let repeatable = map.optional("repeatable").flatMap { source.bool($0, "repeatable") } ?? true
        if kind == "checkpoint", !repeatable {
            source.error(map.optional("repeatable"), "a checkpoint is where a paused run goes on from; it does nothing that could be repeated",
                         hint: "mark the step before it 'repeatable: false'")
        }
        var abortsOnPause = false
        if let node = map.optional("on_pause"), let text = source.string(node, "on_pause") {
            switch text {
            case "defer": break
            case "abort": abortsOnPause = true
            default: source.error(node, "unknown on_pause '\(text)'", hint: "use defer (pause at the next checkpoint) or abort")
            }
            if repeatable {
                source.error(node, "on_pause applies to a step marked 'repeatable: false'",
                             hint: "add 'repeatable: false' if repeating this \(kind) would do harm, or remove on_pause")
            }
        }
        step?.timeout = timeout
        step?.repeatable = repeatable
        step?.abortsOnPause = abortsOnPause
    }

    func set(_ body: Node, _ map: MappingReader) -> Step.Action? {
        let target = writableChannel(body)
        guard let valueNode = map.required("to", hint: "say what to set it to, e.g. 'to: 25 degC'"),
              let value = source.expression(valueNode, "to"), let target else { return nil }
        if let spec = channelSpec(target), let maxRate = spec.maxRate {
            // A jump is as fast as a write goes: only a ramp keeps to the rate.
            source.error(body, "'\(target)' has a max_rate of \(Self.number(maxRate * 60)) \(spec.unit)/min, so it is not set at once",
                         hint: "use ramp: { channel: \(target), to: ..., rate: \(Self.number(maxRate * 60)) \(spec.unit)/min }")
        }
        checkAssignment(value, to: target, valueNode)
        return .set(target, value)
    }

    func ramp(_ body: MappingReader) -> Ramp? {
        let channel = body.required("channel").flatMap { writableChannel($0) }
        let targetNode = body.required("to"), rateNode = body.required("rate", hint: "e.g. 'rate: 2 degC/min'")
        let target = targetNode.flatMap { source.expression($0, "to") }
        let rate = rateNode.flatMap { source.expression($0, "rate") }
        let every = body.optional("every").flatMap { duration($0, "every") } ?? .number(Quantity(10, .second))
        body.rejectUnknownKeys()
        guard let channel, let target, let rate, let targetNode, let rateNode else { return nil }
        checkAssignment(target, to: channel, targetNode)
        if let spec = channelSpec(channel) {
            if spec.type == .bool { source.error(body.node, "cannot ramp the on/off channel '\(channel)'") }
            checkType(rate, .quantity(spec.unit.dimension / .time), rateNode, example: "2 \(spec.unit.symbol)/min")
            if let maxRate = spec.maxRate { checkRate(rate, maxRate, spec.unit, channel, rateNode) }
        }
        return Ramp(channel: channel, target: target, rate: rate, every: every)
    }

    func waitUntil(_ body: MappingReader) -> WaitUntil? {
        // Read every key before giving up on any, so one mistake does not hide the others.
        let channel = body.required("channel").flatMap { readableChannel($0) }
        let targetNode = body.required("of"), toleranceNode = body.required("within")
        let target = targetNode.flatMap { source.expression($0, "of") }
        let tolerance = toleranceNode.flatMap { source.expression($0, "within") }
        let timeout = body.required("timeout", hint: "every wait needs a timeout, e.g. 'timeout: 10 min'")
            .flatMap { duration($0, "timeout") }
        let poll = body.optional("poll").flatMap { duration($0, "poll") } ?? .number(Quantity(1, .second))
        var onTimeout = WaitUntil.OnTimeout.fail
        if let node = body.optional("on_timeout"), let text = source.string(node, "on_timeout") {
            if let value = WaitUntil.OnTimeout(rawValue: text) { onTimeout = value }
            else { source.error(node, "unknown on_timeout '\(text)'", hint: "use fail or continue") }
        }
        body.rejectUnknownKeys()
        guard let channel, let targetNode, let toleranceNode, let target, let tolerance, let timeout else { return nil }
        if let unit = channelSpec(channel)?.unit {
            checkType(target, .quantity(unit.dimension), targetNode, example: "25 \(unit.symbol)")
            checkType(tolerance, .quantity(unit.dimension), toleranceNode, example: "0.5 \(unit.symbol)")
        }
        return WaitUntil(channel: channel, target: target, tolerance: tolerance, timeout: timeout, pollEvery: poll,
                         onTimeout: onTimeout)
    }

    func measure(_ body: MappingReader) -> Measure? {
        let channel = body.required("channel").flatMap { readableChannel($0, arrays: true) }
        let named = body.optional("as").flatMap { source.string($0, "as") }
        let repeatNode = body.optional("repeat")
        let count = repeatNode.flatMap { source.integer($0, "repeat", in: 1...ProtocolParser.maximumIterations) } ?? 1
        let every = body.optional("every").flatMap { duration($0, "every") }
        let untilNode = body.optional("until")
        guard let channel else { body.rejectUnknownKeys(); return nil }
        let name = named ?? channel.channel
        // The series exists from here on, so `until` can read it.
        if channelSpec(channel)?.array != nil {
            context.arraySeries.insert(name)
        } else if let unit = channelSpec(channel)?.unit {
            context.measured[name] = unit
            context.unknownUnits.remove(name)
        } else if context.measured[name] == nil {
            context.measured[name] = .one
            context.unknownUnits.insert(name)
        }
        var until: Expr?
        if let untilNode, channelSpec(channel)?.array != nil {
            source.error(untilNode, "'until' reads numbers, and '\(channel)' gives arrays", hint: "measure a fixed number of arrays with 'repeat'")
        } else if let untilNode, let condition = source.expression(untilNode, "until") {
            if repeatNode == nil {
                source.error(untilNode, "'until' needs 'repeat' as the most readings to take", hint: "every loop is bounded: add e.g. 'repeat: 100'")
            }
            checkType(condition, .bool, untilNode)
            until = condition
        }
        body.rejectUnknownKeys()
        return Measure(channel: channel, name: name, count: count, every: every, until: until)
    }

    func annotate(_ body: Node) -> Step.Action? {
        guard let map = source.mapping(body, "annotate") else { return nil }
        var notes: [String: String] = [:]
        for (key, _, value) in map.pairs { notes[key] = source.string(value, "annotation '\(key)'") }
        return .annotate(notes)
    }

    mutating func branch(_ body: Node, _ map: MappingReader, depth: Int) -> Step.Action? {
        let condition = source.expression(body, "if")
        if let condition { checkType(condition, .bool, body) }
        let thenSteps = map.required("then").map { block($0, "then", depth: depth + 1) } ?? []
        let elseSteps = map.optional("else").map { block($0, "else", depth: depth + 1) } ?? []
        return condition.map { .branch(condition: $0, then: thenSteps, otherwise: elseSteps) }
    }

    mutating func parallel(_ body: Node, depth: Int) -> Step.Action? {
        guard let items = body.sequence, items.count >= 2 else {
            source.error(body, "parallel takes a list of at least two branches, each a list of steps")
            return nil
        }
        let branches = items.map { block($0, "a parallel branch", depth: depth + 1) }
        // A run resumes from a checkpoint as one sequence of steps; branches running at once have no such point.
        for (index, branch) in branches.enumerated() {
            for step in Self.checkpoints(in: branch) {
                source.error(items[index], "a checkpoint inside a parallel branch (\(step.location)) cannot be resumed from",
                             hint: "put the checkpoint before or after the parallel block")
            }
        }
        // Branches run at the same time, so they must not share an instrument.
        var owner: [String: Int] = [:]
        for (index, branch) in branches.enumerated() {
            for role in Self.instruments(in: branch).sorted() {
                if let other = owner[role], other != index {
                    source.error(items[index], "parallel branches \(other + 1) and \(index + 1) both use '\(role)'",
                                 hint: "an instrument belongs to one branch at a time")
                }
                owner[role] = index
            }
        }
        return .parallel(branches)
    }

    static func checkpoints(in steps: [Step]) -> [Step] {
        steps.flatMap { step -> [Step] in
            if case .checkpoint = step.action { return [step] }
            return step.children.flatMap { checkpoints(in: $0) }
        }
    }

    static func instruments(in steps: [Step]) -> Set<String> {
        steps.reduce(into: []) { roles, step in
            switch step.action {
            case .set(let ref, _): roles.insert(ref.instrument)
            case .ramp(let r): roles.insert(r.channel.instrument)
            case .waitUntil(let w): roles.insert(w.channel.instrument)
            case .measure(let m): roles.insert(m.channel.instrument)
            default: break
            }
            for child in step.children { roles.formUnion(instruments(in: child)) }
        }
    }

    mutating func repeatLoop(_ body: Node, _ map: MappingReader, depth: Int) -> Step.Action? {
        let count = source.integer(body, "repeat", in: 1...ProtocolParser.maximumIterations)
        let variable = map.optional("as").flatMap { source.string($0, "as") }
        let values = (1...(count ?? 1)).map { Expr.number(Quantity(Double($0))) }
        let steps = loopBody(map, variable: variable, type: .bare, values: values, depth: depth)
        let until = loopCondition(map)
        return count.map { _ in .loop(variable: variable, values: values, body: steps, until: until) }
    }

    mutating func forEach(_ body: Node, _ map: MappingReader, depth: Int) -> Step.Action? {
        guard let items = body.sequence, !items.isEmpty else {
            source.error(body, "for_each takes a non-empty list of values, e.g. [20 degC, 40 degC]")
            return nil
        }
        guard items.count <= ProtocolParser.maximumIterations else {
            source.error(body, "for_each lists \(items.count) values, more than \(ProtocolParser.maximumIterations)")
            return nil
        }
        let variable = map.required("as", hint: "name the value, e.g. 'as: t', and use it as $t").flatMap { source.string($0, "as") }
        // A quoted YAML value is text (a sample's name); anything else is an expression (20 degC, $t).
        let values = items.compactMap { item -> Expr? in
            if let scalar = item.scalar, scalar.style == .singleQuoted || scalar.style == .doubleQuoted {
                return .text(scalar.string)
            }
            return source.expression(item, "a for_each value")
        }
        let types = zip(values, items).map { type(of: $0.0, $0.1) }
        if let first = types.first ?? nil, types.contains(where: { $0 != nil && !Self.compatible($0!, first) }) {
            source.error(body, "for_each values must all be of one kind (all temperatures, all volumes, …)")
        }
        let steps = loopBody(map, variable: variable, type: types.first ?? nil, values: values, depth: depth)
        let until = loopCondition(map)
        guard let variable, values.count == items.count else { return nil }
        return .loop(variable: variable, values: values, body: steps, until: until)
    }

    mutating func loopBody(_ map: MappingReader, variable: String?, type: ValueType?, values: [Expr], depth: Int) -> [Step] {
        if let variable {
            if parameters[variable] != nil || variables.contains(where: { $0.name == variable }) {
                source.error(map.optional("as"), "'\(variable)' is already a parameter or loop variable here")
            }
            variables.append((variable, type, values))
        }
        defer { if variable != nil { variables.removeLast() } }
        return map.required("steps", hint: "give the steps to repeat under 'steps:'").map { block($0, "steps", depth: depth + 1) } ?? []
    }

    /// `until:` of a loop, read after its body so that it can use the series the body measures.
    func loopCondition(_ map: MappingReader) -> Expr? {
        guard let node = map.optional("until"), let condition = source.expression(node, "until") else { return nil }
        checkType(condition, .bool, node)
        return condition
    }

    mutating func include(_ body: Node, _ map: MappingReader, depth: Int) -> Step.Action? {
        guard let relative = source.string(body, "include") else { return nil }
        let path = URL(fileURLWithPath: relative, relativeTo: URL(fileURLWithPath: source.path).deletingLastPathComponent())
            .standardizedFileURL.path
        let bindingsNode = map.optional("with")
        var bindings: [String: (Expr, Node)] = [:]
        if let bindingsNode, let withMap = source.mapping(bindingsNode, "with") {
            for (name, _, value) in withMap.pairs {
                if let expr = source.expression(value, "\(name)") { bindings[name] = (expr, value) }
            }
        }
        guard depth < ProtocolParser.maximumNesting else {
            source.error(body, "includes are nested more than \(ProtocolParser.maximumNesting) deep")
            return nil
        }
        guard !context.includeStack.contains(path) && path != URL(fileURLWithPath: source.path).standardizedFileURL.path else {
            source.error(body, "'\(relative)' includes itself, directly or through other files")
            return nil
        }
        let text: String
        do { text = try readUserFile(path) } catch {
            source.error(body, "cannot include '\(relative)': \(error)")
            return nil
        }
        context.includeStack.append(path)
        defer { context.includeStack.removeLast() }
        let child = context.open(path: path, text: text)
        var compiler = ProtocolCompiler(source: child, context: context)
        guard let root = child.root(), let included = compiler.compile(root, asInclude: true) else { return nil }
        includes.append(included.source)
        includes += included.includes
        // The sub-protocol's roles must be this protocol's, with the same drivers.
        for role in included.instruments {
            guard let mine = roles[role.role] else {
                source.error(body, "'\(relative)' uses instrument '\(role.role)', which this protocol does not declare")
                continue
            }
            if mine.driver != role.driver {
                source.error(body, "'\(relative)' needs '\(role.role)' to be a \(role.driver), here it is a \(mine.driver)")
            }
        }
        var resolved: [String: Expr] = [:]
        for spec in included.parameters {
            if let (expr, node) = bindings.removeValue(forKey: spec.name) {
                checkParameterBinding(expr, spec, node)
                resolved[spec.name] = expr
            } else if spec.defaultValue == nil {
                source.error(bindingsNode ?? body, "'\(relative)' needs a value for '\(spec.name)'", hint: "add it under 'with:'")
            }
        }
        for (name, (_, node)) in bindings {
            source.error(node, "'\(relative)' has no parameter '\(name)'",
                         hint: suggestion(for: name, among: included.parameters.map(\.name)))
        }
        let defaults = included.parameters.compactMap { spec in spec.defaultValue.map { (spec.name, $0) } }
        for (name, value) in defaults where resolved[name] == nil { resolved[name] = Self.literal(value) }
        return .scope(name: included.name, bindings: resolved, body: included.steps)
    }

    static func literal(_ value: ExprValue) -> Expr {
        switch value {
        case .quantity(let q): .number(q)
        case .bool(let b): .boolean(b)
        case .text(let s): .text(s)
        }
    }
}
