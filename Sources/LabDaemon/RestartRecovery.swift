import Foundation
import LabCore
import LabDrivers
import LabSpec
import LabStorage
import Logging

/// What a restart does before anything else: the instruments of every run a killed process left
/// `running` are commanded to their safe state (a reactor left at 80 °C with its stirrer on must
/// not wait for the next run), then those runs are marked `interrupted`. Nothing resumes by itself.
enum RestartRecovery {
    static func makeSafe(database: LabDatabase, lab: LabConfig, simulators: SimulatedLab?, logger: Logger) async throws {
        let restarted = Date()
        let orphans = try database.runningRuns()
        let names = Set(orphans.flatMap(\.instruments)).sorted()
        var outcomes: [String: String?] = [:]   // instrument → nil when safe, else what failed
        for name in names {
            do {
                guard let instrument = try InstrumentConnector.connect(lab, simulators: simulators, named: [name])[name] else {
                    continue
                }
                try await instrument.goToSafeState()
                outcomes[name] = .some(nil)
            } catch {
                outcomes[name] = .some("\(error)")
                logger.error("cannot command the safe state after a restart", metadata: ["instrument": "\(name)", "error": "\(error)"])
            }
        }
        var restart: [Int64: String] = [:]   // run → what the restart did about its instruments
        for (run, instruments) in orphans {
            let failed = instruments.filter { (outcomes[$0] ?? "not connected") != nil }
            restart[run] = instruments.isEmpty ? nil : failed.isEmpty
                ? "its instruments were sent to their safe state on restart"
                : "on restart the safe state of \(failed.joined(separator: ", ")) failed (see the run's events)"
            for name in instruments {
                let failure = outcomes[name] ?? "not connected"
                let event = failure.map { RunEvent(.fault, "after a restart: safe state of \(name) failed: \($0)", monotonicTime: 0) }
                    ?? RunEvent(.safeState, "after a restart: \(name) in safe state", monotonicTime: 0)
                try await database.note(event, run: run)
            }
        }
        try await database.flush()
        let interrupted = try database.interruptRunningRuns(restart: restart, restartedAt: restarted)
        if interrupted > 0 {
            logger.warning("runs left running by an earlier process are interrupted; their instruments were sent to their safe state",
                           metadata: ["runs": "\(orphans.map(\.run))"])
        }
    }
}
