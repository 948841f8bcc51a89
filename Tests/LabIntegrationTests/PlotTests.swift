import Foundation
import GRDB
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging
import Testing

/// Two optimisation campaigns of real runs (the reactor-yield protocol on the simulated lab): one
/// maximising the yield, chosen by the initial design, the planner and a person, with one failed
/// run; one minimising it.
struct StoredCampaigns: Sendable {
    let directory: String
    let maximizing: Int64, minimizing: Int64
    let failedRun: Int64

    static let shared = Task { try await StoredCampaigns() }

    init() async throws {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let definition = try ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml"), drivers: fixture.lab.drivers)
        let executor = ProtocolExecutor(definition: definition, instruments: fixture.instruments, clock: fixture.clock,
                                        recorder: database, logger: Logger(label: "test"))
        func run(_ campaign: Int64, _ temperature: Double, by chosenBy: String) async throws {
            let parameters: [String: ExprValue] = ["temperature": .quantity(Quantity(temperature, LabUnit.named("degC")!)),
                                                   "residence": .quantity(Quantity(2, LabUnit.named("min")!))]
            var start = fixture.start(definition, parameters)
            start.campaignID = campaign
            start.chosenBy = chosenBy
            let result = try await executor.run(parameters: parameters, start: start)
            guard result.outcome == .completed else { throw LabError(.internalError, "run: \(result.error ?? "")") }
        }
        maximizing = try database.createCampaign(name: "best-yield", spec: definition.source, objective: "yield", direction: "maximize", seed: 1)
        try await run(maximizing, 50, by: "initial design (sobol)")
        try await run(maximizing, 95, by: "initial design (sobol)")
        var broken = fixture.start(definition, [:])
        broken.campaignID = maximizing
        broken.chosenBy = "planner (GP, log EI)"
        failedRun = try await database.beginRun(broken)
        try await database.finishRun(failedRun, outcome: .failed, outputs: [:], error: "reactor lost")
        try await run(maximizing, 70, by: "planner (GP, log EI)")
        try await run(maximizing, 110, by: "user")
        minimizing = try database.createCampaign(name: "least-yield", spec: definition.source, objective: "yield", direction: "minimize", seed: 1)
        try await run(minimizing, 100, by: "initial design (sobol)")
        try await run(minimizing, 40, by: "planner (GP, log EI)")
        try database.pool.close()
    }
}

/// A run recorded through the storage's own recorder at times the test chooses (a simulated lab's
/// timing depends on the machine's load): the reactor temperature every 30 s for 10 minutes, and
/// events at known times, two of them a second apart.
struct RecordedRun: Sendable {
    let directory: String
    let run: Int64
    static let readings: [(time: Double, value: Double)] = (0...20).map { i -> (time: Double, value: Double) in
        let minutes = Double(i) / 2
        return (minutes * 60, 25 + 55 * (1 - exp(-minutes / 2.5)))
    }
    static let events: [(kind: RunEvent.Kind, message: String, time: Double)] = [
        (.command, "reactor.setpoint = 80.0 degC", 2), (.checkpoint, "at-temperature", 300), (.command, "reactor.stirrer = true", 301),
        (.transition, "running → paused: pause requested", 420), (.fault, "reactor: no reply to read temperature", 540),
    ]

    static let shared = Task { try await RecordedRun() }

    init() async throws {
        directory = try ClientCommandTests.emptyDirectory()
        let database = try LabDatabase(path: directory + "/serendip.sqlite")
        let start = 1000.0
        run = try await database.beginRun(RunStart(
            campaignID: nil, protocolName: "heat", protocolSource: SourceText(path: "/lab/heat.yaml", text: "name: heat", sha256: "0"),
            parameters: [], chosenBy: "user", proposalID: nil, instruments: [:], operatorName: "tester", softwareVersion: "test",
            startedAt: Date(), startedMonotonic: start))
        try await database.record(Self.readings.map {
            MeasurementRecord(stepIndex: 1, channel: ChannelRef(instrument: "reactor", channel: "temperature"), instrument: "reactor",
                              series: "reactor.temperature", value: $0.value, unit: "degC", wallTime: Date(), monotonicTime: start + $0.time)
        }, run: run)
        for event in Self.events { try await database.note(RunEvent(event.kind, event.message, monotonicTime: start + event.time), run: run) }
        try await database.finishRun(run, outcome: .failed, outputs: [:], error: "reactor: no reply")
        try database.pool.close()
    }
}

