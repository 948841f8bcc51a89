import Foundation
import GRDB
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging
import Testing

/// A data directory holding real runs: the reactor-yield protocol run by the executor on the
/// simulated lab, once by hand and once from the queue for a project, and one run a killed daemon
/// left behind (interrupted, no readings). The database is closed, as after a daemon has stopped.
struct StoredRuns: Sendable {
    let directory: String
    var database: String { directory + "/serendip.sqlite" }
    /// `byHand` is the one run of `campaign`.
    let byHand: Int64, fromQueue: Int64, interrupted: Int64, campaign: Int64
    let source: SourceText

    static let shared = Task { try await StoredRuns() }

    /// 16 significant digits: a value that only the shortest exact form writes back unchanged.
    static let temperature = 80.10000000000001

    init() async throws {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let definition = try ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml"), drivers: fixture.lab.drivers)
        source = definition.source
        let executor = ProtocolExecutor(definition: definition, instruments: fixture.instruments, clock: fixture.clock,
                                        recorder: database, logger: Logger(label: "test"))
        let parameters: [String: ExprValue] = ["temperature": .quantity(Quantity(Self.temperature, LabUnit.named("degC")!)),
                                               "residence": .quantity(Quantity(3, LabUnit.named("min")!))]
        campaign = try database.createCampaign(name: "screen", spec: definition.source, objective: nil, direction: nil, seed: 1)
        var inCampaign = fixture.start(definition, parameters)
        inCampaign.campaignID = campaign
        let first = try await executor.run(parameters: parameters, start: inCampaign)
        guard first.outcome == .completed else { throw LabError(.internalError, "first run: \(first.error ?? "")") }
        byHand = first.runID

        let entry = try await database.enqueue([Submission(protocolSource: definition.source, protocolName: definition.name,
                                                           parameters: parameters, owner: "alice", project: "catalysis")])[0]
        var start = fixture.start(definition, parameters)
        start.operatorName = "alice"
        start.queueEntryID = entry.id
        let second = try await executor.run(parameters: parameters, start: start)
        guard second.outcome == .completed else { throw LabError(.internalError, "second run: \(second.error ?? "")") }
        fromQueue = second.runID

        var killed = fixture.start(definition, parameters)
        killed.operatorName = "bob"
        interrupted = try await database.beginRun(killed)
        try database.interruptRunningRuns()
        try database.pool.close()
    }
}

@Suite struct ExportTests {
    typealias Reading = (run: Int64, step: Int, series: String, value: Double, unit: String, wallTime: String, monotonic: Double)

    static func serendip(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await ClientCommandTests.serendip(arguments)
    }

    /// The readings as stored, read with SQL of the test's own.
    static func storedReadings(_ path: String) throws -> [Reading] {
        try DatabaseQueue(path: path, configuration: { var c = Configuration(); c.readonly = true; return c }()).read { db in
            try Row.fetchAll(db, sql: "SELECT run_id, step_index, series, value, unit, wall_time, monotonic_time FROM measurement ORDER BY run_id, id")
                .map { ($0[0], $0[1], $0[2], $0[3], $0[4], $0[5], $0[6]) }
        }
    }

    /// Runs `script` with python3 (arguments after it) and returns what it printed.
    static func python(_ script: String, _ arguments: [String]) throws -> String {
        let (status, output) = try runToEnd("/usr/bin/env", ["python3", "-c", script] + arguments)
        try #require(status == 0)
        return output
    }

    /// Python prints each reading as a JSON array, numbers as `float.hex()`: exact, whatever its printing.
    static func readBack(_ python: String) throws -> [Reading] {
        python.split(separator: "\n").map { line in
            let a = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [Any]
            return (Int64(a[0] as! Int), a[1] as! Int, a[2] as! String, Double(a[3] as! String)!, a[4] as! String, a[5] as! String,
                    Double(a[6] as! String)!)
        }
    }

    static func same(_ a: [Reading], _ b: [Reading]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy {
            $0.run == $1.run && $0.step == $1.step && $0.series == $1.series && $0.value == $1.value && $0.unit == $1.unit
                && $0.wallTime == $1.wallTime && $0.monotonic == $1.monotonic
        }
    }

