import Foundation
import LabCore
import LabSpec
import Testing

/// Every example in docs/ is checked, so the documentation cannot drift from what the code accepts.
@Suite struct DocumentationTests {
    static func blocks(_ doc: String, language: String) throws -> [String] {
        let text = try String(contentsOfFile: Repository.path("docs/\(doc)"), encoding: .utf8)
        // A fence of the asked language opens a block; the next fence closes it.
        return text.components(separatedBy: "```\(language)\n").dropFirst().map {
            $0.components(separatedBy: "```")[0].trimmingCharacters(in: .newlines)
        }
    }

    static var drivers: [String: DriverSpec] {
        get throws { try LabConfig.load(path: Repository.path("examples/toy-lab/lab.yaml")).drivers }
    }

    @Test func everyProtocolExampleValidatesAgainstTheDriverFiles() throws {
        let protocols = try Self.blocks("protocol-language.md", language: "yaml").filter { $0.hasPrefix("serendip:") }
        #expect(!protocols.isEmpty)
        for text in protocols { _ = try ProtocolParser.parse(text, path: "doc.yaml", drivers: Self.drivers) }
    }

    @Test func theDocumentedErrorIsWhatTheValidatorPrints() throws {
        let example = try #require(Self.blocks("protocol-language.md", language: "yaml").first { $0.hasPrefix("serendip:") })
        let documented = try #require(Self.blocks("protocol-language.md", language: "").first { $0.hasPrefix("bad.yaml") })
        let broken = example.replacingOccurrences(of: "set: reactor.setpoint", with: "set: reactor.setpiont")
        let drivers = try Self.drivers
        do {
            _ = try ProtocolParser.parse(broken, path: "bad.yaml", drivers: drivers)
            Issue.record("expected a validation error")
        } catch {
            #expect(error.diagnostics.first?.rendered(source: broken) == documented)
        }
    }

    static let campaignFiles = ["campaign.yaml", "screen-grid.yaml", "dispense-lhs.yaml", "constrained-optimisation.yaml"]
        .map { Repository.path("examples/toy-lab/\($0)") }

    @Test func everyCampaignExampleIsAShippedCampaignThatLoads() throws {
        let examples = try Self.blocks("campaigns.md", language: "yaml").filter { $0.hasPrefix("serendip: 1\ncampaign:") }
        #expect(examples.count == Self.campaignFiles.count)
        let shipped = try Self.campaignFiles.map { try String(contentsOfFile: $0, encoding: .utf8) }
        for text in examples { #expect(shipped.contains { $0.contains(text) }, "not shipped in examples/toy-lab:\n\(text)") }
        for file in Self.campaignFiles { _ = try CampaignSpec.load(path: file) }
    }

    @Test func everyDriverExampleParsesAndMatchesTheShippedDriver() throws {
        let examples = try Self.blocks("drivers.md", language: "yaml").filter { $0.hasPrefix("driver:") }
        #expect(examples.count == 2)
        for text in examples {
            let spec = try DriverSpec.parse(text, path: "doc.yaml")
            let shipped = try String(contentsOfFile: Repository.path("drivers/\(spec.name).yaml"), encoding: .utf8)
            #expect(shipped.contains(text), "docs/drivers.md and drivers/\(spec.name).yaml differ")
        }
    }

    @Test func theLabConfigExampleIsTheShippedOne() throws {
        let text = try #require(Self.blocks("drivers.md", language: "yaml").first { $0.hasPrefix("lab:") })
        let shipped = try String(contentsOfFile: Repository.path("examples/toy-lab/lab.yaml"), encoding: .utf8)
        #expect(shipped.contains(text))
    }
}

/// The interlock examples of docs/drivers.md.
@Suite struct InterlockDocumentationTests {
    @Test func theInterlocksExampleLoadsInALabThatHasItsChannels() throws {
        let example = try #require(try DocumentationTests.blocks("drivers.md", language: "yaml").first { $0.hasPrefix("interlocks:") })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("interlock-doc-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try """
            driver: plant
            transport: modbus
            channels:
              temperature: { input: 0, type: float32, unit: degC }
              pressure:    { input: 2, type: float32, unit: bar }
              sash_closed: { discrete: 0 }
            """.write(to: dir.appendingPathComponent("plant.yaml"), atomically: true, encoding: .utf8)
        let lab = """
            lab: doc
            instruments:
              reactor: { driver: plant.yaml, simulate: true }
              hood:    { driver: plant.yaml, simulate: true }
              pump:    { driver: plant.yaml, simulate: true }

            """ + example + "\n"
        let path = dir.appendingPathComponent("lab.yaml").path
        try lab.write(toFile: path, atomically: true, encoding: .utf8)
        let config = try LabConfig.load(path: path)
        #expect(config.interlocks.map(\.name) == ["hood-sash", "reactor-hot", "too-cold", "pressure"])
        #expect(config.interlocks.last?.stops == ["hood", "pump", "reactor"])
    }

    @Test func theDocumentedErrorIsWhatAMisspeltChannelInTheExampleLabGives() throws {
        let shipped = try String(contentsOfFile: Repository.path("examples/toy-lab/lab.yaml"), encoding: .utf8)
        let broken = shipped.replacingOccurrences(of: "channel: reactor.temperature", with: "channel: reactor.temprature")
            .replacingOccurrences(of: "../../drivers/", with: Repository.path("drivers") + "/")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("interlock-doc-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("lab.yaml").path
        try broken.write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(throws: ValidationError.self) { try LabConfig.load(path: path) }
        let problem = try #require(error.diagnostics.first)
        #expect(error.diagnostics.count == 1)
        let text = "lab.yaml:\(problem.location.line):\(problem.location.column): \(problem.message) — \(problem.hint ?? "")"
        let doc = try String(contentsOfFile: Repository.path("docs/drivers.md"), encoding: .utf8)
            .replacingOccurrences(of: "\n", with: " ")
        let quoted = doc.contains(text)
        #expect(quoted, "docs/drivers.md should quote: \(text)")
    }
}
