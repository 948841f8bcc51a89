import Foundation
import LabCore
import LabDrivers
import LabSpec
import Testing

/// The driver files shipped in drivers/, simulated from their own `simulation:` blocks in
/// examples/instrument-lab and driven over their real transports (RTU and serial on pseudo-terminals,
/// Modbus TCP on a socket), and the example protocol of each, validated and simulated.
@Suite(.serialized) struct ShippedDriverTests {
    static let lab = Repository.path("examples/instrument-lab/lab.yaml")
    /// The example protocol of each shipped driver file, in protocols/.
    static let protocols = ["oven-hold", "gas-dose", "syringe-infusion", "weigh-sample"]

    /// The lab's simulators on a virtual clock, its instruments connected.
    struct Bench {
        let clock = VirtualClock()
        let simulators: SimulatedLab
        let instruments: [String: any Instrument]

        init() throws {
            let config = try LabConfig.load(path: ShippedDriverTests.lab)
            simulators = try SimulatedLab(config: config, clock: clock)
            instruments = try InstrumentConnector.connect(config, simulators: simulators)
        }

        func read(_ instrument: String, _ channel: String) async throws -> Double {
            try await instruments[instrument]!.read(channel).asDouble
        }
    }

    @Test func theTemperatureControllerHeatsOnlyWhileRunningOverModbusRTU() async throws {
        let bench = try Bench()
        defer { bench.simulators.stop() }
        let oven = bench.instruments["oven"]!
        try await oven.write("setpoint", .real(60))
        bench.clock.rewind(to: 600)
        #expect(abs(try await bench.read("oven", "temperature") - 25) < 0.3, "stopped: it stays at room temperature")
        try await oven.write("running", .bool(true))
        bench.clock.rewind(to: 1800)
        #expect(abs(try await bench.read("oven", "temperature") - 60) < 0.3)
        #expect(try await bench.read("oven", "alarm") == 0)
        #expect(try await oven.identifyDevice().deviceAnswer == "Serendip,SIM-TEMPERATURE-CONTROLLER,0001,1.0")
    }

    @Test func theMassFlowControllerSettlesOnItsSetpointAndTotalisesOverModbusTCP() async throws {
        let bench = try Bench()
        defer { bench.simulators.stop() }
        try await bench.instruments["mfc"]!.write("setpoint", .real(100))
        bench.clock.rewind(to: 60)
        #expect(abs(try await bench.read("mfc", "flow") - 100) < 1)
        // 100 mL/min for a minute, less what the 1.5 s lag held back.
        #expect(abs(try await bench.read("mfc", "total") - (100 - 100 * 1.5 / 60)) < 0.1)
    }

    @Test func theSyringePumpCountsWhatItDispensedWhileRunningOverASerialLine() async throws {
        let bench = try Bench()
        defer { bench.simulators.stop() }
        let pump = bench.instruments["syringe"]!
        try await pump.write("rate", .real(2))
        #expect(try await bench.read("syringe", "status") == 0)
        try await pump.write("running", .bool(true))
        #expect(try await bench.read("syringe", "status") == 1)
        bench.clock.rewind(to: 90)
        try await pump.write("running", .bool(false))
        bench.clock.rewind(to: 300)
        #expect(abs(try await bench.read("syringe", "dispensed") - 3) < 1e-9)
    }

    @Test func theSCPIBalanceSaysWhatItIsAndWeighsItsScript() async throws {
        let bench = try Bench()
        defer { bench.simulators.stop() }
        let identity = try await bench.instruments["balance"]!.identifyDevice()
        #expect(identity.deviceQuery == "*IDN?" && identity.deviceAnswer == "Serendip,SIM-SCPI-BALANCE,0001,1.0")
        bench.clock.rewind(to: 60)
        #expect(abs(try await bench.read("balance", "weight") - 64.8) < 0.002)
        #expect(try await bench.read("balance", "stable") == 1)
    }

    @Test(arguments: protocols)
    func theExampleProtocolValidatesAndSimulatesAgainstTheInstrumentLab(name: String) throws {
        let file = Repository.path("protocols/\(name).yaml")
        let validate = try runToEnd(Child.executable.path, ["validate", "--lab", Self.lab, file], withStandardError: true)
        #expect(validate.status == 0, "\(validate.output)")
        let simulate = try runToEnd(Child.executable.path, ["simulate", "--lab", Self.lab, file], withStandardError: true)
        #expect(simulate.status == 0, "\(simulate.output)")
        #expect(simulate.output.contains("outcome: completed"), "\(simulate.output)")
    }
}
