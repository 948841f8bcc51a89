import Foundation
import LabCore

/// Reads a campaign file and checks it against its protocol: every parameter it names exists, every
/// value it gives is one the parameter accepts, every objective is an output, every constraint is
/// linear and can be met. Reports every problem, each where it is written.
struct CampaignReader {
    let source: YAMLSource
    let directory: URL
    /// Why the lab or the protocol the campaign names did not validate.
    var dependencyFailure: ValidationError?
    /// A daemon's lab, which replaces the file's `lab:`.
    var givenLab: LabConfig?
    /// The protocol's text as a client sent it, instead of reading the file.
    var protocolText: String?

    init(source: YAMLSource, directory: URL) {
        self.source = source
        self.directory = directory
    }

    mutating func read(_ root: Node) -> CampaignSpec? {
        guard let top = source.mapping(root, "campaign") else { return nil }
        if let node = top.required("serendip", hint: "start the file with 'serendip: 1'"),
           let version = source.integer(node, "serendip", in: 1...1_000), version != ProtocolParser.languageVersion {
            source.error(node, "language version \(version) is not supported", hint: "this Serendip reads 'serendip: 1'")
        }
        let name = top.required("campaign").flatMap { source.string($0, "campaign") }
        let protocolNode = top.required("protocol")
        let labNode = givenLab == nil ? top.required("lab") : top.optional("lab")
        let protocolPath = protocolNode.flatMap { source.string($0, "protocol") }.map(resolve)
        let labPath = givenLab?.source.path ?? labNode.flatMap { source.string($0, "lab") }.map(resolve)
        let seed = top.optional("seed").flatMap { source.integer($0, "seed", in: 0...Int.max) } ?? 1
        var lab = givenLab, definition: ProtocolDefinition?
        do {
            if lab == nil, let labPath { lab = try LabConfig.load(path: labPath) }
            if let protocolPath, let lab {
                definition = try protocolText.map { try ProtocolParser.parse($0, path: protocolPath, drivers: lab.drivers) }
                    ?? ProtocolParser.load(path: protocolPath, drivers: lab.drivers)
            }
        } catch let failure as ValidationError {
            dependencyFailure = failure
        } catch {
            source.error(definition == nil && lab != nil ? protocolNode : labNode ?? protocolNode, "\(error)")
        }
        // Every key is looked up before giving up on a protocol that did not validate, so that only
        // the protocol's own errors are reported, not the campaign's valid keys as unknown ones.
        let sweepNode = top.optional("sweep"), optimizeNode = top.optional("optimize"), fixedNode = top.optional("fixed")
        defer { top.rejectUnknownKeys() }
        guard let definition else { return nil }
        if let lab, let protocolNode { checkRoles(of: definition, in: lab, at: protocolNode) }

        let fixed = fixedNode.map { values($0, "fixed", definition) } ?? [:]
        var plan: CampaignSpec.Plan?
        switch (sweepNode, optimizeNode) {
        case (let node?, nil): plan = sweep(node, definition, fixed: fixed).map(CampaignSpec.Plan.sweep)
        case (nil, let node?): plan = optimization(node, at: top.keyNode("optimize"), definition, fixed: fixed).map(CampaignSpec.Plan.optimize)
        case (_?, _?): source.error(top.keyNode("optimize"), "a campaign has either 'sweep' or 'optimize', not both")
        case (nil, nil): source.error(root, "campaign has neither 'sweep' nor 'optimize'",
                                      hint: "add 'sweep:' to list the runs, or 'optimize:' to let the planner choose")
        }
        guard let name, let protocolPath, let labPath, let lab, let plan else { return nil }
        return CampaignSpec(name: name, protocolPath: protocolPath, labPath: labPath, lab: lab, definition: definition,
                            seed: UInt64(seed), fixed: fixed, plan: plan,
                            source: SourceText(path: source.path, text: source.text, sha256: source.sha256))
    }

