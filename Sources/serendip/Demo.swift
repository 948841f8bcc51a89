import ArgumentParser
import Foundation
import LabCore
import LabDrivers
import LabDaemon
import LabEngine

/// `serendip demo`: the closed loop end to end on a simulated lab.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the example optimisation campaign against simulated instruments over real transports.")

    @Option(help: "The campaign file.")
    var campaign = "examples/toy-lab/campaign.yaml"

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
        try FileManager.default.createDirectory(atPath: (database as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        print("Serendip demo: \(campaign) → \(database)")
        print(" #   temperature  residence   yield   best   chosen by")
        let started = ContinuousClock.now
        let socket = (database as NSString).deletingPathExtension + ".sock"
        print("While it runs, the socket API answers on \(socket) (see docs/api.md).")
        let summary = try await CampaignSession.run(campaignPath: campaign, databasePath: database, budget: budget,
                                                    resume: resume, socketPath: socket) { r in
            let t = r.parameters["temperature"].map { String(format: "%7.1f °C", $0) } ?? "-"
            let m = r.parameters["residence"].map { String(format: "%6.1f min", $0) } ?? "-"
            let y = r.objective.map { String(format: "%6.1f %%", $0) } ?? " failed"
            let b = r.bestSoFar.map { String(format: "%5.1f %%", $0) } ?? "-"
            print(String(format: "%2d ", r.index) + " \(t)  \(m)  \(y)  \(b)  \(r.chosenBy)")
        }
        let elapsed = ContinuousClock.now - started
        print("")
        if let best = summary.best, let initial = summary.bestInitial {
            print(String(format: "Best yield %.1f %% at %.1f °C, %.1f min (run %lld).", best.objective!,
                         best.parameters["temperature"] ?? .nan, best.parameters["residence"] ?? .nan, best.runID))
            print(String(format: "Best of the %d space-filling points: %.1f %%; the planner added %+.1f points.",
                         summary.initialPoints, initial.objective!, best.objective! - initial.objective!))
            let optimum = ToyChemistry.isothermalOptimum
            print(String(format: "The toy chemistry's true optimum: %.1f %% at %.1f °C, %.1f min.",
                         100 * optimum.yield, optimum.celsius, optimum.minutes))
        }
        print("\(summary.experiments.count) experiments in \(elapsed.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))); every run, parameter and measurement is in \(summary.databasePath)")
    }
}
