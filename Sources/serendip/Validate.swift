import ArgumentParser
import Foundation
import LabCore
import LabSpec

/// `serendip validate`: check protocol files before anything runs.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check protocol and campaign files: syntax, references, units; with --lab also channels, access and limits.",
        discussion: "Exit status: 0 valid, 1 invalid, 2 could not read.")

    @Argument(help: "Protocol or campaign files.")
    var files: [String]

    @Option(help: "A lab config whose driver files the protocols are checked against.")
    var lab: String?

    @Flag(help: "Print one JSON object per file on standard output instead of text.")
    var json = false

    func run() throws {
        var drivers: [String: DriverSpec] = [:]
        if let lab {
            do { drivers = try LabConfig.load(path: lab).drivers } catch let error as LabSpec.ValidationError {
                // An invalid lab or driver file is invalid (1); 2 is for one that cannot be read at all.
                if json { printJSON(file: lab, diagnostics: error.diagnostics) } else { printError(error.description) }
                throw ExitCode(1)
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
        var status: Int32 = 0
        for file in files {
            do {
                // A campaign names its own lab and protocol, and is checked against both.
                _ = try SpecFile.load(path: file, drivers: drivers)
                if json { printJSON(file: file, diagnostics: []) } else { print("\(file): valid") }
            } catch let error as LabSpec.ValidationError {
                if json { printJSON(file: file, diagnostics: error.diagnostics) } else { printError(error.description) }
                status = max(status, 1)
            } catch {
                // The file itself could not be read (missing, not a regular file, too large, not UTF-8).
                printError("\(error)")
                status = 2
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    private func printJSON(file: String, diagnostics: [Diagnostic]) {
        struct Entry: Encodable { var file: String; var line: Int; var column: Int; var message: String; var hint: String? }
        struct Report: Encodable { var file: String; var valid: Bool; var diagnostics: [Entry] }
        let report = Report(file: file, valid: diagnostics.isEmpty, diagnostics: diagnostics.map {
            Entry(file: $0.location.file, line: $0.location.line, column: $0.location.column, message: $0.message, hint: $0.hint)
        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try! encoder.encode(report), as: UTF8.self))
    }

    private func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
