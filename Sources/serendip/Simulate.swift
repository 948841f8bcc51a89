import ArgumentParser
import Foundation
import LabCore
import LabDaemon
import LabEngine

/// `serendip simulate`: a dry run on a virtual clock against the lab's simulators.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a protocol against simulated instruments on a virtual clock; print its timeline and duration.",
        discussion: "Every instrument of the lab is simulated from its driver file, whatever its connection says.")

    @Argument(help: "The protocol file.")
    var file: String

    @Option(help: "The lab config whose driver files describe the instruments.")
    var lab: String

    @Option(name: .customLong("param"), help: "A parameter value, e.g. --param temperature='80 degC'. Repeatable.")
    var params: [String] = []

    @Flag(help: "Simulate again for each side of each 'if' not yet taken, until every side has been walked.")
    var allBranches = false

    func validate() throws {
        for p in params where !p.contains("=") { throw ValidationError("--param takes name=value, got '\(p)'") }
    }

    func run() async throws {
        var values: [String: String] = [:]
        for p in params {
            let parts = p.split(separator: "=", maxSplits: 1)
            values[String(parts[0])] = String(parts[1])
        }
        let reports = try await ProtocolSimulation.run(protocolPath: file, labPath: lab, parameters: values,
                                                       allBranches: allBranches)
        for (index, report) in reports.enumerated() {
            let forced = report.forced.map { "step \($0.key) \($0.value ? "then" : "else")" }.joined(separator: ", ")
            print(index == 0 ? "Simulation of \(file):" : "\nSimulation \(index + 1), forcing \(forced):")
            for entry in report.timeline { print("  \(Self.clock(entry.time))  \(Self.describe(entry))") }
            print("  outcome: \(report.result.outcome.rawValue)\(report.result.error.map { " — \($0)" } ?? "")")
            for (name, value) in report.result.outputs.sorted(by: { $0.key < $1.key }) { print("  output \(name) = \(value)") }
            print("  estimated duration: \(Self.clock(report.duration))")
        }
        if allBranches {
            var walked: [Int: Set<Bool>] = [:]
            for report in reports { for b in report.branches { walked[b.stepID, default: []].insert(b.taken) } }
            print("\nBranches walked: " + (walked.isEmpty ? "none (no if steps reached)" : walked.sorted { $0.key < $1.key }
                .map { "step \($0.key): \($0.value.sorted { !$0 && $1 }.map { $0 ? "then" : "else" }.joined(separator: "+"))" }
                .joined(separator: ", ")))
        }
        if reports.contains(where: { $0.result.outcome != .completed }) { throw ExitCode(1) }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return String(format: "%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
    }

    static func describe(_ entry: MemoryRecorder.Entry) -> String {
        switch entry {
        case .event(let e): "\(e.kind.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(e.message)"
        case .reading(let m) where m.array != nil:
            "read       \(m.channel) = array \(m.array!.shape.map(String.init).joined(separator: "×")) \(m.unit)  [\(m.series)]"
        case .reading(let m): "read       \(m.channel) = \(String(format: "%.4g", m.value)) \(m.unit)  [\(m.series)]"
        }
    }
}
