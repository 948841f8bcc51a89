import Foundation
import GRDB
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging
import Testing

/// Array channels end to end: a spectrum read from the simulated photometer over a real pty, stored
/// as one blob, read back and exported bit for bit; and the driver file's mistakes, positioned.
@Suite(.serialized) struct ArrayMeasurementTests {
    static let protocolText = """
        serendip: 1
        name: spectra
        instruments: { spectro: uv-vis }
        steps:
          - set: spectro.lamp
            to: true
          - measure: { channel: spectro.spectrum, repeat: 3 }
          - measure: { channel: spectro.absorbance }

        """

    /// A data directory with one run of `protocolText` over the toy lab's real transports, and what
    /// the simulated photometer served on its spectrum channel.
    static func storedRun() async throws -> (directory: String, run: Int64, served: [Double]) {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        let directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let definition = try ProtocolParser.parse(protocolText, path: "spectra.yaml", drivers: fixture.lab.drivers)
        let executor = ProtocolExecutor(definition: definition, instruments: fixture.instruments, clock: fixture.clock,
                                        recorder: database, logger: Logger(label: "test"))
        let result = try await executor.run(parameters: [:], start: fixture.start(definition, [:]))
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        try database.pool.close()
        return (directory, result.runID, fixture.simulators.serial["spectro"]?.served["spectrum"] ?? [])
    }

    static let wavelength = ArrayAxis(name: "wavelength", unit: "nm", start: 200, step: 0.5)

    @Test func aSpectrumReadOverASerialLineIsStoredAsOneBlobBitForBitWithItsShapeAxisAndUnit() async throws {
        let (directory, run, served) = try await Self.storedRun()
        let database = try LabDatabase(readingOnly: directory + "/serendip.sqlite")
        let arrays = try database.arrays(run: run)
        #expect(arrays.count == 3)
        #expect(served.count == 3 * 1024)
        #expect(arrays.flatMap(\.values).map(\.bitPattern) == served.map(\.bitPattern))
        for array in arrays {
            #expect(array.shape == [1024] && array.axes == [Self.wavelength] && array.unit == "AU" && array.dtype == "float64")
            #expect(array.series == "spectrum" && array.role == "spectro" && array.channel == "spectrum")
        }
        // One row per spectrum, its bytes little-endian float64; the scalars stay in their own table.
        let raw = try DatabaseQueue(path: directory + "/serendip.sqlite").read { db in
            try Row.fetchAll(db, sql: "SELECT data, shape, axes FROM measurement_array WHERE run_id = ? ORDER BY id", arguments: [run])
        }
        #expect(raw.count == 3)
        let bytes: Data = raw[0]["data"]
        #expect(bytes.count == 1024 * 8)
        #expect(bytes.prefix(8).elementsEqual(withUnsafeBytes(of: served[0].bitPattern.littleEndian) { Array($0) }))
        #expect(raw[0]["shape"] == "[1024]")
        #expect(try database.measurements(run: run).map(\.series) == ["absorbance"])
        let summary = try #require(try database.detail(run: run)?.arraySeries)
        #expect(summary.map { "\($0.series) \($0.unit) \($0.dtype) \($0.shape) \($0.count)" } == ["spectrum AU float64 [1024] 3"])
    }

