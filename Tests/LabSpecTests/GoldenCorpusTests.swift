import Foundation
import LabCore
import LabSpec
import Testing

/// Every file under Corpus/ is malformed or hostile. Each names, in its `# expect: LINE:COLUMN text`
/// header, the diagnostic it must produce; none may crash or hang the validator. Files with a
/// `campaign:` key are campaigns, checked against the shipped protocol and lab they name.
@Suite struct GoldenCorpusTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")
    static let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
        .filter { $0.hasSuffix(".yaml") }.sorted()
    static let drivers: [String: DriverSpec] = {
        let root = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try! LabConfig.load(path: root.appendingPathComponent("examples/toy-lab/lab.yaml").path).drivers
    }()

    @Test func theCorpusHasAtLeastAHundredFiles() {
        #expect(Self.files.count >= 100)
    }

    @Test(arguments: files)
    func givesItsExpectedDiagnosticAtItsLineAndColumn(file: String) throws {
        let path = Self.directory.appendingPathComponent(file).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let header = try #require(text.split(separator: "\n").first { $0.contains("# expect: ") })
        let expectation = header[header.range(of: "# expect: ")!.upperBound...]
        let position = expectation.prefix { $0 != " " }.split(separator: ":").compactMap { Int($0) }
        let fragment = String(expectation.drop { $0 != " " }.dropFirst())
        do {
            _ = try SpecFile.load(path: path, drivers: Self.drivers)
            Issue.record("\(file) validated, but it should fail with '\(fragment)'")
        } catch let error as ValidationError {
            let match = error.diagnostics.first { d in
                d.location.line == position[0] && d.location.column == position[1]
                    && (d.message + " " + (d.hint ?? "")).contains(fragment)
            }
            #expect(match != nil, "\(file): expected \(position[0]):\(position[1]) '\(fragment)', got:\n\(error.diagnostics.map(\.description).joined(separator: "\n"))")
        }
    }
}
