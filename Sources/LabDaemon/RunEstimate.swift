import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import Logging

/// How long a run will take: its protocol executed with its parameters against in-process
/// simulations of the lab's instruments, on a virtual clock (no wall time passes). The same answer
/// `serendip simulate` gives, without the transports.
enum RunEstimate {
    static func seconds(_ definition: ProtocolDefinition, _ parameters: [String: ExprValue], lab: LabConfig) async -> Double? {
        let clock = VirtualClock()
        let simulated = InstrumentConnector.inProcess(lab, clock: clock)
        guard let bindings = try? InstrumentConnector.bindings(for: definition, in: lab) else { return nil }
        let instruments = bindings.compactMapValues { simulated[$0.name] }
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock, recorder: MemoryRecorder(),
                                        logger: Logger(label: "estimate"))
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source, parameters: [],
                             chosenBy: "estimate", proposalID: nil, instruments: [:], operatorName: "estimate",
                             softwareVersion: Daemon.softwareVersion, startedAt: Date(), startedMonotonic: 0)
        guard let result = try? await executor.run(parameters: parameters, start: start), result.outcome == .completed else {
            return nil
        }
        return clock.now
    }
}
