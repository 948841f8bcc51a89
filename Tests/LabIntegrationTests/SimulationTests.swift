import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import Testing

@Suite struct SimulationTests {
    static let lab = Repository.path("examples/toy-lab/lab.yaml")

    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sim-\(UUID()).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func estimatesTheDurationOfHoldsWaitsAndMeasurementsExactly() async throws {
        let path = try Self.write("""
            serendip: 1
            name: timing
            instruments: { spectro: uv-vis }
            steps:
              - set: spectro.lamp
                to: true
              - hold: 10 min
              - measure: { channel: spectro.absorbance, as: a, repeat: 4, every: 30 s }
              - repeat: 3
                steps:
                  - hold: 1 h
            """)
        let reports = try await ProtocolSimulation.run(protocolPath: path, labPath: Self.lab, parameters: [:], allBranches: false)
        #expect(reports.count == 1)
        #expect(reports[0].duration == 600 + 90 + 3 * 3600)
        #expect(reports[0].result.outcome == .completed)
    }

    @Test func walksBothSidesOfEveryConditional() async throws {
        let path = try Self.write("""
            serendip: 1
            name: branches
            instruments: { reactor: thermo-reactor }
            parameters:
              t: { type: real, unit: degC, range: [20, 100] }
            steps:
              - if: $t > 50
                then:
                  - log: hot
                else:
                  - log: cold
              - if: $t > 90
                then:
                  - log: very hot
            """)
        let reports = try await ProtocolSimulation.run(protocolPath: path, labPath: Self.lab, parameters: ["t": "60 degC"],
                                                       allBranches: true)
        var walked: Set<String> = []
        for report in reports { for b in report.branches { walked.insert("\(b.stepID):\(b.taken)") } }
        #expect(walked == ["1:true", "1:false", "4:true", "4:false"])
        #expect(reports.count == 3)
        #expect(reports[0].forced.isEmpty)
    }

    @Test func theVirtualRunReproducesTheChemistryInNoWallTime() async throws {
        let started = ContinuousClock.now
        let reports = try await ProtocolSimulation.run(
            protocolPath: Repository.path("protocols/reactor-yield.yaml"), labPath: Self.lab,
            parameters: ["temperature": "80 degC", "residence": "14 min"], allBranches: false)
        guard case .quantity(let yield)? = reports[0].result.outputs["yield"] else { Issue.record("no yield"); return }
        #expect(abs(yield.value - 100 * ToyChemistry.isothermalYield(celsius: 80, minutes: 14)) < 1.5)
        #expect(reports[0].duration > 14 * 60)
        #expect(ContinuousClock.now - started < .seconds(20))
    }

    @Test func refusesAParameterTheProtocolDoesNotHave() async throws {
        await #expect(throws: LabError.self) {
            try await ProtocolSimulation.run(protocolPath: Repository.path("protocols/reactor-yield.yaml"), labPath: Self.lab,
                                             parameters: ["temprature": "80 degC"], allBranches: false)
        }
    }
}

@Suite struct ShippedProtocolTests {
    static let files = (try? FileManager.default.contentsOfDirectory(atPath: Repository.path("protocols")))?
        .filter { $0.hasSuffix(".yaml") }.sorted() ?? []

    @Test func thereAreAtLeastFiveExampleProtocols() { #expect(Self.files.count >= 5) }

    @Test(arguments: files)
    func everyShippedProtocolSimulatesToCompletion(file: String) async throws {
        let path = Repository.path("protocols/\(file)")
        var parameters: [String: String] = [:]
        if file == "reactor-yield.yaml" { parameters = ["temperature": "80 degC", "residence": "14 min"] }
        // The shipped instrument drivers' protocols run in their own example lab.
        let lab = ShippedDriverTests.protocols.contains(file.replacingOccurrences(of: ".yaml", with: "")) ? ShippedDriverTests.lab : SimulationTests.lab
        let reports = try await ProtocolSimulation.run(protocolPath: path, labPath: lab,
                                                       parameters: parameters, allBranches: true)
        for report in reports { #expect(report.result.outcome == .completed, "\(file): \(report.result.error ?? "")") }
        #expect(reports[0].duration > 0)
    }
}
