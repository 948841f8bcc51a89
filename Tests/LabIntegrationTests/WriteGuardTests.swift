import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabTransport
import Logging
import Synchronization
import Testing

/// A device model that holds what was written and reports it, optionally changed (clipped, rounded).
final class HoldingModel: DeviceModel {
    private let held = Mutex<[String: Double]>([:])
    private let report: @Sendable (String, Double) -> Double

    init(report: @escaping @Sendable (_ channel: String, _ held: Double) -> Double = { $1 }) { self.report = report }

    func value(of channel: String) throws -> Double { report(channel, held.withLock { $0[channel] ?? 0 }) }
    func didWrite(_ channel: String, _ value: Double) { held.withLock { $0[channel] = value } }
}

/// The write guard's max_rate and the read-back after a write, over the real transports.
@Suite(.serialized) struct WriteGuardTests {
    static let reactor = try! DriverSpec.parse("""
        driver: rate-reactor
        transport: modbus
        channels:
          setpoint: { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150], max_rate: 60 degC/min }
          blind:    { holding: 102, type: float32, unit: degC, access: w, limits: [0, 150], max_rate: 60 degC/min }
        safe_state: { setpoint: 25 degC }
        """, path: "rate-reactor.yaml")

    static func endpoint(_ port: Int) -> ModbusTCPClient.Endpoint { .init(host: "127.0.0.1", port: port, responseTimeout: 2) }

