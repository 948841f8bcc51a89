import ArgumentParser
import Foundation
import LabCore
import LabDrivers
import LabAPI
import LabDaemon
import LabEngine
import LabSpec

/// `serendip demo`: the daemon end to end. It starts `serendip serve` on the campaign's lab (the
/// example lab's instruments are simulated over the real transports), hands it the campaign
/// through the socket API as `serendip campaign start` does, prints each experiment as it ends,
/// and stops the daemon.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the daemon on a simulated lab, run the example optimisation campaign through it, and stop it.",
        discussion: """
            Ctrl-C or SIGTERM is passed on to the daemon, which stops safely: each running run pauses at its \
            next checkpoint (or where it is, after --checkpoint-wait), every instrument goes to its safe state; a second signal \
            halts the runs. Exit status: 0 when at least one run completed, 1 when none did, 128 + the signal's \
            number when stopped by one.
            """)

    static let defaultCampaign = "examples/toy-lab/campaign.yaml"

    @Option(help: "The campaign file.")
    var campaign = defaultCampaign

    @Option(help: "The daemon's data directory (created if missing).")
    var data = ".build/demo"

    @Option(help: "Run at most this many experiments of the campaign.")
    var budget: Int?

    @Option(help: "Continue this campaign (its number in the data directory) after a stop or crash, instead of starting a new one.")
    var resume: Int64?

    // Short by default: a demo stopped with Ctrl-C should not keep its user waiting for a checkpoint.
    @Option(help: ArgumentHelp("On Ctrl-C, how long a running run may go on to its next checkpoint before it is paused where it is.",
                               valueName: "seconds"))
    var checkpointWait: Double = 2

    func validate() throws {
        try Serve.validate(checkpointWait: checkpointWait)
        if let budget, budget < 1 { throw ValidationError("--budget must be at least 1") }
        guard FileManager.default.fileExists(atPath: campaign) else {
            throw ValidationError("no campaign file at \(campaign); run from the repository root or pass --campaign")
        }
    }

    func run() async throws {
        // Checked here first, so that a mistake is shown before a daemon is started.
        let spec = try CampaignSpec.load(path: campaign)
        let table = ProgressTable(spec)
        let started = ContinuousClock.now
        let daemon = try DaemonProcess(lab: spec.labPath, data: data, checkpointWait: checkpointWait)
        let signals = StopSignals { by, count in
            daemon.forward()
            Output.error(count == 1 ? "\n\(by): stopping the daemon — running runs pause at a checkpoint, instruments to their safe states. Again to halt them."
                                    : "\n\(by) again: halting the runs; the safe states are still commanded.")
        }
        say("Serendip demo: \(campaign) on the daemon serving \(data) (log: \(daemon.log))")
        say("While it runs, try: serendip queue --data \(data)")
        let client = DaemonClient(directory: data)
        var id: Int64?
        var status: WireCampaign?
        do {
            try await daemon.ready()
            let reply: Data
            if let resume {
                reply = try client.call("campaign.resume", CampaignRef(campaign: resume))
            } else {
                let file = try WireFile.read(campaign)
                let protocolFile = try WireFile.read(try CampaignCommand.Start.protocolPath(of: file))
                reply = try client.call("campaign.start", CampaignStartParams(campaign: file, protocolFile: protocolFile, budget: budget))
            }
            id = try JSONDecoder().decode(WireCampaign.self, from: reply).campaign
            say("Campaign \(id!) (\(spec.name)); its experiments run as many at a time as the lab has stations for them:")
            say(table.header)
            status = try await follow(id!, client, table, signals: signals)
        } catch let failure as ClientFailure where signals.first == nil {
            daemon.stop()
            Output.error(failure.description)
            throw ExitCode(failure.status)
        } catch is ClientFailure {
            // Stopping: the daemon may have gone already.
        }
        daemon.stop()
        if let stopped = signals.first {
            say(signals.count > 1
                ? "\nStopped by \(stopped), then halted: nothing new was started; every run in progress was halted, its instruments in their safe states."
                : "\nStopped by \(stopped): nothing new was started; every run in progress was paused, its instruments in their safe states.")
            if let id { say("Continue later with: serendip demo --campaign \(campaign) --data \(data) --resume \(id)") }
            throw ExitCode(signals.exitCode ?? 1)
        }
        guard let status else { throw ExitCode(1) }
        let maximize: Bool = if case .optimize(let o) = spec.plan { o.objectives.first?.maximize ?? true } else { true }
        summarise(status, table, maximize: maximize, elapsed: ContinuousClock.now - started)
        if !status.experiments.contains(where: { $0.outcome == RunOutcome.completed.rawValue }) {
            say("No run completed: see each run's error with `serendip status RUN --data \(data)`.")
            throw ExitCode(1)
        }
    }

    /// Prints each experiment once it has ended, until the campaign is over (or the daemon stops).
    private func follow(_ id: Int64, _ client: DaemonClient, _ table: ProgressTable, signals: StopSignals) async throws -> WireCampaign {
        var printed = 0
        while true {
            let status = try JSONDecoder().decode(WireCampaign.self, from: try client.call("campaign.get", CampaignRef(campaign: id)))
            for e in status.experiments.dropFirst(printed) {
                say(table.row(e))
            }
            printed = status.experiments.count
            if status.state != "running" || signals.first != nil { return status }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func summarise(_ status: WireCampaign, _ table: ProgressTable, maximize: Bool, elapsed: Duration) {
        say("")
        let runs = status.experiments
        let scored = runs.filter { $0.objective != nil }
        if let objective = table.objective,
           let best = scored.max(by: { maximize ? $0.objective! < $1.objective! : $0.objective! > $1.objective! }) {
            let values = table.values(best).joined(separator: ", ")
            say("Best \(objective) \(table.number(best.objective!)) at \(values) (experiment \(best.index), run \(best.run)).")
            if campaign == Self.defaultCampaign {
                let optimum = ToyChemistry.isothermalOptimum
                say(String(format: "The toy chemistry's true optimum: yield %.1f at %.1f degC, %.1f min.",
                           100 * optimum.yield, optimum.celsius, optimum.minutes))
            }
        }
        let completed = runs.filter { $0.outcome == RunOutcome.completed.rawValue }.count
        let seconds = elapsed.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))
        say("\(runs.count) experiment\(runs.count == 1 ? "" : "s") (\(completed) completed) in \(seconds); the campaign is \(status.state)\(status.note.map { " (\($0))" } ?? ""). The daemon stopped; its data is in \(data).")
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
    let searched: [String]
    let objective: String?

    init(searched: [String], objective: String?) {
        self.searched = searched; self.objective = objective
    }

    init(_ spec: CampaignSpec) {
        switch spec.plan {
        case .optimize(let optimization): self.init(searched: optimization.parameters, objective: optimization.objectives.first?.output)
        case .sweep(let sweep): self.init(searched: sweep.axes.map(\.name), objective: nil)
        }
    }

    var header: String {
        (([" #"] + searched.map(Self.pad)) + (objective.map { [Self.pad($0), Self.pad("best")] } ?? [Self.pad("outcome")])
            + ["chosen by"]).joined(separator: "  ")
    }

    /// One experiment as the daemon reports it.
    func row(_ e: WireExperiment) -> String {
        var cells = [String(format: "%2d", e.index)] + values(e).map(Self.pad)
        if objective != nil {
            let shown = e.objective.map { number($0) } ?? (e.outcome == RunOutcome.completed.rawValue ? "no value" : e.outcome)
            cells += [Self.pad(shown), Self.pad(e.best.map { number($0) } ?? "-")]
        } else {
            cells.append(Self.pad(e.outcome))
        }
        let line = (cells + [e.chosenBy]).joined(separator: "  ")
        return e.outcome == RunOutcome.completed.rawValue || e.error == nil ? line : line + "\n      " + e.error!
    }

    /// The values of the parameters the campaign varies, in column order, with their units.
    func values(_ e: WireExperiment) -> [String] {
        searched.map { e.parameters[$0].map { Show.value($0, format: "%.4g") } ?? "-" }
    }

    func number(_ x: Double) -> String { String(format: "%.4g", x) }

    private static func pad(_ text: String) -> String { text.padding(toLength: max(12, text.count), withPad: " ", startingAt: 0) }
}
