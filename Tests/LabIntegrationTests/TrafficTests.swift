import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging
import Testing

/// `record_traffic: true` stores every request and reply on an instrument's wire with the run.
@Suite struct TrafficTests {
    @Test func aRunStoresTheBytesOnTheWiresOfTheInstrumentsThatRecordTraffic() async throws {
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
        let labFile = directory.appendingPathComponent("lab.yaml")
        try """
            lab: traffic
            instruments:
              reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), simulate: true, record_traffic: true }
              pump:    { driver: \(Repository.path("drivers/syringe-pump.yaml")), simulate: true, record_traffic: true }
              spectro: { driver: \(Repository.path("drivers/uv-vis.yaml")), simulate: true }
            simulation: { speed: 3000 }
            """.write(to: labFile, atomically: true, encoding: .utf8)
        let lab = try LabConfig.load(path: labFile.path)
        #expect(lab.instruments["reactor"]?.recordTraffic == true && lab.instruments["spectro"]?.recordTraffic == false)
        let clock = ScaledClock(rate: 3000)
        let simulators = try SimulatedLab(config: lab, clock: clock)
        defer { simulators.stop() }
        let database = try LabDatabase(path: directory.appendingPathComponent("serendip.sqlite").path)
        let instruments = try InstrumentConnector.connect(lab, simulators: simulators, traffic: { database.trafficTap(for: $0) })
        let definition = try ProtocolParser.parse("""
            serendip: 1
            name: t
            instruments: { reactor: thermo-reactor, pump: syringe-pump, spectro: uv-vis }
            steps:
              - set: reactor.setpoint
                to: 60 degC
              - set: pump.rate
                to: 5 mL/min
              - set: spectro.lamp
                to: true
            """, path: "t.yaml", drivers: lab.drivers)
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: clock, recorder: database,
                                        logger: Logger(label: "test"))
        let start = RunStart(campaignID: nil, protocolName: "t", protocolSource: definition.source, parameters: [], chosenBy: "test",
                             proposalID: nil, instruments: instruments.mapValues(\.identity), operatorName: "t",
                             softwareVersion: "t", startedAt: Date(), startedMonotonic: 0)
        let result = try await executor.run(parameters: [:], start: start)
        #expect(result.outcome == .completed)
        let frames = try database.traffic(run: result.runID)
        // Modbus: "write 2 registers at 100" carrying 60.0 as a float32 (0x4270 0000), and the device's reply.
        let written: [UInt8] = [0x01, 0x10, 0x00, 0x64, 0x00, 0x02, 0x04, 0x42, 0x70, 0x00, 0x00]
        #expect(frames.contains { $0.instrument == "reactor" && $0.direction == .sent && Array($0.bytes.suffix(11)) == written })
        #expect(frames.contains { $0.instrument == "reactor" && $0.direction == .received && Array($0.bytes.dropFirst(6).prefix(2)) == [0x01, 0x10] })
        // The pump's ASCII line, and its answer.
        let sent = frames.filter { $0.instrument == "pump" && $0.direction == .sent }.map { String(decoding: $0.bytes, as: UTF8.self) }
        #expect(sent.contains("RATE 5.0\r\n"), "\(sent)")
        #expect(frames.contains { $0.instrument == "pump" && $0.direction == .received && $0.bytes == Array("OK\r\n".utf8) })
        // The spectrometer does not record its traffic.
        #expect(!frames.contains { $0.instrument == "spectro" })
        // Requests come before their replies.
        let reactor = frames.filter { $0.instrument == "reactor" }.map(\.direction)
        #expect(reactor.first == .sent && zip(reactor, reactor.dropFirst()).allSatisfy { $0 != $1 })

        // As a person reads it: time, instrument, direction, hex, and an ASCII line as text.
        let (status, output) = try await ClientCommandTests.serendip(["traffic", "\(result.runID)", "--data", directory.path])
        #expect(status == 0, "\(output)")
        #expect(output.contains("  pump     →  52 41 54 45 20 35 2e 30 0d 0a  \"RATE 5.0\""), "\(output)")
        #expect(output.split(separator: "\n").count == frames.count)
    }
}
