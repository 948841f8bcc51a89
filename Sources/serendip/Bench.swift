import ArgumentParser
import Foundation
import LabCore
import LabPlanner
import LabSpec
import LabStorage
import LabTransport

/// `serendip bench` (what `make bench` runs): the figures the issues name, as a table.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure transport, storage and planner figures.")

    @Option(help: "Repetitions for round-trip measurements.")
    var repetitions = 2000

    @Flag(help: "Only the daemon's figures (orchestration overhead, the queue, resident memory).")
    var daemonOnly = false

    @Flag(help: "Print the daemon's figures as JSON samples (seconds, bytes) instead of a table; implies --daemon-only.")
    var json = false

    @Option(help: "The lab the daemon figures use.")
    var lab = "examples/toy-lab/lab.yaml"

    @Option(help: "Readings in the count-like run (one measure, repeated).")
    var countSteps = 2000

    @Option(help: "Points in the scan-like run (set, then measure, at each).")
    var scanSteps = 1000

    @Option(help: "Runs of each per-step protocol.")
    var stepRepetitions = 3

    @Option(help: "Trivial runs queued one at a time, each timed until its completed state is committed.")
    var queuedRuns = 50

    @Option(help: "Runs held in the queue while the daemon's resident memory is read.")
    var heldRuns = 10_000

    @Option(help: "Cables pulled (and plugged in again) per instrument while a run uses it.")
    var faultRounds = 20

    @Flag(help: "Only the lost-instrument figures.")
    var faultsOnly = false

    @Option(help: "Readings per run in the ingest figures.")
    var ingestRows = 200_000

    @Option(help: "Rounds of the ingest figures, ours and the C baseline's interleaved.")
    var ingestRounds = 7

    @Option(help: "Spectra per round in the array ingest figure.")
    var ingestArrays = 2_000

    @Option(help: "Float64 values per spectrum in the array ingest figure.")
    var arrayLength = 4_096

    @Flag(help: "Only the ingest figures (issue 14).")
    var ingestOnly = false

    @Option(help: "Rounds of the Modbus figures, ours, the C client's and pymodbus's interleaved.")
    var modbusRounds = 7

    @Flag(help: "Only the Modbus figures (issue 13).")
    var modbusOnly = false

    @Flag(help: "Only the planner's time per proposal (issue 15).")
    var plannerOnly = false

    @Option(help: "The folder with the peers' scripts (sqlite_ingest.c).")
    var peers = "../shared/peers"

    func run() async throws {
        let daemon = DaemonBench(lab: lab, countSteps: countSteps, scanSteps: scanSteps, repetitions: stepRepetitions,
                                 queuedRuns: queuedRuns, heldRuns: heldRuns)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(try await daemon.measure()), as: UTF8.self))
            return
        }
        print("| measurement | median | p99 | unit |")
        print("| --- | ---: | ---: | --- |")
        if daemonOnly { return try await daemonRows(daemon) }
        if faultsOnly { return try await faultRows() }
        if ingestOnly { return try await ingestFigures() }
        if modbusOnly {
            try await modbusRoundTrip()
            try await rtuRoundTrip()
            return try await serialRoundTrip()
        }
        if plannerOnly { return try await plannerRows() }
        try await modbusRoundTrip()
        try await rtuRoundTrip()
        try await serialRoundTrip()
        try await ingestFigures()
        try await plannerRows()
        try validation()
        try await daemonRows(daemon)
        try await faultRows()
    }

    func faultRows() async throws {
        let f = try await FaultBench(rounds: faultRounds).measure()
        row("Modbus reactor's connection closed → its run paused(instrument_lost), \(faultRounds) rounds", f.modbus.lostToPaused, "ms", scale: 1e3)
        row("  then → the run's pump at its safe rate, on the pump's wire log", f.modbus.pausedToSafe, "ms", scale: 1e3)
        row("Serial pump unplugged (pty closed) → its run paused(instrument_lost), \(faultRounds) rounds", f.serial.lostToPaused, "ms", scale: 1e3)
        row("  then → the run's reactor at its safe setpoint, on the reactor's wire log", f.serial.pausedToSafe, "ms", scale: 1e3)
    }

    func daemonRows(_ daemon: DaemonBench) async throws {
        let f = try await daemon.measure()
        row("Orchestration per step, count-like: one measure of \(f.countSteps) readings, all stored (SQLite)", f.countStep, "µs", scale: 1e6)
        row("Orchestration per step, scan-like: \(f.scanSteps) × (set, measure), all stored (SQLite)", f.scanStep, "µs", scale: 1e6)
        row("Fixed cost of a run: begin, one reading, safe states, end, each committed", f.runFixed, "ms", scale: 1e3)
        row("queue.add over the socket, until its acknowledged (committed) reply", f.queueAdd, "ms", scale: 1e3)
        row("Queued trivial run: queue.add until its completed state is committed", f.queuedRun, "ms", scale: 1e3)
        row("queue.add_many of 1,000 runs, until the acknowledged reply", f.addMany, "ms", scale: 1e3)
        row("Resident memory of `serendip serve`, idle (VmRSS)", [f.idleRSS], "MiB", scale: 1.0 / 1_048_576)
        row("Resident memory of `serendip serve`, \(f.held) runs queued (VmRSS)", [f.heldRSS], "MiB", scale: 1.0 / 1_048_576)
        row("  of which anonymous (RssAnon; the rest is the binary's and libraries' pages), idle", [f.idleAnonymous], "MiB", scale: 1.0 / 1_048_576)
        row("  of which anonymous, \(f.held) runs queued", [f.heldAnonymous], "MiB", scale: 1.0 / 1_048_576)
    }

    /// A protocol of `steps` steps against the example lab's drivers: sets, waits, holds, measures
    /// and conditionals in turn, each with expressions to type-check.
    static func protocolText(steps: Int) -> String {
        var text = """
            serendip: 1
            name: bench
            instruments: { reactor: thermo-reactor, spectro: uv-vis }
            parameters:
              temperature: { type: real, unit: degC, range: [25, 120] }
            steps:

            """
        let kinds = [
            "  - set: reactor.setpoint\n    to: $temperature - 2 degC\n",
            "  - wait_until: { channel: reactor.temperature, of: $temperature, within: 0.5 degC, timeout: 10 min }\n",
            "  - hold: 30 s\n",
            "  - measure: { channel: spectro.absorbance, as: a, repeat: 3, every: 2 s }\n",
            "  - if: mean(a) > 0.5 and $temperature < 100 degC\n    then:\n      - log: high\n",
        ]
        // An `if` with its `log` counts as two steps.
        var written = 0, index = 0
        while written < steps {
            let kind = kinds[index % kinds.count]
            if kind.contains("if:") && written + 2 > steps { index += 1; continue }
            text += kind
            written += kind.contains("if:") ? 2 : 1
            index += 1
        }
        return text + "outputs:\n  y: mean(a) * 41.2\n"
    }

    func validation() throws {
        let drivers = try LabConfig.load(path: "examples/toy-lab/lab.yaml").drivers
        func time(_ text: String) throws -> [Double] {
            try (0..<7).map { _ in
                let start = ContinuousClock.now
                _ = try ProtocolParser.parse(text, path: "bench.yaml", drivers: drivers)
                let d = ContinuousClock.now - start
                return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            }
        }
        row("Validate a 10,000-step protocol against its drivers", try time(Self.protocolText(steps: 10_000)), "ms", scale: 1e3)
        for (factor, steps) in [(1, 100), (10, 1_000), (100, 10_000)] {
            let text = Self.protocolText(steps: steps)
            let samples = try time(text)
            let kib = Double(text.utf8.count) / 1024
            row("Parse + validate \(factor)× (\(steps) steps, \(Int(kib.rounded())) KiB), per KiB", samples.map { $0 / kib }, "µs/KiB", scale: 1e6)
        }
    }

    func row(_ name: String, _ samples: [Double], _ unit: String, scale: Double, digits: Int = 1) {
        let sorted = samples.sorted()
        let median = sorted[sorted.count / 2] * scale, p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * scale
        let format = "%.\(digits)f"
        print("| \(name) | \(String(format: format, median)) | \(String(format: format, p99)) | \(unit) |")
    }

    func seconds(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    func modbusRoundTrip() async throws {
        let f = try await ModbusPeerBench(reads: repetitions, rounds: modbusRounds, directory: ".build/bench-modbus", peers: peers).measure()
        let n = repetitions.formatted()
        func rows(_ name: String, _ figures: [(p50: Double, p99: Double)]) {
            // Per round a median and a p99 over its reads; printed: the median of each over the rounds.
            row(name, figures.map(\.p50), "µs (p50)", scale: 1e6)
            row("  its p99", figures.map(\.p99), "µs (p99)", scale: 1e6)
        }
        rows("Modbus TCP read of 10 registers through the driver stack (\(modbusRounds) rounds × \(n) reads; libmodbus C server)", f.ours)
        rows("  raw libmodbus C client (modbus_c.c), same server, interleaved", f.c)
        let ratios = zip(f.ours, f.c).map { $0.p50 / $1.p50 }
        row("  ours ÷ C, median per round (range \(String(format: "%.2f–%.2f", ratios.min() ?? 0, ratios.max() ?? 0)))", ratios, "ratio", scale: 1, digits: 2)
        if f.pymodbus.isEmpty {
            print("| pymodbus client: not measured: \(f.pythonNote ?? "") | | | |")
        } else {
            for (name, figures) in [("sync", f.pymodbus), ("asyncio", f.pymodbusAsync)] {
                rows("  pymodbus \(name) client, same server, interleaved", figures)
                let faster = zip(figures, f.ours).map { $0.p50 / $1.p50 }
                row("  pymodbus \(name) ÷ ours, median per round (range \(String(format: "%.1f–%.1f", faster.min() ?? 0, faster.max() ?? 0)))",
                    faster, "ratio", scale: 1, digits: 2)
            }
        }
    }

    func rtuRoundTrip() async throws {
        let reads = min(repetitions, 1000)
        let f = try await ModbusPeerBench(reads: reads, rounds: modbusRounds, directory: ".build/bench-modbus", peers: peers).measureRTU()
        row("Modbus RTU read of 10 registers over a socat pty pair, our client (\(modbusRounds) rounds × \(reads) reads; libmodbus C server)",
            f.ours.map(\.p50), "µs (p50)", scale: 1e6)
        row("  raw libmodbus C RTU client (modbus_c.c), same server, interleaved", f.c.map(\.p50), "µs (p50)", scale: 1e6)
        let ratios = zip(f.ours, f.c).map { $0.p50 / $1.p50 }
        row("  ours ÷ C, median per round (range \(String(format: "%.2f–%.2f", ratios.min() ?? 0, ratios.max() ?? 0)))", ratios, "ratio", scale: 1, digits: 2)
    }

    /// An ASCII query through `SerialLine` against the same device answered by a bare loop of
    /// write(2) and read(2) on the same pty, in turn: the difference is our software time.
    func serialRoundTrip() async throws {
        let device = try LineServer { _ in "0.4213" }
        defer { device.stop() }
        let line = SerialLine(path: device.path)
        _ = try await line.query("ABS?")
        let reads = min(repetitions, 1000)
        var ours: [Double] = [], bare: [Double] = []
        for _ in 0..<modbusRounds {
            var samples: [Double] = []
            for _ in 0..<reads { samples.append(try await seconds { _ = try await line.query("ABS?") }) }
            ours.append(ModbusPeerBench.percentiles(samples).p50)
            await line.close()
            bare.append(try Self.bareQueries(device.path, reads))
        }
        row("ASCII query over a pty through SerialLine, round trip (\(modbusRounds) rounds × \(reads))", ours, "µs (p50)", scale: 1e6)
        row("  bare write(2)/read(2) loop on the same pty, interleaved", bare, "µs (p50)", scale: 1e6)
        row("  software time added (ours − bare, per round)", zip(ours, bare).map { $0 - $1 }, "µs", scale: 1e6)
    }

    /// The floor: the query written and its reply read with plain blocking system calls.
    static func bareQueries(_ path: String, _ count: Int) throws -> Double {
        let fd = open(path, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw LabError(.transport, "cannot open \(path)") }
        defer { close(fd) }
        var settings = termios()
        tcgetattr(fd, &settings)
        cfmakeraw(&settings)
        tcsetattr(fd, TCSANOW, &settings)
        let query = Array("ABS?\n".utf8)
        var buffer = [UInt8](repeating: 0, count: 64), samples: [Double] = []
        for _ in 0..<count {
            let began = ContinuousClock.now
            _ = query.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var done = false
            while !done {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { throw LabError(.transport, "the device closed \(path)") }
                done = buffer[..<n].contains(UInt8(ascii: "\n"))
            }
            samples.append(DaemonBench.seconds(ContinuousClock.now - began))
        }
        return ModbusPeerBench.percentiles(samples).p50
    }

    func ingestFigures() async throws {
        let f = try await IngestBench(rows: ingestRows, rounds: ingestRounds, directory: ".build/bench-ingest",
                                      peerSource: peers + "/sqlite_ingest.c").measure()
        let rows = IngestBench.readings(for: ingestRows).formatted()
        row("Ingest: \(rows) readings of a high-rate instrument through the engine, until committed (WAL, synchronous=FULL)", f.ours, "rows/s", scale: 1)
        row("  raw C baseline, same disk and settings (sqlite_ingest.c, text shape, 2,000-row transactions)", f.peer, "rows/s", scale: 1)
        let ratios = f.ratios.sorted()
        row("  ours ÷ C, per round (\(ingestRounds) rounds interleaved; range \(String(format: "%.2f–%.2f", ratios.first ?? 0, ratios.last ?? 0)))",
            f.ratios, "ratio", scale: 1, digits: 2)
        row("  largest -wal file while writing", [Double(f.walPeak)], "MiB", scale: 1.0 / 1_048_576)
        row("Export of \(rows) readings to CSV (`serendip export RUN --format csv --out F`, a process)", f.exportSeconds, "s", scale: 1, digits: 2)
        let arrays = ArrayIngestBench(arrays: ingestArrays, length: arrayLength, rounds: 3, directory: ".build/bench-ingest")
        row("Ingest: \((arrays.blocks * ArrayIngestBench.block).formatted()) spectra of \(arrayLength.formatted()) float64 through the engine as blobs, "
            + "until committed (\(arrays.bytes / 1_000_000) MB a round, 3 rounds)", try await arrays.measure(), "MB/s", scale: 1)
    }

    func plannerRows() async throws {
        for (observations, dimensions) in [(20, 2), (60, 6), (500, 6), (2_000, 6), (5_000, 6)] {
            try await plannerLatency(observations: observations, dimensions: dimensions)
        }
        // Noisy results are modelled a second time, as measured.
        try await plannerLatency(observations: 5_000, dimensions: 6, noiseSD: 0.05)
    }

    func plannerLatency(observations: Int, dimensions: Int, noiseSD: Double = 0) async throws {
        let space = PlannerSpace((0..<dimensions).map { .real(name: "x\($0)", lower: 0, upper: 1, logScale: false) })
        var options = Planner.Options()
        options.initialPoints = observations
        let optimizer = BayesianOptimizer(space: space, options: options, seed: 1)
        var rng = SplitMix64(seed: 2)
        for _ in 0..<observations {
            let s = try await optimizer.suggest()
            try await optimizer.observe(s.values, outcome: Outcome(s.values.values.reduce(noiseSD * rng.nextGaussian()) { $0 - ($1 - 0.3) * ($1 - 0.3) }))
        }
        var samples: [Double] = []
        for _ in 0..<5 {
            var chosenBy = ""
            samples.append(try await seconds {
                let s = try await optimizer.suggest()
                chosenBy = s.chosenBy
                try await optimizer.observe(s.values, outcome: Outcome(0))
            })
            if noiseSD > 0, !chosenBy.contains("noisy") { throw LabError(.planner, "the noisy results were not modelled as such: \(chosenBy)") }
        }
        row("Planner proposal, \(observations) \(noiseSD > 0 ? "noisy " : "")observations in \(dimensions) dimensions", samples, "ms", scale: 1e3)
    }
}