    @Test func csvExportReadByPythonEqualsTheStoredValuesAndUnitsExactly() async throws {
        let runs = try await StoredRuns.shared.value
        let out = runs.directory + "/export-\(UUID().uuidString).csv"
        let (status, output) = try await Self.serendip(["export", "\(runs.byHand)", "\(runs.fromQueue)", "--format", "csv", "--out", out,
                                                        "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let python = try Self.python("""
            import csv, json, sys
            for r in csv.DictReader(open(sys.argv[1], newline='')):
                print(json.dumps([int(r['run']), int(r['step']), r['series'], float(r['value']).hex(), r['unit'], r['wall_time'],
                                  float(r['monotonic_time']).hex()]))
            """, [out])
        let stored = try Self.storedReadings(runs.database)
        #expect(stored.count >= 6, "two runs, each with three absorbances at least")
        #expect(Self.same(try Self.readBack(python), stored))
        let header = try String(contentsOfFile: out, encoding: .utf8).prefix { $0 != "\n" }
        #expect(header == "run,step,instrument,role,channel,series,value,unit,wall_time,monotonic_time")
    }

    @Test func jsonLinesExportReadByPythonEqualsTheStoredValuesAndItsRunsParameters() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output) = try await Self.serendip(["export", "\(runs.byHand)", "\(runs.fromQueue)", "--format", "jsonl",
                                                        "--data", runs.directory])
        #expect(status == 0)
        let out = runs.directory + "/export-\(UUID().uuidString).jsonl"
        try output.write(toFile: out, atomically: true, encoding: .utf8)
        let python = try Self.python("""
            import json, sys
            for line in open(sys.argv[1]):
                o = json.loads(line)
                if o['type'] == 'run':
                    t = o['parameters']['temperature']
                    print(json.dumps([o['run'], -1, o['protocol'] + ' ' + o['protocol_sha256'], t['value'].hex(), t['unit'],
                                      o['operator'], (0.0).hex()]))
                else:
                    print(json.dumps([o['run'], o['step'], o['series'], float(o['value']).hex(), o['unit'], o['wall_time'],
                                      float(o['monotonic_time']).hex()]))
            """, [out])
        let back = try Self.readBack(python)
        let heads = back.filter { $0.step == -1 }
        #expect(heads.map(\.run) == [runs.byHand, runs.fromQueue])
        #expect(heads.allSatisfy { $0.value == StoredRuns.temperature && $0.unit == "degC" && $0.series.hasPrefix("reactor-yield ") })
        #expect(heads.map(\.wallTime) == ["tester", "alice"])
        #expect(heads.allSatisfy { $0.series == "reactor-yield \(runs.source.sha256)" })
        #expect(Self.same(back.filter { $0.step != -1 }, try Self.storedReadings(runs.database)))
    }

    @Test func aCampaignsExportHasEachOfItsRunsAndNoOther() async throws {
        let runs = try await StoredRuns.shared.value
        let out = runs.directory + "/campaign-\(UUID().uuidString).csv"
        let (status, output) = try await Self.serendip(["export", "--campaign", "\(runs.campaign)", "--format", "csv", "--out", out,
                                                        "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let python = try Self.python("""
            import csv, json, sys
            for r in csv.DictReader(open(sys.argv[1], newline='')):
                print(json.dumps([int(r['run']), int(r['step']), r['series'], float(r['value']).hex(), r['unit'], r['wall_time'],
                                  float(r['monotonic_time']).hex()]))
            """, [out])
        #expect(Self.same(try Self.readBack(python), try Self.storedReadings(runs.database).filter { $0.run == runs.byHand }))
        let missing = try await Self.serendip(["export", "--campaign", "\(runs.campaign + 1)", "--format", "jsonl", "--data", runs.directory])
        #expect(missing.status == 1)
        #expect(missing.output.hasPrefix("no campaign \(runs.campaign + 1) in \(runs.directory)"))
    }

    @Test func runsFiltersByCampaignProtocolStateOperatorProjectAndTime() async throws {
        let runs = try await StoredRuns.shared.value
        func listed(_ filter: [String]) async throws -> [Int64] {
            let (status, output) = try await Self.serendip(["runs", "--json", "--data", runs.directory] + filter)
            #expect(status == 0, "\(output)")
            let array = try JSONSerialization.jsonObject(with: Data(output.utf8)) as! [[String: Any]]
            return array.map { Int64($0["run"] as! Int) }
        }
        let all = [runs.byHand, runs.fromQueue, runs.interrupted]
        #expect(try await listed([]) == all)
        #expect(try await listed(["--state", "interrupted"]) == [runs.interrupted])
        #expect(try await listed(["--state", "completed", "--operator", "alice"]) == [runs.fromQueue])
        #expect(try await listed(["--project", "catalysis"]) == [runs.fromQueue])
        #expect(try await listed(["--protocol", "reactor-yield"]) == all)
        #expect(try await listed(["--protocol", "titration"]) == [])
        #expect(try await listed(["--campaign", "\(runs.campaign)"]) == [runs.byHand])
        #expect(try await listed(["--campaign", "\(runs.campaign + 1)"]) == [])
        #expect(try await listed(["--since", "1d"]) == all)
        #expect(try await listed(["--since", "2999-01-01"]) == [])
        let text = try await Self.serendip(["runs", "--operator", "bob", "--data", runs.directory])
        #expect(text.output.hasPrefix("run \(runs.interrupted)  interrupted reactor-yield  started "))
        let bad = try await Self.serendip(["runs", "--state", "done", "--data", runs.directory])
        #expect(bad.status == 64)
        #expect(bad.output.contains("--state done: a run is one of running, completed"))
    }

    @Test func showGivesTheRunsProvenanceStatisticsAndEventCounts() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output) = try await Self.serendip(["show", "\(runs.fromQueue)", "--json", "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let detail = try JSONDecoder().decode(RunRecord.self, from: Data(output.utf8))
        let sha256 = try Self.python("import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())",
                                     [Repository.path("protocols/reactor-yield.yaml")])
        #expect(detail.run.protocolSHA256 + "\n" == sha256)
        #expect(detail.run.protocolPath.hasSuffix("protocols/reactor-yield.yaml"))
        #expect(detail.run.operatorName == "alice" && detail.run.project == "catalysis" && detail.run.chosenBy == "test")
        #expect(detail.run.softwareVersion == "test" && detail.run.state == "completed" && detail.run.endedAt != nil)
        let temperature = try #require(detail.parameters.first { $0.name == "temperature" })
        #expect(temperature.value == StoredRuns.temperature && temperature.unit == "degC" && temperature.text == nil)
        #expect(Set(detail.instruments.map(\.role)).isSuperset(of: ["reactor", "spectro"]))
        #expect(detail.instruments.allSatisfy { $0.driverSHA256.count == 64 && !$0.address.isEmpty })
        let absorbance = try #require(detail.series.first { $0.series == "absorbance" })
        let stored = try Self.storedReadings(runs.database).filter { $0.run == runs.fromQueue && $0.series == "absorbance" }.map(\.value)
        #expect(absorbance.count == 3 && absorbance.min == stored.min() && absorbance.max == stored.max())
        #expect(abs(absorbance.mean - stored.reduce(0, +) / 3) < 1e-12)
        #expect((detail.events["command"] ?? 0) > 0)

        let text = try await Self.serendip(["show", "\(runs.interrupted)", "--data", runs.directory])
        #expect(text.output.hasPrefix("run \(runs.interrupted): reactor-yield, interrupted\n  protocol  "))
        #expect(text.output.contains("  error     interrupted: the process running it stopped"))
        #expect(text.output.contains("  operator  bob\n"))
    }

    @Test func aMissingRunIsAClearErrorAndNothingIsWritten() async throws {
        let runs = try await StoredRuns.shared.value
        let out = runs.directory + "/missing-\(UUID().uuidString).csv"
        let (status, output) = try await Self.serendip(["export", "\(runs.byHand)", "999", "--format", "csv", "--out", out,
                                                        "--data", runs.directory])
        #expect(status == 1)
        #expect(output == "no run 999 in \(runs.directory) (serendip runs --data \(runs.directory) lists them)\n")
        #expect(!FileManager.default.fileExists(atPath: out))
        let show = try await Self.serendip(["show", "999", "--data", runs.directory])
        #expect(show.status == 1 && show.output.hasPrefix("no run 999 in "))
        let empty = try ClientCommandTests.emptyDirectory()
        let none = try await Self.serendip(["runs", "--data", empty])
        #expect(none.status == 1 && none.output.hasPrefix("no database at \(empty)/serendip.sqlite"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty).isEmpty)
    }

    @Test func theCommandsReadAReadOnlyCopyAndChangeNoByteOfIt() async throws {
        let runs = try await StoredRuns.shared.value
        let copy = try ClientCommandTests.emptyDirectory()
        let file = copy + "/serendip.sqlite"
        try FileManager.default.copyItem(atPath: runs.database, toPath: file)
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: file)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file) }
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        let modified = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date
        for arguments in [["runs"], ["runs", "--json", "--state", "completed"], ["show", "\(runs.byHand)"],
                          ["show", "\(runs.byHand)", "--json"], ["export", "\(runs.byHand)", "--format", "csv"],
                          ["export", "\(runs.fromQueue)", "--format", "jsonl"]] {
            let (status, output) = try await Self.serendip(arguments + ["--data", copy])
            #expect(status == 0, "\(arguments): \(output)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as? Date == modified)
        // No -wal, -shm or journal left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: copy) == ["serendip.sqlite"])
    }

    @Test func anotherUserCanReadADataDirectoryTheyCannotWriteTo() async throws {
        let runs = try await StoredRuns.shared.value
        let copy = try ClientCommandTests.emptyDirectory()
        try FileManager.default.copyItem(atPath: runs.database, toPath: copy + "/serendip.sqlite")
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: copy + "/serendip.sqlite")
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: copy)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: copy) }
        // As `nobody`: root writes through any mode, so only another user shows that nothing needs writing.
        let (status, output) = try runToEnd("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                                 Child.executable.path, "runs", "--data", copy], withStandardError: true)
        #expect(status == 0, "\(output)")
        #expect(output.split(separator: "\n").count == 3, "\(output)")
    }

    @Test func theCommandsSeeWhatARunningWriterHasCommitted() async throws {
        let runs = try await StoredRuns.shared.value
        let copy = try ClientCommandTests.emptyDirectory()
        try FileManager.default.copyItem(atPath: runs.database, toPath: copy + "/serendip.sqlite")
        // A daemon's connection, kept open and writing in WAL mode while the commands read.
        let writer = try LabDatabase(path: copy + "/serendip.sqlite")
        let run = try await writer.beginRun(RunStart(campaignID: nil, protocolName: "reactor-yield", protocolSource: runs.source, parameters: [],
                                                     chosenBy: "user", proposalID: nil, instruments: [:], operatorName: "carol",
                                                     softwareVersion: "test", startedAt: Date(), startedMonotonic: 0))
        try await writer.record([MeasurementRecord(stepIndex: 0, channel: ChannelRef(instrument: "reactor", channel: "temperature"), instrument: "reactor-1",
                                                   series: "reactor.temperature", value: 0.1 + 0.2, unit: "degC",
                                                   wallTime: Date(), monotonicTime: 1)], run: run)
        try await writer.flush()
        let listed = try await Self.serendip(["runs", "--state", "running", "--data", copy])
        #expect(listed.output.hasPrefix("run \(run)  running "), "\(listed.output)")
        let exported = try await Self.serendip(["export", "\(run)", "--format", "csv", "--data", copy])
        #expect(exported.output.contains(",0.30000000000000004,degC,"))
        try await writer.finishRun(run, outcome: .completed, outputs: [:], error: nil)
        let after = try await Self.serendip(["runs", "--state", "completed", "--operator", "carol", "--data", copy])
        #expect(after.output.hasPrefix("run \(run)  completed "))
    }
}

extension ExportTests {
    /// `submit` says "queued as run 24"; until it starts, the data commands say where it is.
    @Test func aRunThatHasNotStartedIsNamedWithItsQueueState() async throws {
        let directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let source = SourceText(path: "p.yaml", text: "serendip: 1", sha256: "x")
        let entry = try await database.enqueue([Submission(protocolSource: source, protocolName: "p", parameters: [:], owner: "ada", project: nil)])[0]
        for command in [["show"], ["export", "--format", "csv"], ["traffic"]] {
            let (status, output) = try await Self.serendip(command + ["\(entry.id)", "--data", directory])
            #expect(status == 1)
            #expect(output.contains("run \(entry.id) has not started: its queue entry is queued"), "\(command): \(output)")
        }
        let (_, missing) = try await Self.serendip(["show", "99", "--data", directory])
        #expect(missing.contains("no run 99 in \(directory)"))
    }
}

extension ExportTests {
    @Test func aRunNamedTwiceIsExportedOnce() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output) = try await Self.serendip(["export", "\(runs.byHand)", "\(runs.byHand)", "--format", "csv", "--data", runs.directory])
        #expect(status == 0)
        let once = try await Self.serendip(["export", "\(runs.byHand)", "--format", "csv", "--data", runs.directory]).output
        #expect(output == once)
    }

    @Test func usageAsJSONHasEachGroupsHours() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output) = try await Self.serendip(["usage", "--from", "2000-01-01", "--to", "2100-01-01", "--by", "instrument", "--json",
                                                        "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let groups = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
        #expect(Set(groups.compactMap { $0["key"] as? String }).isSuperset(of: ["reactor"]))
        #expect(groups.allSatisfy { ($0["instrument_hours"] as? Double ?? -1) >= 0 && ($0["runs"] as? Int ?? 0) >= 1 })
    }

    @Test func aPlotIsNotWrittenUnderAnImageName() async throws {
        let runs = try await StoredRuns.shared.value
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("plot-\(UUID()).png").path
        let (status, output) = try await Self.serendip(["plot", "\(runs.byHand)", "--channel", "reactor.temperature", "--out", out,
                                                        "--data", runs.directory])
        #expect(status == 64)
        #expect(output.contains("plot writes SVG; name the file .svg"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
