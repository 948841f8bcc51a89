import Foundation
public import LabCore

/// A campaign: a protocol, a lab, and how to choose the experiments (here: optimise one output).
public struct CampaignSpec: Sendable {
    public enum Direction: String, Sendable { case maximize, minimize }

    public var name: String
    public var protocolPath: String
    public var labPath: String
    public var objective: String
    public var direction: Direction
    public var budget: Int
    public var initialPoints: Int
    public var seed: UInt64
    public var source: SourceText

    public static func load(path: String) throws -> CampaignSpec {
        let text = try readUserFile(path)
        let source = YAMLSource(path: path, text: text)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        let relative = { (p: String) in URL(fileURLWithPath: p, relativeTo: directory).standardizedFileURL.path }
        var spec: CampaignSpec?
        if let root = source.root(), let top = source.mapping(root, "campaign") {
            let name = top.required("campaign").flatMap { source.string($0, "campaign") }
            let protocolPath = top.required("protocol").flatMap { source.string($0, "protocol") }
            let labPath = top.required("lab").flatMap { source.string($0, "lab") }
            let seed = top.optional("seed").flatMap { source.integer($0, "seed", in: 0...Int.max) } ?? 1
            var objective: String?, direction = Direction.maximize, budget = 20, initial = 5
            if let node = top.required("optimize"), let opt = source.mapping(node, "optimize") {
                objective = opt.required("objective").flatMap { source.string($0, "objective") }
                if let node = opt.optional("direction"), let text = source.string(node, "direction") {
                    if let d = Direction(rawValue: text) { direction = d }
                    else { source.error(node, "unknown direction '\(text)'", hint: "use maximize or minimize") }
                }
                budget = opt.optional("budget").flatMap { source.integer($0, "budget", in: 1...100_000) } ?? budget
                initial = opt.optional("initial_points").flatMap { source.integer($0, "initial_points", in: 1...10_000) } ?? initial
                opt.rejectUnknownKeys()
            }
            top.rejectUnknownKeys()
            if let name, let protocolPath, let labPath, let objective {
                spec = CampaignSpec(name: name, protocolPath: relative(protocolPath), labPath: relative(labPath),
                                    objective: objective, direction: direction, budget: budget,
                                    initialPoints: min(initial, budget), seed: UInt64(seed),
                                    source: SourceText(path: path, text: text, sha256: source.sha256))
            }
        }
        guard let spec, source.diagnostics.isEmpty else { throw ValidationError(source.diagnostics, source: text) }
        return spec
    }
}
