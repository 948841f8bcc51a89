import Foundation
import LabCore
import LabSpec
import Testing

/// What the campaign files in examples/toy-lab expand to, and how constraints are read.
@Suite struct CampaignSpecTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../examples/toy-lab").standardizedFileURL

    static func load(_ name: String) throws -> CampaignSpec {
        try CampaignSpec.load(path: examples.appendingPathComponent(name).path)
    }

    static func numbers(_ point: [String: ExprValue]) -> [String: Double] {
        point.compactMapValues { if case .quantity(let q) = $0 { q.value } else { nil } }
    }

    @Test func aGridRunsEveryCombinationLastParameterFastestWithReplicatesTogether() throws {
        guard case .sweep(let sweep) = try Self.load("screen-grid.yaml").plan else { Issue.record("not a sweep"); return }
        #expect(sweep.runCount == 24)
        let points = sweep.points(seed: 1).map(Self.numbers)
        #expect(points.count == 24)
        #expect(points[0] == ["temperature": 60, "residence": 5] && points[1] == points[0])
        #expect(points[2] == ["temperature": 60, "residence": 15])
        #expect(points[6] == ["temperature": 70, "residence": 5])
        #expect(points[23] == ["temperature": 90, "residence": 25])
        #expect(Set(points.map { $0["temperature"]! }) == [60, 70, 80, 90])
    }

    @Test func aLatinHypercubeUsesEverySliceOfEveryRangeOnceAndFollowsItsSeed() throws {
        guard case .sweep(let sweep) = try Self.load("dispense-lhs.yaml").plan else { Issue.record("not a sweep"); return }
        let points = sweep.points(seed: 11).map(Self.numbers)
        #expect(points.count == 8)
        for (name, low, high) in [("volume", 1.0, 10.0), ("rate", 5.0, 40.0)] {
            let slices = points.map { Int((($0[name]! - low) / (high - low) * 8).rounded(.down)) }
            #expect(slices.sorted() == Array(0..<8), "\(name): \(slices)")
        }
        #expect(sweep.points(seed: 11).map(Self.numbers) == points)
        #expect(sweep.points(seed: 12).map(Self.numbers) != points)
    }

    @Test func aLinearConstraintIsReadAsCoefficientsInTheParametersUnits() throws {
        guard case .optimize(let optimization) = try Self.load("constrained-optimisation.yaml").plan else {
            Issue.record("not an optimisation"); return
        }
        let constraint = try #require(optimization.parameterConstraints.first)
        #expect(constraint.relation == .atMost)
        #expect(abs(constraint.coefficients["temperature"]! - 1) < 1e-12)
        #expect(abs(constraint.coefficients["residence"]! - 2) < 1e-12)
        #expect(abs(constraint.bound - 150) < 1e-9)
        #expect(constraint.holds(["temperature": 100, "residence": 25]))
        #expect(!constraint.holds(["temperature": 110, "residence": 25]))
        #expect(optimization.outcomeConstraints.count == 1)
        #expect(optimization.objectives.map(\.output) == ["yield"] && optimization.objectives[0].maximize)
        #expect(optimization.batchSize == 2 && optimization.initialPoints == 8 && optimization.onFailure == .avoid)
        #expect(optimization.stopAfterNoImprovement == 12 && optimization.stopAtTarget == 42)
    }

    /// Loads a campaign on the example reactor that maximises yield in 10 runs, with `extra` lines
    /// added under `optimize:`, from a file named `name`.
    static func reactorCampaign(_ name: String, _ extra: String) throws -> CampaignSpec {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("campaign-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("\(name).yaml").path
        try """
            serendip: 1
            campaign: \(name)
            protocol: \(examples.path)/../../protocols/reactor-yield.yaml
            lab: \(examples.path)/lab.yaml
            optimize:
              maximize: yield
              budget: 10
            \(extra)
            """.write(toFile: file, atomically: true, encoding: .utf8)
        return try CampaignSpec.load(path: file)
    }

    @Test func aConstraintInOtherUnitsIsConvertedToTheParametersUnits() throws {
        // 1 h is 60 min: the coefficient of residence (declared in min) must come out as 1/60 per min.
        let campaign = try Self.reactorCampaign("units", "  constraints:\n    - $residence <= 0.25 h")
        guard case .optimize(let optimization) = campaign.plan else { Issue.record("not an optimisation"); return }
        let constraint = try #require(optimization.parameterConstraints.first)
        #expect(constraint.holds(["residence": 15]) && !constraint.holds(["residence": 15.5]))
    }

    @Test func aTransformIsReadAndAnUnknownOneNamesItsPlaceAndTheChoices() throws {
        guard case .optimize(let optimization) = try Self.reactorCampaign("power", "  transform: power").plan else {
            Issue.record("not an optimisation"); return
        }
        #expect(optimization.transform == .power)
        do {
            _ = try Self.reactorCampaign("cube_root", "  transform: cube_root")
            Issue.record("an unknown transform was accepted")
        } catch {
            let text = String(describing: error)
            #expect(text.contains("cube_root.yaml:8:14") && text.contains("unknown transform 'cube_root'"), "\(text)")
            #expect(text.contains("auto, none, log, power"), "\(text)")
        }
    }

    @Test func whereTheBestIsExpectedIsReadAndInsideByDefault() throws {
        guard case .optimize(let given) = try Self.reactorCampaign("anywhere", "  expect_best: anywhere").plan,
              case .optimize(let unsaid) = try Self.reactorCampaign("unsaid", "  transform: auto").plan else {
            Issue.record("not an optimisation"); return
        }
        #expect(given.expectBest == .anywhere && unsaid.expectBest == .inside)
        for (name, value, message) in [("edges", "edges", "unknown expect_best 'edges'"), ("listed", "[inside]", "expect_best must be a single value")] {
            do {
                _ = try Self.reactorCampaign(name, "  expect_best: \(value)")
                Issue.record("expect_best: \(value) was accepted")
            } catch {
                let text = String(describing: error)
                #expect(text.contains("\(name).yaml:8:16") && text.contains(message) && text.contains("use inside, anywhere"), "\(text)")
            }
        }
    }

    /// Writes `protocolText` and a sweep campaign over it on the example lab (holding `fixed`), and
    /// returns the diagnostics of loading the campaign (none: it loaded).
    static func campaignDiagnostics(protocol protocolText: String, fixed: String) throws -> [Diagnostic] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("campaign-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try protocolText.write(to: dir.appendingPathComponent("p.yaml"), atomically: true, encoding: .utf8)
        let file = dir.appendingPathComponent("c.yaml").path
        try """
            serendip: 1
            campaign: c
            protocol: p.yaml
            lab: \(examples.path)/lab.yaml
            fixed: { \(fixed) }
            sweep:
              vary:
                temperature: [60 degC, 70 degC]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        do { _ = try CampaignSpec.load(path: file) } catch let error as ValidationError { return error.diagnostics }
        return []
    }

    static func reactorProtocol(role: String = "reactor", driver: String = "thermo-reactor", setting: String = "$temperature") -> String {
        """
        serendip: 1
        name: heat
        instruments:
          \(role): \(driver)
        parameters:
          temperature: { type: real, unit: degC, range: [25, 120] }
          residence: { type: real, unit: min, range: [1, 30], default: 5 min }
        steps:
          - set: \(role).setpoint
            to: \(setting)
          - hold: $residence
        """
    }

    @Test func aCampaignOnAnInvalidProtocolReportsOnlyTheProtocolsErrorsNotItsOwnValidKeys() throws {
        let diagnostics = try Self.campaignDiagnostics(protocol: Self.reactorProtocol(setting: "$temperatur"), fixed: "residence: 10 min")
        #expect(diagnostics.count == 1, "\(diagnostics)")
        #expect(diagnostics.first?.message.contains("unknown parameter '$temperatur'") == true, "\(diagnostics)")
    }

    @Test func aCampaignWhoseProtocolNeedsMoreInstrumentsOfATypeThanTheLabHasFailsAtItsProtocolKey() throws {
        // The example lab has four reactors; this protocol needs five.
        let fiveReactors = Self.reactorProtocol(role: "heater").replacingOccurrences(
            of: "  heater: thermo-reactor\n", with: "  heater: thermo-reactor\n  cooler: thermo-reactor\n"
                + "  r3: thermo-reactor\n  r4: thermo-reactor\n  r5: thermo-reactor\n")
        let diagnostics = try Self.campaignDiagnostics(protocol: fiveReactors, fixed: "residence: 10 min")
        let problem = try #require(diagnostics.first, "the campaign validated")
        #expect(problem.location.file.hasSuffix("c.yaml") && problem.location.line == 3 && problem.location.column == 11, "\(problem)")
        #expect(problem.message.contains("needs 5 thermo-reactor instrument(s), for 'cooler' (p.yaml:5), 'heater' (p.yaml:4), 'r3' (p.yaml:6)"), "\(problem)")
        #expect(problem.message.contains("the lab 'toy-lab' has 4"), "\(problem)")
        #expect(problem.hint?.contains("reactor (thermo-reactor)") == true && problem.hint?.contains("spectro (uv-vis)") == true, "\(problem)")
    }

    @Test func aRoleIsServedByAnyInstrumentOfItsDriverTypeWhateverItsName() throws {
        // 'spectro' is a uv-vis in the lab, but the protocol's 'spectro' is a thermo-reactor: the lab's reactor serves it.
        let diagnostics = try Self.campaignDiagnostics(protocol: Self.reactorProtocol(role: "spectro"), fixed: "residence: 10 min")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
    }
}
