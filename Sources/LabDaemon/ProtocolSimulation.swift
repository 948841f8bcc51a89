import Foundation
public import LabCore
import LabDrivers
public import LabEngine
import LabSpec
import Logging
import Synchronization

/// `serendip simulate`: runs a protocol's IR against the lab's simulators on a virtual clock, so a
/// 40-minute protocol takes a fraction of a second, and reports what would happen.
public enum ProtocolSimulation {
    public struct Report: Sendable {
        /// Branch sides forced in this run (`--all-branches`), by step id.
        public var forced: [Int: Bool]
        public var result: RunResult
        public var timeline: [MemoryRecorder.Entry]
        public var duration: Double
        /// Each `if` step reached, with the side taken.
        public var branches: [(stepID: Int, taken: Bool)]
    }

    /// Runs once with the conditions as they evaluate; with `allBranches`, runs again forcing each
    /// side of each `if` not yet taken, until every side has been walked or cannot be reached.
    public static func run(protocolPath: String, labPath: String, parameters: [String: String],
                           allBranches: Bool) async throws -> [Report] {
        let lab = try LabConfig.load(path: labPath)
        let definition = try ProtocolParser.load(path: protocolPath, drivers: lab.drivers)
        let values = try parse(parameters, for: definition)
        var reports = [try await once(definition, lab, values, forced: [:])]
        guard allBranches else { return reports }
        let conditionals = Self.conditionals(in: definition.steps + definition.finally)
        var covered = Set(reports[0].branches.map { "\($0.stepID):\($0.taken)" })
        for id in conditionals {
            for side in [true, false] where !covered.contains("\(id):\(side)") {
                let report = try await once(definition, lab, values, forced: [id: side])
                covered.formUnion(report.branches.map { "\($0.stepID):\($0.taken)" })
                reports.append(report)
            }
        }
        return reports
    }

    static func once(_ definition: ProtocolDefinition, _ lab: LabConfig, _ values: [String: ExprValue],
                     forced: [Int: Bool]) async throws -> Report {
        let clock = VirtualClock()
        var simulated = lab
        for name in simulated.instruments.keys { simulated.instruments[name]!.connection = .simulated }
        let simulators = try SimulatedLab(config: simulated, clock: clock)
        defer { simulators.stop() }
        let recorder = MemoryRecorder()
        let taken = Mutex<[(Int, Bool)]>([])
        var executor = ProtocolExecutor(definition: definition,
                                        instruments: try InstrumentConnector.connect(simulated, simulators: simulators, for: definition),
                                        clock: clock, recorder: recorder, logger: Logger(label: "simulate"))
        executor.branchDecision = { id, evaluated in
            let side = forced[id] ?? evaluated
            taken.withLock { $0.append((id, side)) }
            return side
        }
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source,
                             parameters: [], chosenBy: "simulate", proposalID: nil, instruments: [:],
                             operatorName: "simulate", softwareVersion: CampaignSession.softwareVersion,
                             startedAt: Date(), startedMonotonic: 0)
        let result = try await executor.run(parameters: values, start: start)
        return Report(forced: forced, result: result, timeline: await recorder.timeline, duration: clock.now,
                      branches: taken.withLock { $0 })
    }

    /// `name=value` pairs from the command line, typed by the protocol's parameters.
    static func parse(_ raw: [String: String], for definition: ProtocolDefinition) throws -> [String: ExprValue] {
        var values: [String: ExprValue] = [:]
        for (name, text) in raw {
            guard let spec = definition.parameter(named: name) else {
                throw LabError(.unknownReference, "\(definition.name) has no parameter '\(name)'")
            }
            switch spec.kind {
            case .choice: values[name] = .text(text)
            case .boolean:
                guard let b = Bool(text.lowercased()) else { throw LabError(.invalidFile, "\(name) takes true or false") }
                values[name] = .bool(b)
            case .real, .integer:
                let expr = try ExpressionParser.parse(text, at: SourceLocation(file: "--param \(name)", line: 1, column: 1))
                values[name] = try ExprEnvironment().evaluate(expr)
            }
        }
        return values
    }

    static func conditionals(in steps: [Step]) -> [Int] {
        steps.flatMap { step -> [Int] in
            let inner = step.children.flatMap { conditionals(in: $0) }
            if case .branch = step.action { return [step.id] + inner }
            return inner
        }
    }
}
