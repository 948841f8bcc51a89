import Foundation
import GRDB
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import LabTransport
import Logging
import Testing

/// The identity query of a driver file, asked over a real pseudo-terminal at the start of a run.
@Suite(.serialized) struct DeviceIdentityTests {
    @Test func aDeviceThatDoesNotAnswerItsIdentityQueryIsStoredWithoutAnAnswerAndTheRunGoesOn() async throws {
        let spec = try DriverSpec.load(path: Repository.path("drivers/uv-vis.yaml"))
        var older = spec
        older.identity = nil   // firmware that knows no *IDN?: it answers "ERR unknown command"
        let device = try SerialSimulator(spec: older, model: InertModel())
        defer { device.stop() }
        let spectro = SerialInstrument(name: "spectro", spec: spec, line: SerialLine(path: device.path))
        let definition = try ProtocolParser.parse("""
            serendip: 1
            name: lamp
            instruments: { spectro: uv-vis }
            steps:
              - set: spectro.lamp
                to: true
            """, path: "lamp.yaml", drivers: ["uv-vis": spec])
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let clock = ScaledClock(rate: 1000)
        let executor = ProtocolExecutor(definition: definition, instruments: ["spectro": spectro], clock: clock, recorder: database,
                                        logger: Logger(label: "test"))
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source, parameters: [],
                             chosenBy: "test", proposalID: nil, instruments: ["spectro": spectro.identity], operatorName: "tester",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: clock.now)
        let result = try await executor.run(parameters: [:], start: start)
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        let stored = try database.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT device_query, device_answer FROM run_instrument WHERE run_id = ?", arguments: [result.runID])
        }
        #expect(stored?["device_query"] as String? == "*IDN?")
        #expect(stored?["device_answer"] as String? == nil)
        let logged = try database.events(run: result.runID).filter { $0.kind == "log" }.map(\.message)
        #expect(logged.contains { $0.hasPrefix("spectro: no answer to the identity query *IDN?: ") && $0.contains("unknown command") }, "\(logged)")
        #expect(device.written["lamp"] == [1, 0], "the run went on, and its safe state was applied")
    }
}