    @Test func aStepWhoseArrayCannotBeStoredStoresNoneOfItsNumbersEither() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let source = SourceText(path: "t.yaml", text: "", sha256: "")
        let run = try await database.beginRun(RunStart(campaignID: nil, protocolName: "t", protocolSource: source, parameters: [],
                                                       chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "t",
                                                       softwareVersion: "t", startedAt: Date(), startedMonotonic: 0))
        func reading(_ value: Double, _ array: ArrayReading?) -> MeasurementRecord {
            MeasurementRecord(stepIndex: 1, channel: ChannelRef(instrument: "spectro", channel: array == nil ? "absorbance" : "spectrum"),
                              instrument: "uv", series: array == nil ? "absorbance" : "spectrum", value: value, unit: "AU",
                              wallTime: Date(), monotonicTime: 1, array: array)
        }
        let spectrum = ArrayReading(values: [0.1, 0.2, 0.3], axis: Self.wavelength)
        try await database.record([reading(1, nil), reading(.nan, spectrum), reading(2, nil)], run: run)
        try await database.flush()
        #expect(try database.measurements(run: run).map(\.value) == [1, 2])
        #expect(try database.arrays(run: run).map(\.values) == [[0.1, 0.2, 0.3]])
        // An empty array is no blob: the CHECK refuses it, and the whole step with it.
        let empty = ArrayReading(values: [], shape: [0], axes: [Self.wavelength])
        try await database.record([reading(3, nil), reading(.nan, empty)], run: run)
        await #expect(throws: LabError.self) { try await database.flush() }
        let reopened = try LabDatabase(readingOnly: database.path)
        #expect(try reopened.measurements(run: run).map(\.value) == [1, 2])
        #expect(try reopened.arrays(run: run).count == 1)
    }

    @Test func jsonLinesExportGivesEachSpectrumWithItsShapeAxisAndExactValuesAndCSVSaysItLeavesThemOut() async throws {
        let (directory, run, served) = try await Self.storedRun()
        let out = directory + "/export.jsonl"
        let (status, output) = try await ExportTests.serendip(["export", "\(run)", "--format", "jsonl", "--out", out, "--data", directory])
        #expect(status == 0, "\(output)")
        let python = try ExportTests.python("""
            import json, sys
            for line in open(sys.argv[1]):
                o = json.loads(line)
                if o['type'] == 'array':
                    print(json.dumps([o['series'], o['unit'], o['dtype'], o['shape'], o['axes'], [float(v).hex() for v in o['values']]]))
            """, [out])
        let lines = python.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [Any] }
        #expect(lines.count == 3)
        #expect(lines.map { $0[0] as! String } == ["spectrum", "spectrum", "spectrum"])
        #expect(lines.allSatisfy { $0[1] as! String == "AU" && $0[2] as! String == "float64" && $0[3] as! [Int] == [1024] })
        let axis = try #require(lines.first?[4] as? [[String: Any]]).first
        #expect(axis?["name"] as? String == "wavelength" && axis?["unit"] as? String == "nm")
        #expect(axis?["start"] as? Double == 200 && axis?["step"] as? Double == 0.5)
        let exported = lines.flatMap { ($0[5] as! [String]).map { Double($0)! } }
        #expect(exported.map(\.bitPattern) == served.map(\.bitPattern))

        let csv = directory + "/export.csv"
        let (csvStatus, note) = try await ExportTests.serendip(["export", "\(run)", "--format", "csv", "--out", csv, "--data", directory])
        #expect(csvStatus == 0)
        #expect(note.contains("run \(run)'s 3 array readings are not in CSV; export them with --format jsonl"))
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 2 && rows[1].contains(",absorbance,"))

        let (showStatus, shown) = try await ExportTests.serendip(["show", "\(run)", "--data", directory])
        #expect(showStatus == 0)
        #expect(shown.contains("arrays\n  spectrum [AU]: 3 arrays of float64, shape [1024]"), "\(shown)")
    }

    @Test func theBlueskyDocumentsGiveEachSpectrumAsAnArrayEventWithItsAxisAndValidateWithEventModel() async throws {
        let (directory, run, served) = try await Self.storedRun()
        let out = directory + "/bluesky.jsonl"
        let (status, output) = try await ExportTests.serendip(["export", "\(run)", "--format", "bluesky", "--out", out, "--data", directory])
        #expect(status == 0, "\(output)")
        let printed = try BlueskyExportTests.eventModel("""
            import json, sys
            from event_model import DocumentNames, schema_validators, unpack_event_page
            docs = [json.loads(line) for line in open(sys.argv[1])]
            for name, doc in docs:
                schema_validators[DocumentNames[name]].validate(doc)
            keys = [d['data_keys']['spectrum'] for n, d in docs if n == 'descriptor' and 'spectrum' in d['data_keys']]
            assert len(keys) == 1 and keys[0]['dtype'] == 'array' and keys[0]['shape'] == [1024] and keys[0]['dims'] == ['wavelength'], keys
            for n, d in docs:
                if n == 'event_page' and 'spectrum' in d['data']:
                    for e in unpack_event_page(d):
                        axis = e['data']['spectrum_wavelength']
                        assert axis[0] == 200 and axis[-1] == 711.5 and len(axis) == 1024, axis[:3]
                        print(json.dumps([float(v).hex() for v in e['data']['spectrum']]))
            """, [out])
        let exported = printed.split(separator: "\n").flatMap { line in
            (try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String]).map { Double($0)! }
        }
        #expect(exported.count == 3 * 1024)
        #expect(exported.map(\.bitPattern) == served.map(\.bitPattern))
    }
}