/// An SVG as the test reads it back with Python's XML parser.
struct ParsedPlot: Decodable {
    /// The time axis's unit in seconds: a run slowed down by a busy machine may be drawn in hours.
    var secondsPerUnit: Double { xLabel.hasSuffix("(h)") ? 3600 : xLabel.hasSuffix("(min)") ? 60 : 1 }

    struct Text: Decodable { let x: Double; let text: String }
    let title: String, xLabel: String, yLabel: String
    let xTicks: [String], yTicks: [String], xGrid: [Double], yGrid: [Double]
    let trace: [[Double]], best: [[Double]], points: [[Double]]
    let failed: [[Double]], events: Int, eventLabels: [String], caption: [String]
    /// The plot area's left and right edges.
    let frame: [Double]

    static let script = """
        import json, sys, xml.etree.ElementTree as ET
        ns = '{http://www.w3.org/2000/svg}'
        root = ET.parse(sys.argv[1]).getroot()
        def of(cls): return [e for e in root.iter() if e.get('class') == cls]
        def texts(cls): return [''.join(e.itertext()) for e in of(cls)]
        def polyline(cls): return [[float(v) for v in p.split(',')] for e in of(cls) for p in e.get('points').split()]
        def centre(e):
            if e.tag == ns + 'circle': return [float(e.get('cx')), float(e.get('cy'))]
            if e.tag == ns + 'rect': return [float(e.get('x')) + float(e.get('width')) / 2, float(e.get('y')) + float(e.get('height')) / 2]
            raise Exception('unexpected marker ' + e.tag)
        print(json.dumps({
            'title': texts('title')[0], 'xLabel': texts('x-label')[0], 'yLabel': texts('y-label')[0],
            'xTicks': texts('x-tick'), 'yTicks': texts('y-tick'),
            'xGrid': [float(e.get('x1')) for e in of('x-grid')], 'yGrid': [float(e.get('y1')) for e in of('y-grid')],
            'trace': polyline('trace'), 'best': polyline('best'), 'points': [centre(e) for e in of('point')],
            'failed': [[float(v) for v in e.get('d')[1:].split(' ')[0].split(',')] for e in of('failed')],
            'frame': [float(of('frame')[0].get('x')), float(of('frame')[0].get('x')) + float(of('frame')[0].get('width'))],
            'events': len(of('event')), 'eventLabels': texts('event-label'), 'caption': texts('caption')}))
        """

    init(file: String) throws {
        self = try JSONDecoder().decode(Self.self, from: Data(try ExportTests.python(Self.script, [file]).utf8))
    }

    /// Pixel to data value along an axis, from its first and last tick (a label and its grid line).
    static func axis(_ labels: [String], _ pixels: [Double]) throws -> (value: (Double) -> Double, perPixel: Double) {
        try #require(labels.count >= 2 && labels.count == pixels.count)
        let (v0, v1) = (Double(labels.first!)!, Double(labels.last!)!)
        let slope = (v1 - v0) / (pixels.last! - pixels.first!)
        return ({ v0 + ($0 - pixels.first!) * slope }, abs(slope))
    }
    var x: (value: (Double) -> Double, perPixel: Double) { get throws { try Self.axis(xTicks, xGrid) } }
    var y: (value: (Double) -> Double, perPixel: Double) { get throws { try Self.axis(yTicks, yGrid) } }
}

@Suite struct PlotTests {
    static func plot(_ arguments: [String], data: String) async throws -> (status: Int32, output: String, file: String) {
        let file = data + "/plot-\(UUID().uuidString).svg"
        let (status, output) = try await ClientCommandTests.serendip(["plot"] + arguments + ["--out", file, "--data", data])
        return (status, output, file)
    }