    /// The lab must have, for each driver type the protocol's roles name, as many instruments of
    /// that type as the protocol needs (a role is served by any instrument of its type); the run
    /// would otherwise fail only as it starts.
    private func checkRoles(of definition: ProtocolDefinition, in lab: LabConfig, at node: Node) {
        let available = "its instruments are " + lab.instruments.values.sorted { $0.name < $1.name }
            .map { "\($0.name) (\($0.driver.name))" }.joined(separator: ", ")
        var needed: [String: [InstrumentRole]] = [:]
        for role in definition.instruments { needed[role.driver, default: []].append(role) }
        for (driver, roles) in needed.sorted(by: { $0.key < $1.key }) {
            let have = lab.instruments.values.filter { $0.driver.name == driver }.count
            guard have < roles.count else { continue }
            let places = roles.map { "'\($0.role)' (\(URL(fileURLWithPath: $0.location.file).lastPathComponent):\($0.location.line))" }
                .joined(separator: ", ")
            let similar = roles.compactMap { suggestion(for: $0.role, among: lab.instruments.keys) }.first.map { " (\($0))" } ?? ""
            source.error(node, "\(definition.name) needs \(roles.count) \(driver) instrument(s), for \(places); the lab '\(lab.name)' has \(have)",
                         hint: available + similar)
        }
    }

