import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabSpec
import Logging
import Testing

@Suite struct InProcessInstrumentTests {
    static let labPath = Repository.path("examples/toy-lab/lab.yaml")
    static let protocolPath = Repository.path("protocols/reactor-yield.yaml")

    @Test func theReactorYieldProtocolRunsInProcessForAsLongAsSimulateReports() async throws {
        let lab = try LabConfig.load(path: Self.labPath)
        let definition = try ProtocolParser.load(path: Self.protocolPath, drivers: lab.drivers)
        let clock = VirtualClock()
        let parameters: [String: ExprValue] = ["temperature": .quantity(Quantity(80, LabUnit.named("degC")!)),
                                               "residence": .quantity(Quantity(14, LabUnit.named("min")!))]
        let executor = ProtocolExecutor(definition: definition, instruments: InstrumentConnector.inProcess(lab, clock: clock),
                                        clock: clock, recorder: MemoryRecorder(), logger: Logger(label: "test"))
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source,
                             parameters: [], chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "tester",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: 0)
        let result = try await executor.run(parameters: parameters, start: start)
        #expect(result.outcome == .completed, "\(result.error ?? "")")

        let simulated = try await ProtocolSimulation.run(protocolPath: Self.protocolPath, labPath: Self.labPath,
                                                         parameters: ["temperature": "80 degC", "residence": "14 min"],
                                                         allBranches: false)[0]
        // The 14 min hold plus heating to 80 °C; the two differ at most by a poll or two.
        #expect(clock.now > 14 * 60)
        #expect(abs(clock.now - simulated.duration) <= 0.1 * simulated.duration, "in-process \(clock.now) s, simulate \(simulated.duration) s")
        guard case .quantity(let yield)? = result.outputs["yield"] else { Issue.record("no yield"); return }
        #expect(abs(yield.value - 42) < 3)
    }

    @Test func theWriteGuardRefusesOnAnInProcessInstrumentWhatItRefusesOnARealOne() async throws {
        let reactor = try #require(InstrumentConnector.inProcess(LabConfig.load(path: Self.labPath), clock: VirtualClock())["reactor"])
        try await reactor.write("setpoint", .real(80))
        for (value, code) in [(Value.real(200), LabError.Code.outOfLimits), (.real(.nan), .notANumber), (.bool(true), .outOfLimits)] {
            let error = await #expect(throws: LabError.self) { try await reactor.write("setpoint", value) }
            #expect(error?.code == code, "\(value)")
        }
        let readOnly = await #expect(throws: LabError.self) { try await reactor.write("temperature", .real(30)) }
        #expect(readOnly?.code == .accessDenied)
        // Nothing refused reached the device.
        #expect(try await reactor.read("setpoint") == .real(80))
    }

    @Test func theSafeStateIsTheDriverFiles() async throws {
        let reactor = try #require(InstrumentConnector.inProcess(LabConfig.load(path: Self.labPath), clock: VirtualClock())["reactor"])
        try await reactor.write("setpoint", .real(80))
        try await reactor.write("stirrer", .bool(true))
        try await reactor.goToSafeState()
        #expect(try await reactor.read("setpoint") == .real(25))
        #expect(try await reactor.read("stirrer") == .bool(false))
    }
}
