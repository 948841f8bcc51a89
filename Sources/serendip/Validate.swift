import ArgumentParser
import Foundation
import LabCore
import LabSpec

/// `serendip validate`: check protocol files before anything runs.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check protocols, campaigns, driver files and lab configs, each as the kind of file it is.",
        discussion: """
            A protocol is checked against the drivers of --lab; without --lab, against drivers/NAME.yaml \
            found in the protocol's folder or one above it (or in the current directory). A campaign names \
            its own lab and protocol and is checked against both.
            Exit status: 0 valid, 1 invalid, 2 could not read.
            """)

    @Argument(help: "Protocol, campaign, driver or lab config files.")
    var files: [String]

    @Option(help: "A lab config whose driver files the protocols are checked against.")
    var lab: String?

    @Flag(help: "Print one JSON object per file on standard output instead of text.")
    var json = false

    func run() throws {
        var labDrivers: [String: DriverSpec]?
        if let lab {
            do { labDrivers = try LabConfig.load(path: lab).drivers } catch let error as LabSpec.ValidationError {
                // An invalid lab or driver file is invalid (1); 2 is for one that cannot be read at all.
                if json { printJSON(file: lab, kind: "lab config", diagnostics: error.diagnostics, notes: []) } else { printError(error.description) }
                throw ExitCode(1)
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
        var status: Int32 = 0
        for file in files {
            // Without a lab, each driver a protocol names is looked for near it; those not found
            // leave their channels unchecked, which the person is told rather than left to guess.
            let nearby = labDrivers == nil ? SpecFile.nearbyDrivers(for: file) : (found: [:], missing: [:])
            let notes = nearby.missing.sorted { $0.key < $1.key }.map { name, why in
                "channels of \(name) instruments are not checked (names, units, limits): \(why); pass --lab LAB.yaml to check them"
            }
            do {
                let checked = try SpecFile.load(path: file, drivers: labDrivers ?? nearby.found, complete: labDrivers != nil)
                let unchecked = checked.kind == "protocol" ? notes : []
                if json { printJSON(file: file, kind: checked.kind, diagnostics: [], notes: unchecked) } else {
                    print("\(file): valid (\(checked.kind))")
                    for note in unchecked { print("  note: \(note)") }
                }
            } catch let error as LabSpec.ValidationError {
                if json { printJSON(file: file, kind: nil, diagnostics: error.diagnostics, notes: notes) } else {
                    printError(error.description)
                    for note in notes { printError("  note: \(note)") }
                }
                status = max(status, 1)
            } catch {
                // The file itself could not be read (missing, not a regular file, too large, not UTF-8).
                printError("\(error)")
                status = 2
            }
        }
        if status != 0 { throw ExitCode(status) }
    }

    private func printJSON(file: String, kind: String?, diagnostics: [Diagnostic], notes: [String]) {
        struct Entry: Encodable { var file: String; var line: Int; var column: Int; var message: String; var hint: String? }
        struct Report: Encodable { var file: String; var kind: String?; var valid: Bool; var diagnostics: [Entry]; var notes: [String] }
        let report = Report(file: file, kind: kind, valid: diagnostics.isEmpty, diagnostics: diagnostics.map {
            Entry(file: $0.location.file, line: $0.location.line, column: $0.location.column, message: $0.message, hint: $0.hint)
        }, notes: notes)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try! encoder.encode(report), as: UTF8.self))
    }

    private func printError(_ text: String) {
        Output.error(text)
    }
}
