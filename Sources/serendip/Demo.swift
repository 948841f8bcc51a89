import ArgumentParser
import Foundation
import LabCore
import LabDrivers
import LabDaemon
import LabEngine
import LabSpec

/// `serendip demo`: the closed loop end to end on a simulated lab.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the example optimisation campaign against simulated instruments over real transports.",
        discussion: """
            Ctrl-C or SIGTERM stops it safely: the current run's 'finally' steps, then every instrument's \
            safe state, the run recorded as aborted; a second signal skips 'finally'. Exit status: 0 when \
            at least one run completed, 1 when none did, 128 + the signal's number when stopped by one.
            """)

    static let defaultCampaign = "examples/toy-lab/campaign.yaml"

    @Option(help: "The campaign file.")
    var campaign = defaultCampaign

    @Option(help: "The SQLite database to write (created if missing).")
    var database = ".build/demo/serendip.sqlite"

    @Option(help: "Override the campaign's budget (number of experiments).")
    var budget: Int?

    @Option(help: "Continue this campaign (its number in the database) after a stop or crash, instead of starting a new one.")
    var resume: Int64?

    func validate() throws {
        if let budget, budget < 1 { throw ValidationError("--budget must be at least 1") }
        guard FileManager.default.fileExists(atPath: campaign) else {
            throw ValidationError("no campaign file at \(campaign); run from the repository root or pass --campaign")
        }
    }

    func run() async throws {
        let control = RunControl()
        let signals = StopSignals { by, count in
            control.stop(count == 1 ? .abort : .halt, by: by)
            FileHandle.standardError.write(Data((count == 1
                ? "\nstopping — running 'finally', then the safe states. Send the signal again to skip 'finally'.\n"
                : "\nskipping 'finally'; commanding the safe states.\n").utf8))
        }
        let spec = try CampaignSpec.load(path: campaign)
        let table = ProgressTable(spec)
        try FileManager.default.createDirectory(atPath: (database as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        say("Serendip demo: \(campaign) → \(database)")
        let started = ContinuousClock.now
        let socket = (database as NSString).deletingPathExtension + ".sock"
        say("While it runs, the socket API answers on \(socket) (see docs/api.md).")
        say(table.header)
        let summary: CampaignSession.Summary
        do {
            summary = try await CampaignSession.run(campaignPath: campaign, databasePath: database, budget: budget,
                                                    resume: resume, socketPath: socket, control: control) { say(table.row($0)) }
        } catch is CancellationError {
            let by = control.request?.by ?? "a cancellation"
            say("\nStopped by \(by): the run in progress was aborted after its safe states; nothing else was started.")
            say("Continue later with: serendip demo --campaign \(campaign) --database \(database) --resume <campaign number>")
            throw ExitCode(signals.exitCode ?? 1)
        }
        let elapsed = ContinuousClock.now - started
        say("")
        if let best = summary.best, let objective = table.objective {
            say("Best \(objective) \(table.number(best.objective!)) at \(table.parameters(best)) (run \(best.runID)).")
            if let initial = summary.bestInitial, summary.experiments.count > summary.initialPoints {
                say("Best of the \(summary.initialPoints) initial points: \(table.number(initial.objective!)); the planner added \(table.number(best.objective! - initial.objective!, signed: true)).")
            }
            if campaign == Self.defaultCampaign {
                let optimum = ToyChemistry.isothermalOptimum
                say(String(format: "The toy chemistry's true optimum: yield %.1f at %.1f degC, %.1f min.",
                             100 * optimum.yield, optimum.celsius, optimum.minutes))
            }
        }
        let completed = summary.experiments.filter { $0.outcome == .completed }.count
        say("\(summary.experiments.count) experiments (\(completed) completed) in \(elapsed.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))); every run, parameter and measurement is in \(summary.databasePath)")
        if completed == 0 {
            say("No run completed: see each run's error with the socket API's runs.get or in the database's run table.")
            throw ExitCode(1)
        }
    }
}

/// Writes a line straight to standard output: progress reaches a pipe or a log file as it is
/// printed, not when a buffer fills (and is not lost if the process is killed).
func say(_ line: String) {
    Output.line(line)
}

/// The progress lines of a campaign: one column per parameter it varies, then its objective (or,
/// for a sweep, how each run ended), whatever the lab.
struct ProgressTable {
    /// Types the values of the searched parameters; without it (a daemon's campaign seen by a
    /// client) they are shown as the numbers they are.
    let definition: ProtocolDefinition?
    let searched: [String]
    let objective: String?

    init(searched: [String], objective: String?, definition: ProtocolDefinition? = nil) {
        self.searched = searched; self.objective = objective; self.definition = definition
    }

    init(_ spec: CampaignSpec) {
        definition = spec.definition
        switch spec.plan {
        case .optimize(let optimization):
            searched = optimization.parameters
            objective = optimization.objectives.first?.output
        case .sweep(let sweep):
            searched = sweep.axes.map(\.name)
            objective = nil
        }
    }

    var header: String {
        (([" #"] + searched.map(Self.pad)) + (objective.map { [Self.pad($0), Self.pad("best")] } ?? [Self.pad("outcome")])
            + ["chosen by"]).joined(separator: "  ")
    }

    func row(_ r: ExperimentReport) -> String {
        row(index: r.index, values: Dictionary(uniqueKeysWithValues: searched.map { ($0, value($0, r.parameters)) }),
            objective: r.objective, best: r.bestSoFar,
            outcome: r.outcome.rawValue, chosenBy: r.chosenBy, error: r.error)
    }

    /// One experiment, its searched parameters' values already written out.
    func row(index: Int, values: [String: String], objective result: Double?, best: Double?,
             outcome: String, chosenBy: String, error: String?) -> String {
        var cells = [String(format: "%2d", index)] + searched.map { Self.pad(values[$0] ?? "-") }
        if objective != nil {
            let shown = result.map { number($0) } ?? (outcome == RunOutcome.completed.rawValue ? "no value" : outcome)
            cells += [Self.pad(shown), Self.pad(best.map { number($0) } ?? "-")]
        } else {
            cells.append(Self.pad(outcome))
        }
        let line = (cells + [chosenBy]).joined(separator: "  ")
        return outcome == RunOutcome.completed.rawValue || error == nil ? line : line + "\n      " + error!.prefix(160)
    }

    func parameters(_ r: ExperimentReport) -> String {
        searched.map { value($0, r.parameters) }.joined(separator: ", ")
    }

    func number(_ x: Double, signed: Bool = false) -> String { String(format: signed ? "%+.4g" : "%.4g", x) }

    private func value(_ name: String, _ parameters: [String: Double]) -> String {
        guard let x = parameters[name] else { return "-" }
        guard let spec = definition?.parameter(named: name) else { return number(x) }
        switch spec.value(coordinate: x) {
        case .quantity(let q): return String(format: "%.4g", q.value) + (q.unit == .one ? "" : " \(q.unit.symbol)")
        case .bool(let b): return b ? "true" : "false"
        case .text(let t): return t
        }
    }

    private static func pad(_ text: String) -> String { text.padding(toLength: max(12, text.count), withPad: " ", startingAt: 0) }
}
