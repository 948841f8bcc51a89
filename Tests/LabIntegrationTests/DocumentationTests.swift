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

    @Test func theCampaignExampleLoads() throws {
        let text = try #require(Self.blocks("protocol-language.md", language: "yaml").first { $0.hasPrefix("campaign:") })
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("doc-campaign-\(UUID()).yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let spec = try CampaignSpec.load(path: file)
        #expect(spec.objective == "yield" && spec.budget == 20 && spec.initialPoints == 5)
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
