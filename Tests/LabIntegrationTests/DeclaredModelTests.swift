import Foundation
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Testing

/// The simulator a driver file's `simulation:` block declares, on a virtual clock.
struct DeclaredModelTests {
    static func model(_ simulation: String, seed: UInt64 = 1, clock: VirtualClock) throws -> DeclaredModel {
        let spec = try DriverSpec.parse("""
            driver: oven
            transport: modbus
            channels:
              setpoint:    { holding: 0, type: float32, unit: degC, access: rw }
              temperature: { input: 0, type: float32, unit: degC }
              rate:        { holding: 2, type: float32, unit: mL/min, access: rw }
              dispensed:   { input: 2, type: float32, unit: mL }
              running:     { coil: 0, access: rw }
              status:      { input: 4 }
              pressure:    { input: 5, type: float32, unit: bar }
            simulation:
            \(simulation)
            """, path: "oven.yaml")
        return DeclaredModel(spec: spec, clock: clock, seed: seed)
    }

    @Test func aFollowerLagsTowardItsChannelByItsTimeConstant() throws {
        let clock = VirtualClock()
        let oven = try Self.model("  temperature: { follows: setpoint, lag: 2 min, start: 25 degC }", clock: clock)
        #expect(try oven.value(of: "temperature") == 25)
        oven.didWrite("setpoint", 60)
        clock.rewind(to: 120)
        // One time constant: 1 − 1/e of the way from 25 to 60.
        #expect(abs(try oven.value(of: "temperature") - (60 - 35 / M_E)) < 1e-9)
        clock.rewind(to: 3600)
        #expect(abs(try oven.value(of: "temperature") - 60) < 1e-9)
    }

    @Test func aGatedFollowerHeadsBackToItsStartWhileItsGateIsOff() throws {
        let clock = VirtualClock()
        let oven = try Self.model("""
              temperature: { follows: setpoint, lag: 10 s, start: 25 degC, while: running }
              status: { follows: running }
            """, clock: clock)
        oven.didWrite("setpoint", 80)
        clock.rewind(to: 600)
        #expect(abs(try oven.value(of: "temperature") - 25) < 1e-9, "not running: the setpoint is not followed")
        oven.didWrite("running", 1)
        #expect(try oven.value(of: "status") == 1, "a follower without lag is its channel at once")
        clock.rewind(to: 1200)
        #expect(abs(try oven.value(of: "temperature") - 80) < 1e-6)
        oven.didWrite("running", 0)
        clock.rewind(to: 1800)
        #expect(abs(try oven.value(of: "temperature") - 25) < 1e-6)
        #expect(try oven.value(of: "status") == 0)
    }

    @Test func anIntegralAddsUpItsRateOnlyWhileItsGateIsOn() throws {
        let clock = VirtualClock()
        let pump = try Self.model("  dispensed: { integrates: rate, while: running, start: 1 mL }", clock: clock)
        pump.didWrite("rate", 6)               // mL/min
        clock.rewind(to: 60)
        #expect(try pump.value(of: "dispensed") == 1, "stopped")
        pump.didWrite("running", 1)
        clock.rewind(to: 90)
        pump.didWrite("rate", 12)
        clock.rewind(to: 120)
        pump.didWrite("running", 0)
        clock.rewind(to: 600)
        // 1 mL + 30 s at 6 mL/min + 30 s at 12 mL/min.
        #expect(abs(try pump.value(of: "dispensed") - 10) < 1e-9)
    }

    @Test func anIntegralOfALaggingFollowerIsExactHoweverSeldomItIsRead() throws {
        let clock = VirtualClock()
        let model = try DeclaredModel(spec: DriverSpec.parse("""
            driver: mfc
            transport: modbus
            channels:
              setpoint: { holding: 0, type: float32, unit: mL/min, access: rw }
              flow:     { input: 0, type: float32, unit: mL/min }
              total:    { input: 2, type: float64, unit: mL }
            simulation:
              flow:  { follows: setpoint, lag: 10 s }
              total: { integrates: flow }
            """, path: "mfc.yaml"), clock: clock, seed: 1)
        model.didWrite("setpoint", 60)
        clock.rewind(to: 600)
        // 60 mL/min for 10 min, less the 10 s × 60 mL/min the lag held back.
        #expect(abs(try model.value(of: "total") - (600 - 10)) < 1e-9)
    }

    @Test func aReadOnlyHoldingRegisterServesTheModelsValue() async throws {
        let spec = try DriverSpec.parse("""
            driver: counter
            transport: modbus
            channels:
              status: { holding: 3, type: uint16 }
            simulation:
              status: { value: 7 }
            """, path: "counter.yaml")
        let simulator = try ModbusSimulator(spec: spec, model: DeclaredModel(spec: spec, clock: VirtualClock(), seed: 1))
        defer { simulator.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: simulator.port, unit: 1, responseTimeout: 2))
        #expect(try await client.readRegisters(.holding, address: 3, count: 1) == [7])
    }

    @Test func aScriptPlaysStraightLinesBetweenItsPointsAndHoldsItsLast() throws {
        let clock = VirtualClock(start: 100)
        let model = try Self.model("  pressure: { script: [[0 s, 1], [10 s, 3], [20 s, 3], [30 s, 0]] }", clock: clock)
        var readings: [Double] = []
        for t in [100.0, 105, 115, 125, 130, 500] {
            clock.rewind(to: t)
            readings.append(try model.value(of: "pressure"))
        }
        #expect(readings == [1, 2, 3, 1.5, 0, 0])
    }

    @Test func theSameSeedGivesTheSameNoisyReadingsAndAnotherSeedOthers() throws {
        let readings = { (seed: UInt64) throws -> [Double] in
            let model = try Self.model("  pressure: { value: 1.2, noise: 0.01 }", seed: seed, clock: VirtualClock())
            return try (0..<20).map { _ in try model.value(of: "pressure") }
        }
        let first = try readings(7)
        #expect(try readings(7) == first)
        #expect(try readings(8) != first)
        let mean = first.reduce(0, +) / 20
        #expect(abs(mean - 1.2) < 0.01 && Set(first).count == 20, "\(first)")
    }

    @Test func aLabUsesTheDeclaredBehaviourOverTheBuiltInModelOfTheSameName() throws {
        let scratch = Scratch()
        scratch.write("balance.yaml", """
            driver: balance
            transport: serial
            channels:
              mass: { query: "MASS?", unit: g }
            simulation:
              mass: { value: 12.5 g }
            """)
        let lab = scratch.write("lab.yaml", "lab: l\ninstruments:\n  b: { driver: balance.yaml, simulate: true }\n")
        let models = SimulatedLab.models(for: try LabConfig.load(path: lab), clock: VirtualClock())
        #expect(try models["b"]?.value(of: "mass") == 12.5)
    }
}
