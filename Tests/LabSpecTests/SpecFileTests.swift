import Foundation
import LabCore
import LabSpec
import Testing

/// `serendip validate` takes any of Serendip's files and checks each as the kind it is.
@Suite struct SpecFileTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../..").standardizedFileURL

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func temporaryFile(_ name: String, _ text: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specfile-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent(name).path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    @Test func eachKindOfFileIsRecognisedAndCheckedAsThatKind() throws {
        #expect(try SpecFile.load(path: Self.path("drivers/uv-vis.yaml")).kind == "driver file")
        #expect(try SpecFile.load(path: Self.path("examples/toy-lab/lab.yaml")).kind == "lab config")
        #expect(try SpecFile.load(path: Self.path("examples/toy-lab/screen-grid.yaml")).kind == "campaign")
        #expect(try SpecFile.load(path: Self.path("protocols/reactor-yield.yaml")).kind == "protocol")
    }

    @Test func aBrokenDriverFileGetsTheDriverFilesOwnDiagnostics() throws {
        let file = try Self.temporaryFile("d.yaml", "driver: d\ntransport: carrier-pigeon\nchannels: {}\n")
        #expect {
            _ = try SpecFile.load(path: file)
        } throws: { error in
            let text = String(describing: error)
            return text.contains("unknown transport 'carrier-pigeon'") && !text.contains("serendip")
        }
    }

    @Test func aFileOfNoKnownKindSaysWhichKindsThereAre() throws {
        let file = try Self.temporaryFile("x.yaml", "colour: blue\n")
        #expect {
            _ = try SpecFile.load(path: file)
        } throws: { error in
            guard let error = error as? ValidationError, error.diagnostics.count == 1, let d = error.diagnostics.first else { return false }
            return d.message.contains("not a file Serendip knows") && d.hint?.contains("a driver file 'driver:', a lab config 'lab:'") == true
        }
    }

    @Test func aProtocolFindsTheDriversOfItsInstrumentsInADriversFolderAboveIt() throws {
        let nearby = SpecFile.nearbyDrivers(for: Self.path("protocols/stability-hold.yaml"))
        #expect(nearby.missing.isEmpty, "\(nearby.missing)")
        #expect(nearby.found["thermo-reactor"]?.channel("setpoint")?.limits == 0...150)
        _ = try SpecFile.load(path: Self.path("protocols/stability-hold.yaml"), drivers: nearby.found, complete: false)
    }

    @Test func aProtocolWhoseDriversAreNowhereValidatesWithoutFalseUnitErrorsAndNamesTheMissingDriver() throws {
        let text = try String(contentsOfFile: Self.path("protocols/stability-hold.yaml"), encoding: .utf8)
        let file = try Self.temporaryFile("hold.yaml", text)
        let nearby = SpecFile.nearbyDrivers(for: file, workingDirectory: FileManager.default.temporaryDirectory.path)
        #expect(nearby.found.isEmpty && nearby.missing["thermo-reactor"]?.contains("no drivers/thermo-reactor.yaml") == true)
        // `slope(t) in K/h` reads a series whose unit only the driver knows: it is not checked, not refused.
        #expect(try SpecFile.load(path: file, drivers: nearby.found, complete: false).kind == "protocol")
    }

    @Test func aDriverFoundNearbyStillCatchesAWriteOutsideItsLimits() throws {
        let text = try String(contentsOfFile: Self.path("protocols/stability-hold.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "to: 25 degC", with: "to: 500 degC")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specfile-\(UUID())")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("protocols/deeper"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("drivers"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.path("drivers/thermo-reactor.yaml"),
                                         toPath: dir.appendingPathComponent("drivers/thermo-reactor.yaml").path)
        let file = dir.appendingPathComponent("protocols/deeper/hot.yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let nearby = SpecFile.nearbyDrivers(for: file)
        #expect(nearby.missing.isEmpty)
        #expect {
            _ = try SpecFile.load(path: file, drivers: nearby.found, complete: false)
        } throws: { String(describing: $0).contains("outside the limits 0…150 degC") }
    }
}