    private func resolve(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: directory).standardizedFileURL.path
    }

    // MARK: parameters and values

    private func parameter(_ name: String, at node: Node, _ definition: ProtocolDefinition) -> ParameterSpec? {
        guard let spec = definition.parameter(named: name) else {
            source.error(node, "\(definition.name) has no parameter '\(name)'",
                         hint: suggestion(for: name, among: definition.parameters.map(\.name)))
            return nil
        }
        return spec
    }

    /// A value for a parameter, in its unit, or nil after reporting why it is not one.
    private func value(_ node: Node, for spec: ParameterSpec) -> ExprValue? {
        let what = "$\(spec.name)"
        var value: ExprValue?
        switch spec.kind {
        case .choice: value = source.string(node, what).map(ExprValue.text)
        case .boolean: value = source.bool(node, what).map(ExprValue.bool)
        case .real, .integer:
            guard let expr = source.expression(node, what) else { return nil }
            do throws(LabError) { value = try ExprEnvironment().evaluate(expr) } catch {
                source.error(node, error.message)
                return nil
            }
        }
        guard let value else { return nil }
        do throws(LabError) { return try spec.checked(value) } catch {
            source.error(node, error.message)
            return nil
        }
    }

    /// `name: value` pairs, each checked against its parameter.
    private func values(_ node: Node, _ what: String, _ definition: ProtocolDefinition) -> [String: ExprValue] {
        guard let map = source.mapping(node, what) else { return [:] }
        var values: [String: ExprValue] = [:]
        for (name, keyNode, valueNode) in map.pairs {
            if let spec = parameter(name, at: keyNode, definition), let value = value(valueNode, for: spec) {
                values[name] = value
            }
        }
        return values
    }

    /// Every parameter that is neither chosen nor fixed must have a default.
    private func requireDefaults(except chosen: Set<String>, fixed: [String: ExprValue], _ definition: ProtocolDefinition,
                                 at node: Node?, verb: String, remedy: String) {
        for spec in definition.parameters where spec.defaultValue == nil && !chosen.contains(spec.name) && fixed[spec.name] == nil {
            source.error(node, "$\(spec.name) has no default and is not \(verb) or fixed", hint: "\(remedy) or give it under 'fixed:'")
        }
    }

    // MARK: sweep

    private func sweep(_ node: Node, _ definition: ProtocolDefinition, fixed: [String: ExprValue]) -> Sweep? {
        guard let map = source.mapping(node, "sweep") else { return nil }
        defer { map.rejectUnknownKeys() }
        var design = Sweep.Design.grid
        if let designNode = map.optional("design"), let text = source.string(designNode, "design") {
            switch text {
            case "grid": break
            case "latin_hypercube":
                let points = map.required("points", hint: "say how many points the hypercube has")
                    .flatMap { source.integer($0, "points", in: 1...CampaignSpec.maximumRuns) }
                design = .latinHypercube(points: points ?? 1)
            default:
                source.error(designNode, "unknown design '\(text)'", hint: "use grid or latin_hypercube")
            }
        }
        let replicates = map.optional("replicates").flatMap { source.integer($0, "replicates", in: 1...1_000) } ?? 1
        guard let varyValue = map.required("vary", hint: "list the parameters the sweep varies and their values"),
              let vary = source.mapping(varyValue, "vary") else { return nil }
        let varyNode = map.keyNode("vary")
        var axes: [Sweep.Axis] = []
        var runs = Double(replicates)
        for (name, keyNode, valueNode) in vary.pairs {
            guard let spec = parameter(name, at: keyNode, definition) else { continue }
            if fixed[name] != nil { source.error(keyNode, "$\(name) is both fixed and varied; keep one") }
            if case .latinHypercube = design {
                if let axis = range(valueNode, spec) { axes.append(axis) }
            } else if let values = gridValues(valueNode, spec) {
                axes.append(.values(name, values))
                runs *= Double(values.count)
            }
        }
        if case .latinHypercube(let points) = design { runs *= Double(points) }
        guard runs <= Double(CampaignSpec.maximumRuns) else {
            source.error(varyNode, "this sweep expands to \(runs.formatted(.number.notation(.scientific))) runs; a campaign holds at most \(CampaignSpec.maximumRuns)",
                         hint: "sweep fewer values, use design: latin_hypercube, or split the campaign")
            return nil
        }
        requireDefaults(except: Set(axes.map(\.name)), fixed: fixed, definition, at: varyNode, verb: "swept", remedy: "vary it")
        return Sweep(design: design, axes: axes, replicates: replicates)
    }

    /// A list of values, or `{ from, to, points }` spaced evenly.
    private func gridValues(_ node: Node, _ spec: ParameterSpec) -> [ExprValue]? {
        if let items = node.sequence {
            guard !items.isEmpty else {
                source.error(node, "$\(spec.name) needs at least one value")
                return nil
            }
            let values = items.compactMap { value($0, for: spec) }
            return values.count == items.count ? values : nil
        }
        guard let map = source.mapping(node, "values of $\(spec.name)") else { return nil }
        defer { map.rejectUnknownKeys() }
        let from = map.required("from").flatMap { value($0, for: spec) }
        let to = map.required("to").flatMap { value($0, for: spec) }
        let count = map.required("points").flatMap { source.integer($0, "points", in: 2...10_000) }
        guard case .quantity(let low)? = from, case .quantity(let high)? = to, let count else { return nil }
        var values: [ExprValue] = []
        for i in 0..<count {
            let x = low.value + (high.value - low.value) * Double(i) / Double(count - 1)
            do throws(LabError) { values.append(try spec.checked(.quantity(Quantity(x, low.unit)))) } catch {
                source.error(node, error.message, hint: "choose from, to and points so that every value is allowed")
                return nil
            }
        }
        return values
    }

    /// `{ from, to }` for a Latin hypercube.
    private func range(_ node: Node, _ spec: ParameterSpec) -> Sweep.Axis? {
        guard let map = source.mapping(node, "range of $\(spec.name)") else { return nil }
        defer { map.rejectUnknownKeys() }
        let from = map.required("from").flatMap { value($0, for: spec) }
        let to = map.required("to").flatMap { value($0, for: spec) }
        guard case .quantity(let low)? = from, case .quantity(let high)? = to else {
            if from != nil && to != nil { source.error(node, "a Latin hypercube spreads numbers; $\(spec.name) is not one") }
            return nil
        }
        var integer = false
        if case .integer = spec.kind { integer = true }
        return .range(spec.name, low: low.value, high: high.value, unit: low.unit, integer: integer)
    }

    // MARK: optimize

    private func optimization(_ node: Node, at key: Node?, _ definition: ProtocolDefinition, fixed: [String: ExprValue]) -> Optimization? {
        guard let map = source.mapping(node, "optimize") else { return nil }
        defer { map.rejectUnknownKeys() }
        let outputs = Set(definition.outputs.map(\.name))
        var objectives: [Optimization.Objective] = []
        for (key, maximize) in [("maximize", true), ("minimize", false)] {
            guard let valueNode = map.optional(key) else { continue }
            for item in valueNode.sequence ?? [valueNode] {
                guard let output = source.string(item, key) else { continue }
                if objectives.contains(where: { $0.output == output }) {
                    source.error(item, "'\(output)' is already an objective")
                } else if outputs.contains(output) {
                    objectives.append(.init(output: output, maximize: maximize))
                } else {
                    source.error(item, "\(definition.name) has no output '\(output)'", hint: suggestion(for: output, among: outputs))
                }
            }
        }
        if objectives.isEmpty && map.optional("maximize") == nil && map.optional("minimize") == nil {
            source.error(key, "optimize needs an objective", hint: "add 'maximize: OUTPUT' or 'minimize: OUTPUT'")
        }
        let budget = map.required("budget", hint: "say how many runs the planner may use")
            .flatMap { source.integer($0, "budget", in: 1...CampaignSpec.maximumRuns) } ?? 1
        let design = choice(map, "initial_design", default: Optimization.InitialDesign.latin_hypercube)
        var initialPoints = min(5, budget)
        if let pointsNode = map.optional("initial_points"), let points = source.integer(pointsNode, "initial_points", in: 1...CampaignSpec.maximumRuns) {
            if points > budget { source.error(pointsNode, "initial_points (\(points)) is more than the budget (\(budget))") }
            initialPoints = points
        }
        let batchSize = map.optional("batch_size").flatMap { source.integer($0, "batch_size", in: 1...100) }
        let onFailure = choice(map, "on_failure", default: Optimization.OnFailure.avoid)
        let transform = choice(map, "transform", default: Optimization.Transform.auto)
        let expectBest = choice(map, "expect_best", default: Optimization.ExpectBest.inside)

        var ucbBeta: Double?
        if let node = map.optional("acquisition"), let text = source.string(node, "acquisition") {
            switch text {
            case "log_ei": break
            case "ucb": ucbBeta = 4
            default: source.error(node, "unknown acquisition '\(text)'", hint: "use log_ei or ucb")
            }
        }
        if let node = map.optional("ucb_beta"), let beta = source.number(node, "ucb_beta") {
            if ucbBeta == nil { source.error(node, "ucb_beta needs 'acquisition: ucb'") }
            if beta > 0 { ucbBeta = beta } else { source.error(node, "ucb_beta must be positive") }
        }
        var noise = Optimization.Noise.inferred
        if let noiseNode = map.optional("noise"), let text = source.string(noiseNode, "noise") {
            switch text {
            case "inferred": break
            case "noise_free": noise = .noiseFree
            case _ where outputs.contains(text):
                noise = .measured(output: text)
                if objectives.count > 1 { source.error(noiseNode, "a measured noise needs a single objective") }
            default:
                source.error(noiseNode, "unknown noise '\(text)'",
                             hint: "use inferred, noise_free, or the output that gives each result's standard deviation")
            }
        }
        var chosen = definition.parameters.map(\.name).filter { fixed[$0] == nil }
        if let listNode = map.optional("parameters") {
            chosen = []
            for item in listNode.sequence ?? [listNode] {
                guard let name = source.string(item, "parameters"), parameter(name, at: item, definition) != nil else { continue }
                if fixed[name] != nil { source.error(item, "$\(name) is both fixed and optimised; keep one") }
                chosen.append(name)
            }
        }
        if chosen.isEmpty { source.error(key, "nothing to optimise: every parameter is fixed") }
        requireDefaults(except: Set(chosen), fixed: fixed, definition, at: key, verb: "optimised", remedy: "list it under 'parameters'")

        var parameterConstraints: [LinearConstraint] = []
        var outcomeConstraints: [Expr] = []
        for item in map.optional("constraints").map({ $0.sequence ?? [$0] }) ?? [] {
            guard let expr = source.expression(item, "constraint") else { continue }
            if !expr.seriesNames.isEmpty {
                if let unknown = expr.seriesNames.subtracting(outputs).sorted().first {
                    source.error(item, "\(definition.name) has no output '\(unknown)'", hint: suggestion(for: unknown, among: outputs))
                } else if !expr.parameterNames.isEmpty {
                    source.error(item, "a constraint is on the parameters or on the outputs, not both")
                } else {
                    outcomeConstraints.append(expr)
                }
            } else if let constraint = linearConstraint(expr, item, definition, chosen: Set(chosen)) {
                parameterConstraints.append(constraint)
            }
        }

        var stopAfter: Int?, target: Double?
        if let stopNode = map.optional("stop"), let stop = source.mapping(stopNode, "stop") {
            stopAfter = stop.optional("no_improvement").flatMap { source.integer($0, "no_improvement", in: 1...CampaignSpec.maximumRuns) }
            if let targetNode = stop.optional("target") {
                target = source.number(targetNode, "target")
                if objectives.count > 1 { source.error(stop.keyNode("target"), "a target needs a single objective") }
            }
            stop.rejectUnknownKeys()
        }
        return Optimization(ucbBeta: ucbBeta, objectives: objectives, noise: noise, budget: budget, initialDesign: design, initialPoints: initialPoints,
                            batchSize: batchSize, parameters: chosen, parameterConstraints: parameterConstraints,
                            outcomeConstraints: outcomeConstraints, onFailure: onFailure, transform: transform, expectBest: expectBest,
                            stopAfterNoImprovement: stopAfter, stopAtTarget: target)
    }

    /// The case an optional key names, or `value` without the key; an unknown name is an error listing the cases.
    private func choice<Choice: RawRepresentable & CaseIterable>(_ map: MappingReader, _ key: String, default value: Choice) -> Choice
    where Choice.RawValue == String {
        guard let node = map.optional(key) else { return value }
        let choices = "use \(Choice.allCases.map(\.rawValue).joined(separator: ", "))"
        guard let text = node.scalar?.string else {
            source.error(node, "\(key) must be a single value", hint: choices)
            return value
        }
        guard let chosen = Choice(rawValue: text) else {
            source.error(node, "unknown \(key) '\(text)'", hint: choices)
            return value
        }
        return chosen
    }

    /// `lhs (<=|>=|==) rhs` over numeric parameters, as coefficients found by evaluating it: exact for
    /// linear constraints, and a non-linear one is caught because it does not fit at a third point.
    private func linearConstraint(_ expr: Expr, _ node: Node, _ definition: ProtocolDefinition,
                                  chosen: Set<String>) -> LinearConstraint? {
        let relation: LinearConstraint.Relation
        guard case .binary(let op, let lhs, let rhs) = expr else {
            source.error(node, "a constraint compares two sides", hint: "e.g. $water + $ethanol <= 0.9")
            return nil
        }
        switch op {
        case .less, .lessEqual: relation = .atMost
        case .greater, .greaterEqual: relation = .atLeast
        case .equal: relation = .equal
        default:
            source.error(node, "a constraint compares two sides with <=, >= or ==")
            return nil
        }
        var names: [String] = [], lows: [Double] = [], highs: [Double] = [], units: [LabUnit] = []
        for name in expr.parameterNames.sorted() {
            guard let spec = parameter(name, at: node, definition) else { return nil }
            guard chosen.contains(name) else {
                source.error(node, "$\(name) is not chosen by the planner, so it cannot be constrained")
                return nil
            }
            switch spec.kind {
            case .real(_, _, _, true):
                source.error(node, "$\(name) is on a log scale, so it cannot be in a linear constraint")
                return nil
            case .real(let unit, let lower, let upper, _): (lows, highs, units) = (lows + [lower], highs + [upper], units + [unit])
            case .integer(let lower, let upper): (lows, highs, units) = (lows + [Double(lower)], highs + [Double(upper)], units + [.one])
            default:
                source.error(node, "$\(name) is not a number, so it cannot be in a linear constraint")
                return nil
            }
            names.append(name)
        }
        let difference = Expr.binary(.subtract, lhs, rhs)
        func g(_ x: [Double]) throws(LabError) -> Double {
            let values = Dictionary(uniqueKeysWithValues: names.indices.map { (names[$0], Quantity(x[$0], units[$0])) })
            return try ExprEnvironment(quantities: values).quantity(difference).value
        }
        do throws(LabError) {
            let base = try g(lows)
            var coefficients: [Double] = []
            for i in names.indices {
                var x = lows
                x[i] = highs[i] == lows[i] ? lows[i] + 1 : highs[i]
                coefficients.append((try g(x) - base) / (x[i] - lows[i]))
            }
            let offset = base - zip(coefficients, lows).reduce(0) { $0 + $1.0 * $1.1 }
            let probe = zip(lows, highs).map { 0.37 * $0 + 0.63 * $1 }
            let predicted = offset + zip(coefficients, probe).reduce(0) { $0 + $1.0 * $1.1 }
            guard abs(try g(probe) - predicted) <= 1e-9 * max(1, abs(predicted), abs(base)) else {
                source.error(node, "constraint is not linear in the parameters",
                             hint: "the planner handles sums of parameters times numbers, e.g. $a + 2 * $b <= 10")
                return nil
            }
            let constraint = LinearConstraint(
                coefficients: Dictionary(uniqueKeysWithValues: zip(names, coefficients)), relation: relation, bound: -offset)
            // The smallest and largest the left side can be inside the ranges: is the constraint possible?
            let least = names.indices.reduce(0) { $0 + min(coefficients[$1] * lows[$1], coefficients[$1] * highs[$1]) }
            let most = names.indices.reduce(0) { $0 + max(coefficients[$1] * lows[$1], coefficients[$1] * highs[$1]) }
            let tolerance = 1e-9 * max(1, abs(constraint.bound))
            if (relation != .atLeast && least > constraint.bound + tolerance) || (relation != .atMost && most < constraint.bound - tolerance) {
                source.error(node, "no values inside the parameters' ranges meet this constraint")
                return nil
            }
            return constraint
        } catch {
            source.error(node, error.message)
            return nil
        }
    }
}