@Suite struct ArrayDriverFileTests {
    static func diagnostics(_ channel: String, transport: String = "serial") -> [String] {
        let text = """
            driver: photometer
            transport: \(transport)
            channels:
              \(channel)
            """
        do {
            _ = try DriverSpec.parse(text, path: "p.yaml")
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test func aWellFormedArrayChannelHasItsLengthAxisAndUnit() throws {
        let spec = try DriverSpec.load(path: Repository.path("drivers/uv-vis.yaml"))
        let info = try #require(spec.channel("spectrum")?.info)
        #expect(info.array == ArrayLayout(length: 1024, axis: ArrayAxis(name: "wavelength", unit: "nm", start: 200, step: 0.5)))
        #expect(info.unit.symbol == "AU" && !info.writable)
        let listed = try DriverSpec.parse("""
            driver: p
            transport: serial
            channels:
              s: { query: "S?", type: array, length: 3, axis: { name: pixel, unit: nm, values: [400, 410.5, 432] } }
            """, path: "p.yaml")
        #expect(listed.channel("s")?.array?.axis.values == [400, 410.5, 432])
    }

    @Test(arguments: [
        (#"s: { query: "S?", type: array, unit: AU }"#, "p.yaml:4:21: array channel 's' needs a length — e.g. 'length: 1024'"),
        (#"s: { query: "S?", type: array, length: 0 }"#, "p.yaml:4:42: length must be a whole number from 1 to 1048576, got '0'"),
        (#"s: { query: "S?", length: 8 }"#, "p.yaml:4:21: length is for an array channel — add 'type: array'"),
        (#"s: { query: "S?", type: array, length: 4, axis: { name: x, unit: nm, start: 1 } }"#, "p.yaml:4:51: the axis needs both start and step"),
        (#"s: { query: "S?", type: array, length: 4, axis: { name: x, unit: nm, start: 1, step: 0 } }"#, "p.yaml:4:82: the axis step must not be 0"),
        (#"s: { query: "S?", type: array, length: 2, axis: { name: x, unit: nm, values: [1, 2, 3] } }"#,
         "p.yaml:4:80: the axis has 3 values for 2 elements — give one value per element, or start and step"),
        (#"s: { query: "S?", type: array, length: 2, axis: { name: x, unit: nmm, start: 1, step: 1 } }"#, "p.yaml:4:68: unknown unit 'nmm'"),
        (#"s: { query: "S?", write: "S {value}", type: array, length: 2 }"#,
         "p.yaml:4:41: an array channel is read-only and serial: a 'query' answered by comma-separated numbers — remove 'write' (or on/off)"),
        (#"s: { query: "S?", type: array, length: 2, limits: [0, 1] }"#, "p.yaml:4:45: limits is for a numeric channel; 's' is an array"),
    ])
    func aMistakeInAnArrayChannelIsReportedWhereItIs(channel: String, expected: String) {
        // A prefix: a unit's suggestion may pick either of two equally close names.
        let found = Self.diagnostics(channel)
        #expect(found.count == 1 && found.first?.hasPrefix(expected) == true, "\(found)")
    }

    @Test func aModbusArrayChannelIsRefusedAtItsType() {
        let found = Self.diagnostics("s: { holding: 100, type: array, length: 4 }", transport: "modbus")
        #expect(found == ["p.yaml:4:22: an array channel is read-only and serial: a 'query' answered by comma-separated numbers "
                          + "— a Modbus driver reads numbers one register pair at a time"])
    }

    @Test func aProtocolThatWaitsOnASpectrumOrComputesWithOneIsRefusedWhereItSaysSo() throws {
        let lab = try LabConfig.load(path: Repository.path("examples/toy-lab/lab.yaml"))
        let text = """
            serendip: 1
            name: bad
            instruments: { spectro: uv-vis }
            steps:
              - measure: { channel: spectro.spectrum, as: s }
              - if: mean(s) > 0.5
                then:
                  - log: strong band
              - wait_until: { channel: spectro.spectrum, of: 1 AU, within: 0.1 AU, timeout: 1 min }
            """
        let error = #expect(throws: ValidationError.self) { try ProtocolParser.parse(text, path: "bad.yaml", drivers: lab.drivers) }
        let messages = error?.diagnostics.map(\.message) ?? []
        #expect(messages.contains("'s' is an array series; expressions read numbers only"), "\(messages)")
        #expect(messages.contains("'spectro.spectrum' is an array channel: only measure reads it"), "\(messages)")
    }
}