    static func read<T: DatabaseValueConvertible>(_ database: String, _ sql: String, _ arguments: StatementArguments) throws -> [[T]] {
        try DatabaseQueue(path: database, configuration: { var c = Configuration(); c.readonly = true; return c }()).read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in (0..<row.count).map { row[$0] } }
        }
    }

    @Test func aRunsChannelPlotHasEveryReadingWhereItsAxesSayWithUnitsAndTheRunsEvents() async throws {
        let recorded = try await RecordedRun.shared.value
        let (status, output, file) = try await Self.plot(["\(recorded.run)", "--channel", "reactor.temperature"], data: recorded.directory)
        #expect(status == 0, "\(output)")
        let plot = try ParsedPlot(file: file)
        #expect(plot.trace.count == RecordedRun.readings.count)
        #expect(plot.points.count == RecordedRun.readings.count)
        let (x, y) = (try plot.x, try plot.y)
        #expect(plot.xLabel == "time since the run started (min)")
        for (point, reading) in zip(plot.trace, RecordedRun.readings) {
            #expect(abs(x.value(point[0]) * 60 - reading.time) <= x.perPixel * 60, "time \(reading.time) s drawn at \(point[0])")
            #expect(abs(y.value(point[1]) - reading.value) <= y.perPixel, "value \(reading.value) drawn at \(point[1])")
        }
        #expect(plot.yLabel == "reactor.temperature (°C)")
        #expect(plot.title == "Run \(recorded.run) · heat · failed")
        #expect(plot.events == RecordedRun.events.count)
        // The checkpoint and the command a second after it share one label; every other event has its own.
        #expect(plot.eventLabels == ["reactor.setpoint = 80.0 degC", "checkpoint: at-temperature; reactor.stirrer = true",
                                     "transition: running → paused: pause requested", "fault: reactor: no reply to read temperature"])
    }

    @Test func aStoredRunsTemperatureIsDrawnAtItsReadings() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output, file) = try await Self.plot(["\(runs.byHand)", "--channel", "reactor.temperature"], data: runs.directory)
        #expect(status == 0, "\(output)")
        let plot = try ParsedPlot(file: file)
        let stored: [[Double]] = try Self.read(runs.database, """
            SELECT m.monotonic_time - r.started_monotonic, m.value FROM measurement m JOIN run r ON r.id = m.run_id
            WHERE m.run_id = ? AND m.series = 'reactor.temperature' ORDER BY m.id
            """, [runs.byHand])
        #expect(plot.trace.count == stored.count && !stored.isEmpty)
        let (x, y) = (try plot.x, try plot.y)
        let seconds = plot.secondsPerUnit
        for (point, reading) in zip(plot.trace, stored) {
            #expect(abs(x.value(point[0]) * seconds - reading[0]) <= x.perPixel * seconds)
            #expect(abs(y.value(point[1]) - reading[1]) <= y.perPixel)
        }
        #expect(plot.events == (try Self.eventsInside(plot, run: runs.byHand, database: runs.database)))
        #expect(plot.title == "Run \(runs.byHand) · reactor-yield · completed")
    }

    /// How many of the run's events fall inside the plot's time axis.
    static func eventsInside(_ plot: ParsedPlot, run: Int64, database: String) throws -> Int {
        let seconds = plot.secondsPerUnit
        let x = try plot.x
        let (from, to) = (x.value(plot.frame[0]) * seconds, x.value(plot.frame[1]) * seconds)
        let times: [[Double]] = try read(database, """
            SELECT e.monotonic_time - r.started_monotonic FROM run_event e JOIN run r ON r.id = e.run_id WHERE e.run_id = ?
            """, [run])
        return times.filter { $0[0] >= from - 1e-6 && $0[0] <= to + 1e-6 }.count
    }

    @Test func aSeriesIsFoundByItsAsNameAndItsUnitIsOnTheAxis() async throws {
        let runs = try await StoredRuns.shared.value
        let (status, output, file) = try await Self.plot(["\(runs.fromQueue)", "--channel", "absorbance"], data: runs.directory)
        #expect(status == 0, "\(output)")
        let plot = try ParsedPlot(file: file)
        let stored: [[Double]] = try Self.read(runs.database, "SELECT value FROM measurement WHERE run_id = ? AND series = 'absorbance' ORDER BY id",
                                               [runs.fromQueue])
        #expect(plot.trace.count == stored.count && stored.count == 3)
        #expect(plot.yLabel == "absorbance (AU)")
        // Three readings at the end of a run of minutes: the axis spans them, and says what it leaves out.
        let shown = try Self.eventsInside(plot, run: runs.fromQueue, database: runs.database)
        let all: [[Int]] = try Self.read(runs.database, "SELECT COUNT(*) FROM run_event WHERE run_id = ?", [runs.fromQueue])
        #expect(plot.events == shown && shown < all[0][0])
        #expect(plot.caption == ["The axis spans the readings: \(all[0][0] - shown) of the run's \(all[0][0]) events fall outside it (serendip show \(runs.fromQueue) counts them)."])
        let y = try plot.y
        for (point, value) in zip(plot.trace, stored) { #expect(abs(y.value(point[1]) - value[0]) <= y.perPixel) }
    }

    @Test func aCampaignPlotShowsEachResultByWhoChoseItTheFailureOnTheAxisAndTheBestSoFar() async throws {
        let data = try await StoredCampaigns.shared.value
        let (status, output, file) = try await Self.plot(["--campaign", "\(data.maximizing)"], data: data.directory)
        #expect(status == 0, "\(output)")
        let plot = try ParsedPlot(file: file)
        let yields: [[Double]] = try Self.read(data.directory + "/serendip.sqlite", """
            SELECT r.id, o.value FROM run r JOIN run_output o ON o.run_id = r.id AND o.name = 'yield' WHERE r.campaign_id = ? ORDER BY r.id
            """, [data.maximizing])
        #expect(yields.count == 4)
        #expect(plot.points.count == 4)
        #expect(plot.failed.count == 1)
        let (x, y) = (try plot.x, try plot.y)
        // The cross is under the plot area (below its lowest value), at experiment 3.
        #expect(plot.failed.allSatisfy { $0[1] > plot.yGrid.max()! && x.value($0[0] + 6).rounded() == 3 })
        // Experiments 1, 2, 4 and 5 gave a result; the third failed.
        #expect(plot.points.map { x.value($0[0]).rounded() } == [1, 2, 4, 5])
        for (point, stored) in zip(plot.points, yields) {
            #expect(abs(y.value(point[1]) - stored[1]) <= y.perPixel, "yield \(stored[1]) drawn at \(point[1])")
        }
        let best = plot.best.map { y.value($0[1]) }
        #expect(zip(best, best.dropFirst()).allSatisfy { $0 <= $1 + y.perPixel })
        let top = yields.max { $0[1] < $1[1] }!
        #expect(abs(best.last! - top[1]) <= y.perPixel)
        #expect(x.value(plot.best.last![0]).rounded() == 5)
        #expect(plot.yLabel == "yield (no unit)" || plot.yLabel.hasPrefix("yield ("))
        #expect(plot.xLabel == "experiment")
        #expect(plot.caption.joined(separator: " ").hasPrefix("Best: run \(Int64(top[0])) "))
        #expect(plot.caption.joined(separator: " ").contains("temperature = "))
    }

    @Test func aMinimizingCampaignsBestSoFarFallsToTheSmallestResult() async throws {
        let data = try await StoredCampaigns.shared.value
        let (status, output, file) = try await Self.plot(["--campaign", "\(data.minimizing)"], data: data.directory)
        #expect(status == 0, "\(output)")
        let plot = try ParsedPlot(file: file)
        let yields: [[Double]] = try Self.read(data.directory + "/serendip.sqlite", """
            SELECT o.value FROM run r JOIN run_output o ON o.run_id = r.id AND o.name = 'yield' WHERE r.campaign_id = ?
            """, [data.minimizing])
        let y = try plot.y
        let best = plot.best.map { y.value($0[1]) }
        #expect(zip(best, best.dropFirst()).allSatisfy { $0 + y.perPixel >= $1 })
        #expect(abs(best.last! - yields.map { $0[0] }.min()!) <= y.perPixel)
        #expect(plot.title.hasSuffix("minimize yield"))
    }

    @Test(arguments: [
        (["999", "--channel", "reactor.temperature"], "no run 999 in DIR (serendip runs --data DIR lists them)"),
        (["RUN", "--channel", "pressure"], "run RUN has no channel 'pressure'; it has: reactor.temperature (°C), absorbance (AU)"),
        (["--campaign", "77"], "no campaign 77 in DIR (serendip campaign list shows them)"),
        (["--campaign", "CAMPAIGN"], "campaign CAMPAIGN (screen) is a sweep: it has no objective to plot; plot one of its runs instead (serendip plot RUN --channel C)"),
    ])
    func aPlotThatCannotBeDrawnSaysWhyAndWritesNothing(arguments: [String], message: String) async throws {
        let runs = try await StoredRuns.shared.value
        func filled(_ text: String) -> String {
            text.replacingOccurrences(of: "DIR", with: runs.directory).replacingOccurrences(of: "CAMPAIGN", with: "\(runs.campaign)")
                .replacingOccurrences(of: "run RUN", with: "run \(runs.byHand)")
        }
        let (status, output, file) = try await Self.plot(arguments.map { $0 == "RUN" ? "\(runs.byHand)" : filled($0) }, data: runs.directory)
        #expect(status == 1)
        #expect(output == filled(message) + "\n")
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test func anUnwritableOutputPathIsAnErrorNamingIt() async throws {
        let runs = try await StoredRuns.shared.value
        let file = runs.directory + "/no-such-directory/plot.svg"
        let (status, output) = try await ClientCommandTests.serendip(["plot", "\(runs.byHand)", "--channel", "absorbance", "--out", file,
                                                                      "--data", runs.directory])
        #expect(status == 1)
        #expect(output == "cannot write \(file): No such file or directory\n")
    }
}
