import Foundation
public import LabCore

/// A campaign: a protocol on a lab, and how its experiments are chosen, either a `sweep` written
/// out in advance or an `optimize` block the planner follows. Loading checks the campaign against
/// the protocol and the lab's drivers, so every run it can start is a valid run.
public struct CampaignSpec: Sendable {
    public var name: String
    public var protocolPath: String
    public var labPath: String
    public var lab: LabConfig
    public var definition: ProtocolDefinition
    public var seed: UInt64
    /// Values held for every run, overriding the protocol's defaults.
    public var fixed: [String: ExprValue]
    public var plan: Plan
    public var source: SourceText

    public enum Plan: Sendable {
        case sweep(Sweep)
        case optimize(Optimization)
    }

    /// The most runs one campaign file may describe. A sweep that multiplies out beyond this is an
    /// error found by counting, before anything is allocated.
    public static let maximumRuns = 100_000

    public static func load(path: String) throws -> CampaignSpec {
        let source = YAMLSource(path: path, text: try readUserFile(path))
        return try compile(source.root(), source: source)
    }

    /// A campaign submitted to a daemon: checked against the daemon's own lab (the file's `lab:` key,
    /// if any, is not read), with the protocol's text as the client sent it when given.
    public static func parse(_ text: String, path: String, lab: LabConfig, protocolText: String? = nil) throws(ValidationError)
        -> CampaignSpec {
        let source = YAMLSource(path: path, text: text)
        return try compile(source.root(), source: source, lab: lab, protocolText: protocolText)
    }

    /// Checks a file already read into nodes (nil: it could not be, and `source` says why).
    static func compile(_ root: Node?, source: YAMLSource, lab: LabConfig? = nil, protocolText: String? = nil)
        throws(ValidationError) -> CampaignSpec {
        var reader = CampaignReader(source: source, directory: URL(fileURLWithPath: source.path).deletingLastPathComponent())
        reader.givenLab = lab
        reader.protocolText = protocolText
        let spec = root.flatMap { reader.read($0) }
        var sources = [source.path: source.text]
        var diagnostics = source.diagnostics
        if let failure = reader.dependencyFailure {
            diagnostics += failure.diagnostics
            sources.merge(failure.sources) { a, _ in a }
        }
        guard let spec, diagnostics.isEmpty else { throw ValidationError(diagnostics, sources: sources) }
        return spec
    }
}

/// Every combination (a grid) or a Latin hypercube of the values written, each run `replicates` times.
public struct Sweep: Sendable {
    public enum Design: Sendable, Equatable { case grid, latinHypercube(points: Int) }
    /// One varied parameter: the values it takes in a grid, or the range a Latin hypercube spreads over.
    public enum Axis: Sendable {
        case values(String, [ExprValue])
        case range(String, low: Double, high: Double, unit: LabUnit, integer: Bool)

        public var name: String {
            switch self { case .values(let n, _), .range(let n, _, _, _, _): n }
        }
    }

    public var design: Design
    public var axes: [Axis]
    public var replicates: Int

    /// How many runs the sweep describes, replicates included.
    public var runCount: Int {
        switch design {
        case .grid:
            axes.reduce(replicates) { total, axis in
                if case .values(_, let values) = axis { total * values.count } else { total }
            }
        case .latinHypercube(let points): points * replicates
        }
    }

    /// The parameter values of every run, in the order they run: grids vary the last axis fastest,
    /// and replicates of a point run one after another.
    public func points(seed: UInt64) -> [[String: ExprValue]] {
        var points: [[String: ExprValue]] = [[:]]
        switch design {
        case .grid:
            for case .values(let name, let values) in axes {
                points = points.flatMap { point in values.map { point.merging([name: $0]) { _, new in new } } }
            }
        case .latinHypercube(let count):
            var random = SplitMix64(seed: seed)
            let ranges = axes.compactMap { axis in
                if case .range(let name, let low, let high, let unit, let integer) = axis {
                    (name: name, low: low, high: high, unit: unit, integer: integer)
                } else { nil }
            }
            points = LatinHypercube.sample(count: count, dimensions: ranges.count, using: &random).map { unit in
                Dictionary(uniqueKeysWithValues: zip(ranges, unit).map { range, u in
                    let x = range.low + u * (range.high - range.low)
                    return (range.name, ExprValue.quantity(Quantity(range.integer ? x.rounded() : x, range.unit)))
                })
            }
        }
        return points.flatMap { Array(repeating: $0, count: replicates) }
    }
}

/// What the planner optimises, and the rules it follows.
public struct Optimization: Sendable {
    public struct Objective: Sendable, Hashable {
        public var output: String
        public var maximize: Bool
    }
    public enum InitialDesign: String, Sendable, CaseIterable { case sobol, latin_hypercube, random }
    /// What a failed run tells the planner.
    public enum OnFailure: String, Sendable, CaseIterable {
        /// The conditions are infeasible: learn where failures happen and steer away.
        case avoid
        /// Count the run as the worst result seen so far.
        case worst
        /// Stop the campaign.
        case stop
    }
    /// `none`, `log` (results spanning orders of magnitude) or `power` (skewed results).
    public enum Transform: String, Sendable, CaseIterable { case auto, none, log, power }
    /// Where the planner expects the best: `inside` the ranges (the default) or `anywhere`, their limits included.
    public enum ExpectBest: String, Sendable, CaseIterable { case inside, anywhere }
    /// How noisy results are: estimated, absent, or measured by an output (its standard deviation).
    public enum Noise: Sendable, Hashable { case inferred, noiseFree, measured(output: String) }

    /// `log_ei` (nil) or `ucb` with its β.
    public var ucbBeta: Double?
    public var objectives: [Objective]
    public var noise: Noise
    public var budget: Int
    public var initialDesign: InitialDesign
    public var initialPoints: Int
    /// Proposals made at once; nil if the file does not say (the daemon then proposes as many as
    /// the lab can run at once, a campaign run on its own one at a time).
    public var batchSize: Int?
    /// The parameters the planner chooses; the others take their fixed or default values.
    public var parameters: [String]
    /// Linear conditions on the parameters, in their declared units.
    public var parameterConstraints: [LinearConstraint]
    /// Conditions on outputs (`purity >= 95`) a result must meet to count.
    public var outcomeConstraints: [Expr]
    public var onFailure: OnFailure
    /// How results are reshaped before the model sees them.
    public var transform: Transform
    public var expectBest: ExpectBest
    /// Stop early after this many runs in a row without improvement.
    public var stopAfterNoImprovement: Int?
    /// Stop early once the (single) objective reaches this value.
    public var stopAtTarget: Double?
}
