import ArgumentParser
import Foundation
import LabCore
import LabSpec

/// `serendip validate`: check protocol files before anything runs.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check protocol files: syntax, references, units; with --lab also channels, access and limits.",
        discussion: "Exit status: 0 valid, 1 invalid, 2 could not read.")

    @Argument(help: "Protocol files.")
    var files: [String]

    @Option(help: "A lab config whose driver files the protocols are checked against.")
    var lab: String?

    func run() throws {
        var drivers: [String: DriverSpec] = [:]
        if let lab {
            do { drivers = try LabConfig.load(path: lab).drivers } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
        var status: Int32 = 0
        for file in files {
            let text: String
            do {
                guard let data = FileManager.default.contents(atPath: file), let decoded = String(data: data, encoding: .utf8) else {
                    throw LabError(.invalidFile, "cannot read \(file) as UTF-8 text")
                }
                text = decoded
            } catch {
                printError("\(error)")
                status = 2
                continue
            }
            do {
                _ = try ProtocolParser.parse(text, path: file, drivers: drivers)
                print("\(file): valid")
            } catch {
                printError(error.description)
                status = max(status, 1)
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    private func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