    @Test func aWriteFasterThanTheMaxRateIsRefusedAndOneWithinItGoesOut() async throws {
        let device = try ModbusSimulator(spec: Self.reactor, model: InertModel())
        defer { device.stop() }
        let clock = VirtualClock()
        let reactor = ModbusInstrument(name: "reactor", spec: Self.reactor, client: ModbusTCPClient(Self.endpoint(device.port)), clock: clock)
        // The baseline is the device's 0 degC, held since connecting at t = 0: 1 degC/s allows nothing yet.
        await #expect { try await reactor.write("setpoint", .real(0.5)) } throws: {
            ($0 as? LabError)?.code == .outOfLimits && "\($0)".contains("faster than its max_rate of 60.0 degC/min")
        }
        try await clock.sleep(seconds: 1)
        try await reactor.write("setpoint", .real(1))
        await #expect { try await reactor.write("setpoint", .real(3)) } throws: { ($0 as? LabError)?.code == .outOfLimits }
        try await clock.sleep(seconds: 2)
        try await reactor.write("setpoint", .real(3))
        #expect(device.written["setpoint"] == [1, 3])
    }

    @Test func theSafeStateIsReachedAtOnceWhateverTheMaxRate() async throws {
        let device = try ModbusSimulator(spec: Self.reactor, model: InertModel())
        defer { device.stop() }
        let reactor = ModbusInstrument(name: "reactor", spec: Self.reactor, client: ModbusTCPClient(Self.endpoint(device.port)), clock: VirtualClock())
        try await reactor.goToSafeState()
        #expect(device.written["setpoint"] == [25])
        // ...but the next ordinary write is judged from it.
        await #expect { try await reactor.write("setpoint", .real(26)) } throws: { ($0 as? LabError)?.code == .outOfLimits }
    }

    @Test func theFirstWriteToAChannelThatCannotBeReadHasNoRateCheck() async throws {
        let device = try ModbusSimulator(spec: Self.reactor, model: InertModel())
        defer { device.stop() }
        let reactor = ModbusInstrument(name: "reactor", spec: Self.reactor, client: ModbusTCPClient(Self.endpoint(device.port)), clock: VirtualClock())
        try await reactor.write("blind", .real(100))
        await #expect { try await reactor.write("blind", .real(101)) } throws: { ($0 as? LabError)?.code == .outOfLimits }
        #expect(device.written["blind"] == [100])
    }

    @Test func aRampAtTheMaxRateRunsToItsTarget() async throws {
        let device = try ModbusSimulator(spec: Self.reactor, model: InertModel())
        defer { device.stop() }
        let clock = ScaledClock(rate: 3000)
        let reactor = ModbusInstrument(name: "reactor", spec: Self.reactor, client: ModbusTCPClient(Self.endpoint(device.port)), clock: clock)
        let definition = try ProtocolParser.parse("""
            serendip: 1
            name: r
            instruments: { reactor: rate-reactor }
            steps:
              - ramp: { channel: reactor.setpoint, to: 30 degC, rate: 60 degC/min, every: 5 s }
              - ramp: { channel: reactor.setpoint, to: 20 degC, rate: 1 degC/s, every: 5 s }
            """, path: "r.yaml", drivers: ["rate-reactor": Self.reactor])
        let executor = ProtocolExecutor(definition: definition, instruments: ["reactor": reactor], clock: clock,
                                        recorder: MemoryRecorder(), logger: Logger(label: "test"))
        let result = try await executor.run(parameters: [:], start: PropertyRuns.start(definition))
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        #expect(device.written["setpoint"] == [5, 10, 15, 20, 25, 30, 25, 20, 25])
    }

    @Test func aHoldingRegisterThatDoesNotHoldTheWrittenValueIsAReadBackMismatch() async throws {
        // A device that clips its setpoint to 100 degC without saying so.
        let device = try ModbusServer(sizes: .init(holding: 104)) { bank, request in
            guard request.written.isEmpty, request.touchesHoldingRegisters else { return }
            let held = ModbusFloat.decode([bank.holding(100), bank.holding(101)], .abcd)
            if held > 100 { for (i, r) in ModbusFloat.encode(100, .abcd).enumerated() { bank.setHolding(100 + UInt16(i), r) } }
        }
        defer { device.stop() }
        let clock = VirtualClock()
        let reactor = ModbusInstrument(name: "reactor", spec: Self.reactor, client: ModbusTCPClient(Self.endpoint(device.port)), clock: clock)
        try await clock.sleep(seconds: 1000)
        try await reactor.write("setpoint", .real(90))
        try await clock.sleep(seconds: 1000)
        await #expect { try await reactor.write("setpoint", .real(120)) } throws: {
            ($0 as? LabError)?.code == .readBackMismatch && "\($0)".contains("wrote 120.0 degC, device holds 100.0 degC")
        }
    }

    @Test func aRegisterThatWouldRoundPastALimitIsWrittenTheNeighbourInside() async throws {
        let spec = try DriverSpec.parse("""
            driver: narrow
            transport: modbus
            channels:
              fine:   { holding: 1, type: float32, access: rw, limits: [0, 0.1] }
              coarse: { holding: 3, type: int16, access: rw, limits: [-0.5, 150.5] }
            """, path: "narrow.yaml")
        let device = try ModbusSimulator(spec: spec, model: InertModel())
        defer { device.stop() }
        let instrument = ModbusInstrument(name: "narrow", spec: spec, client: ModbusTCPClient(Self.endpoint(device.port)))
        try await instrument.write("fine", .real(0.1))      // as a float32, 0.10000000149 would be past 0.1
        try await instrument.write("coarse", .real(150.5))  // rounds to 151 otherwise
        try await instrument.write("coarse", .real(-0.5))   // and to -1
        #expect(device.written["fine"] == [Double(Float(0.1).nextDown)])
        #expect(device.written["coarse"] == [150, 0])
    }

    static let pump = try! DriverSpec.parse("""
        driver: rb-pump
        transport: serial
        channels:
          flow:  { query: "FLOW?", write: "FLOW {value}", unit: mL/min, limits: [0, 50], read_back: true }
          speed: { query: "RPM?", write: "RPM {value}", unit: rpm, limits: [0, 500], read_back: true, read_back_tolerance: 2 rpm }
        """, path: "rb-pump.yaml")

    @Test func aSerialChannelIsReadBackToThePrecisionTheDevicePrints() async throws {
        // Prints the flow to two decimals and clips it at 10 mL/min; runs at no less than 20 rpm.
        let device = try SerialSimulator(spec: Self.pump, model: HoldingModel { channel, held in
            channel == "flow" ? (min(held, 10) * 100).rounded() / 100 : max(held.rounded(), 20)
        })
        defer { device.stop() }
        let pump = SerialInstrument(name: "pump", spec: Self.pump, line: SerialLine(path: device.path, timeout: 5))
        try await pump.write("flow", .real(5.123))   // reads back 5.12: within half the last digit
        try await pump.write("speed", .real(300.7))  // 300.7 within 2 rpm
        await #expect { try await pump.write("flow", .real(20)) } throws: {
            ($0 as? LabError)?.code == .readBackMismatch && "\($0)".contains("wrote 20.0, device holds '10.0'")
        }
        await #expect { try await pump.write("speed", .real(12.5)) } throws: { ($0 as? LabError)?.code == .readBackMismatch }
    }

    @Test func readBackIsRefusedWhereItCannotApply() {
        #expect(throws: ValidationError.self) {
            try DriverSpec.parse("""
                driver: d
                transport: modbus
                channels:
                  sp: { holding: 1, type: float32, access: rw, read_back: true }
                """, path: "d.yaml")
        }
    }
}

enum PropertyRuns {
    static func start(_ definition: ProtocolDefinition) -> RunStart {
        RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source, parameters: [],
                 chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "tester", softwareVersion: "test",
                 startedAt: Date(), startedMonotonic: 0)
    }
}
