import Foundation
import Glibc
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabSpec
import LabTransport
import Logging
import Testing

/// Out-of-process driver plugins (docs/plugins.md), run as real processes: the example plugin, and
/// plugins that misbehave in every way the host must survive.
@Suite(.serialized) struct PluginTests {
    static let spec = try! DriverSpec.parse("""
        driver: test-plugin
        transport: plugin
        channels:
          x: { unit: g }
          y: { unit: g, access: rw, limits: [0, 10] }
        """, path: "test-plugin.yaml")

    /// A Python plugin that answers `read x` with 1.5, except in the first process (before the file
    /// `once` exists), where it does `mode` instead.
    static let misbehaving = #"""
        import json, os, sys, time
        mode = sys.argv[1]
        for line in iter(sys.stdin.readline, ""):
            request = json.loads(line)
            reply = {"id": request["id"], "result": {}}
            if request["method"] == "describe":
                reply["result"] = {"channels": {"x": {"unit": "g"}, "y": {"unit": "g", "access": "rw", "limits": [0, 10]}}}
                if mode == "hang-within-its-timeout":
                    reply["result"]["timeout"] = 0.4
            if request["method"] == "read":
                reply["result"] = {"value": 1.5}
                if not os.path.exists("once"):
                    open("once", "w").close()
                    if mode == "crash":
                        os._exit(3)
                    if mode == "hang-with-a-child":
                        import subprocess
                        child = subprocess.Popen(["sleep", "3600"])
                        open("pids", "w").write(f"{os.getpid()} {child.pid}")
                    if mode.startswith("hang"):
                        time.sleep(1000)
                    if mode == "garbage":
                        print("hello \u2603 this is not JSON", flush=True)
                    if mode == "flood":
                        for _ in range(5000):
                            print(json.dumps({"notice": "x" * 200}))
                    if mode == "long-line":
                        sys.stdout.write("x" * (100 << 20))
                        sys.stdout.flush()
                        time.sleep(1000)
                    if mode == "stderr":
                        sys.stderr.write(("noise " * 100 + "\n") * 2000)
                        sys.stderr.flush()
            print(json.dumps(reply), flush=True)
        open("finished", "w").close()
        """#

    /// A plugin in sh that starts, describes itself, connects, then exits in the middle of every read.
    static let crashing = #"""
        while read -r line; do
          id=${line#\{\"id\":}; id=${id%%,*}
          case "$line" in
            *'"describe"'*) echo "{\"id\":$id,\"result\":{\"channels\":{\"x\":{\"unit\":\"g\"},\"y\":{\"unit\":\"g\",\"access\":\"rw\"}}}}" ;;
            *'"read"'*) exit 3 ;;
            *) echo "{\"id\":$id,\"result\":{}}" ;;
          esac
        done
        """#

    static func folder() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-plugin-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// Plugin stderr is logged at info; these plugins' noise is not worth printing.
    static let quiet: Logger = {
        var logger = Logger(label: "plugin-tests")
        logger.logLevel = .critical
        return logger
    }()

    static func instrument(_ command: [String], in directory: String, timeout: Double? = 5,
                           backoff: ClosedRange<Double> = 0.01...0.05) -> PluginInstrument {
        PluginInstrument(name: "dev", spec: spec, command: .init(command: command, directory: directory, timeout: timeout), logger: quiet) {
            $0.backoff = backoff
            $0.startTimeout = 20
        }
    }

    static func misbehaving(_ mode: String, timeout: Double? = 5) throws -> PluginInstrument {
        let dir = folder()
        try misbehaving.write(toFile: dir + "/plugin.py", atomically: true, encoding: .utf8)
        return instrument(["python3", "plugin.py", mode], in: dir, timeout: timeout)
    }

    static func failure(_ body: () async throws -> Void) async -> LabError? {
        do { try await body(); return nil } catch { return error as? LabError }
    }

    /// Reads `x` until the restarted plugin answers, on however busy a machine.
    static func servedAgain(_ instrument: PluginInstrument) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if (try? await instrument.read("x")) == .real(1.5) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    static func example(log: String) -> PluginInstrument {
        let spec = try! DriverSpec.load(path: Repository.path("drivers/dosing-balance.yaml"))
        return PluginInstrument(name: "balance", spec: spec, command: .init(
            command: ["python3", "balance.py", "--simulate", "--log", log], directory: Repository.path("examples/plugins"), timeout: 5))
    }

    @Test func theExampleBalanceIsReadAndWrittenThroughTheHost() async throws {
        let balance = Self.example(log: Self.folder() + "/requests.log")
        defer { Task { await balance.link.stop() } }
        #expect(try await balance.deviceIdentity()["firmware"] == .string("2.1"))
        try await balance.write("target", .real(2))
        #expect(try await balance.read("target") == .real(2))
        try await balance.write("dosing", .bool(true))
        var mass = 0.0
        let deadline = ContinuousClock.now + .seconds(30)
        while mass <= 0.5, ContinuousClock.now < deadline {
            if case .real(let x) = try await balance.read("mass") { mass = x }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(mass > 0.5)
        try await balance.goToSafeState()
        #expect(try await balance.read("dosing") == .bool(false))
    }

    @Test func aWriteOutsideTheLimitsNeverReachesThePlugin() async throws {
        let log = Self.folder() + "/requests.log"
        let balance = Self.example(log: log)
        defer { Task { await balance.link.stop() } }
        #expect(await Self.failure { try await balance.write("target", .real(500)) }?.code == .outOfLimits)
        #expect(await Self.failure { try await balance.write("target", .real(.nan)) }?.code == .notANumber)
        #expect(await Self.failure { try await balance.write("mass", .real(1)) }?.code == .accessDenied)
        try await balance.write("target", .real(20))
        let requests = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        let writes = requests.filter { $0.contains("\"write\"") }
        #expect(writes.count == 1)
        #expect(writes.first?.contains("\"value\":20") == true)
    }

    @Test func aPluginThatExitsMidRequestIsReportedLostThenRestarted() async throws {
        let plugin = try Self.misbehaving("crash")
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("exited with status 3 during 'read'") == true)
        #expect(await Self.servedAgain(plugin))
        #expect(await plugin.link.starts == 2)
    }

    @Test func aPluginStuckInARequestAndWhatItStartedAreEndedWhenTheProcessEnds() async throws {
        let folder = Self.folder()
        try Self.misbehaving.write(toFile: folder + "/plugin.py", atomically: true, encoding: .utf8)
        let plugin = Self.instrument(["python3", "plugin.py", "hang-with-a-child"], in: folder, timeout: 600)
        let reading = Task { try await plugin.read("x") }
        var pids: [pid_t] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while pids.count < 2, ContinuousClock.now < deadline {
            pids = ((try? String(contentsOfFile: folder + "/pids", encoding: .utf8)) ?? "").split(separator: " ").compactMap { pid_t($0) }
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(pids.count == 2)
        #expect(pids.allSatisfy { kill($0, 0) == 0 })
        // What `serve` does as it exits, while the read still waits on the plugin.
        PluginLink.endEveryPlugin(grace: 0.2)
        // Gone: the plugin is reaped by its link when the read fails; the sleep by init, as an orphan.
        #expect(try await eventually { pids.allSatisfy { kill($0, 0) != 0 || Self.isZombie($0) } })
        _ = await Self.failure { _ = try await reading.value }
    }

    /// A process that has ended but is not yet reaped by its parent.
    static func isZombie(_ pid: pid_t) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains(") Z ")
    }

    @Test func aPluginThatHangsTimesOutAndIsKilledAndRestarted() async throws {
        let plugin = try Self.misbehaving("hang", timeout: 0.5)
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("no reply to 'read' within 500 ms; killed it") == true)
        #expect(await Self.servedAgain(plugin))
    }

    @Test func withoutATimeoutInTheLabConfigThePluginsOwnApplies() async throws {
        let plugin = try Self.misbehaving("hang-within-its-timeout", timeout: nil)
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.message.contains("no reply to 'read' within 400 ms") == true, "\(String(describing: error))")
    }

    @Test func aPluginThatPrintsGarbageIsKilledAndRestarted() async throws {
        let plugin = try Self.misbehaving("garbage")
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("not a JSON object (\"hello ☃ this is not JSON\")") == true)
        #expect(await Self.servedAgain(plugin))
    }

    /// A megabyte of lines that are not the reply, then the reply: skipped, in bounded memory.
    /// (An endless flood ends at the timeout, as a hang does.)
    @Test func aFloodOfOutputBeforeTheReplyIsSkipped() async throws {
        let plugin = try Self.misbehaving("flood", timeout: 20)
        #expect(try await plugin.read("x") == .real(1.5))
        #expect(await plugin.link.starts == 1)
    }

    @Test func aHundredMegabyteLineIsCutOffAtTheLineLimit() async throws {
        let plugin = try Self.misbehaving("long-line")
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("a line longer than 1048576 bytes") == true)
        #expect(await Self.servedAgain(plugin))
    }

    @Test func aPluginWritingMegabytesToStderrIsNotBlockedByIt() async throws {
        let plugin = try Self.misbehaving("stderr")
        #expect(try await plugin.read("x") == .real(1.5))
    }

    @Test func restartsAreHeldBackByABackoffThatDoubles() async throws {
        let dir = Self.folder()
        try Self.crashing.write(toFile: dir + "/plugin.sh", atomically: true, encoding: .utf8)
        let plugin = Self.instrument(["sh", "plugin.sh"], in: dir, backoff: 2...8)
        let first = await Self.failure { _ = try await plugin.read("x") }
        #expect(first?.message.contains("starting it again in 2.0 s") == true, "\(String(describing: first))")
        // Within the backoff nothing is started: the request fails at once.
        let held = await Self.failure { _ = try await plugin.read("x") }
        #expect(held?.code == .instrumentLost)
        #expect(held?.message.contains("exited with status 3 during 'read'; starting it again in") == true, "\(String(describing: held))")
        #expect(await plugin.link.starts == 1)
        var second: LabError?
        let deadline = ContinuousClock.now + .seconds(30)
        while await plugin.link.starts < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            second = await Self.failure { _ = try await plugin.read("x") }
        }
        #expect(second?.message.contains("starting it again in 4.0 s") == true)
    }

    @Test func twoHundredRestartsLeaveNoDescriptorAndNoProcessBehind() async throws {
        let dir = Self.folder()
        try Self.crashing.write(toFile: dir + "/plugin.sh", atomically: true, encoding: .utf8)
        let plugin = Self.instrument(["sh", "plugin.sh"], in: dir, backoff: 0...0)
        let descriptors = Self.openDescriptors(), children = Self.childProcesses()
        for _ in 0..<200 { _ = await Self.failure { _ = try await plugin.read("x") } }
        #expect(await plugin.link.starts == 200)
        // Other suites may start processes and open descriptors meanwhile; one leaked per restart would be 200.
        #expect(Self.childProcesses() < children + 20)
        #expect(try await eventually { Self.openDescriptors() < descriptors + 30 })
    }

    @Test func aLabConfigStartsThePluginItNames() async throws {
        let lab = try LabConfig.load(path: Repository.path("examples/plugin-lab/lab.yaml"))
        let instruments = try InstrumentConnector.connect(lab)
        let balance = try #require(instruments["balance"] as? PluginInstrument)
        defer { Task { await balance.link.stop() } }
        #expect(try await balance.read("dosing") == .bool(false))
    }

    @Test func theExampleProtocolDosesThroughTheRealPlugin() async throws {
        let lab = try LabConfig.load(path: Repository.path("examples/plugin-lab/lab.yaml"))
        let definition = try ProtocolParser.load(path: Repository.path("examples/plugin-lab/dose.yaml"), drivers: lab.drivers)
        let instruments = try InstrumentConnector.connect(lab, for: definition)
        defer { for case let plugin as PluginInstrument in instruments.values { Task { await plugin.link.stop() } } }
        let executor = ProtocolExecutor(definition: definition, instruments: instruments, clock: ScaledClock(),
                                        recorder: MemoryRecorder(), logger: Self.quiet)
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source,
                             parameters: [], chosenBy: "test", proposalID: nil, instruments: [:], operatorName: "test",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: 0)
        let result = try await executor.run(parameters: ["mass": .quantity(Quantity(2, LabUnit.named("g")!))], start: start)
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        guard case .quantity(let dosed)? = result.outputs["dosed_mass"] else { Issue.record("no dosed_mass"); return }
        #expect(abs(dosed.value - 2) < 0.1)
    }

    @Test func simulateRunsAPluginLabInProcess() async throws {
        let reports = try await ProtocolSimulation.run(protocolPath: Repository.path("examples/plugin-lab/dose.yaml"),
                                                       labPath: Repository.path("examples/plugin-lab/lab.yaml"),
                                                       parameters: [:], allBranches: false)
        #expect(reports.first?.result.outcome == .completed)
    }

    @Test func aStoppedPluginSeesEndOfFileAndMayFinishBeforeItIsKilled() async throws {
        let plugin = try Self.misbehaving("none")
        #expect(try await plugin.read("x") == .real(1.5))
        await plugin.link.stop()
        #expect(FileManager.default.fileExists(atPath: plugin.link.settings.directory + "/finished"))
    }

    @Test func aCommandThatCannotBeFoundIsReportedAsSuch() async throws {
        let plugin = Self.instrument(["no-such-plugin-anywhere"], in: Self.folder())
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("plugin exited with status 127 (command not found; see its stderr in the log)") == true,
                "\(String(describing: error))")
    }

    @Test func aPluginThatDisagreesWithItsDriverFileIsRefused() async throws {
        let dir = Self.folder()
        try Self.misbehaving.replacingOccurrences(of: #"{"unit": "g"}, "y""#, with: #"{"unit": "kg"}, "y""#)
            .write(toFile: dir + "/plugin.py", atomically: true, encoding: .utf8)
        let plugin = Self.instrument(["python3", "plugin.py", "none"], in: dir)
        let error = await Self.failure { _ = try await plugin.read("x") }
        #expect(error?.message.contains("plugin does not match driver 'test-plugin': 'x' in kg, not g") == true)
    }

    @Test func theExamplesInTheDocsAreTheShippedPluginDriverAndLab() async throws {
        let yaml = try DocumentationTests.blocks("plugins.md", language: "yaml")
        let driver = try String(contentsOfFile: Repository.path("drivers/dosing-balance.yaml"), encoding: .utf8)
        let lab = try String(contentsOfFile: Repository.path("examples/plugin-lab/lab.yaml"), encoding: .utf8)
        #expect(yaml.count == 2)
        #expect(yaml.allSatisfy { driver.contains($0) || lab.contains($0) })
        let documented = try #require(try DocumentationTests.blocks("plugins.md", language: "json").first)
        let balance = Self.example(log: Self.folder() + "/requests.log")
        defer { Task { await balance.link.stop() } }
        #expect(try await balance.link.request("describe") == JSONDecoder().decode(PluginValue.self, from: Data(documented.utf8)))
    }

    @Test func theInstrumentHubGetsACrashedPluginBack() async throws {
        let plugin = try Self.misbehaving("crash")
        let hub = InstrumentHub(instruments: ["dev": plugin], logger: Self.quiet, backoff: 0.05...0.2, probeInterval: 0.05)
        let log = HealthLog()
        await hub.onChange(log.record)
        await hub.start()
        // The first probe reads x, which the first process answers by exiting.
        #expect(try await eventually { log.all == ["dev lost", "dev back"] })
        await hub.stop()
        await plugin.link.stop()
    }

    @Test func aLabConfigSaysWhatAPluginInstrumentLacks() throws {
        let dir = Self.folder()
        try String(contentsOfFile: Repository.path("drivers/dosing-balance.yaml"), encoding: .utf8)
            .write(toFile: dir + "/dosing-balance.yaml", atomically: true, encoding: .utf8)
        try """
            lab: broken
            instruments:
              a: { driver: dosing-balance.yaml, simulate: true }
              b: { driver: dosing-balance.yaml, plugin: { command: python3 balance.py } }
            """.write(toFile: dir + "/lab.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try LabConfig.load(path: dir + "/lab.yaml")
            Issue.record("expected the lab config to be refused")
        } catch let error as ValidationError {
            let messages = error.diagnostics.map(\.message)
            #expect(messages.contains("'a' uses the plugin driver 'dosing-balance' but has no 'plugin:' to start"))
            #expect(messages.contains("command must be a list: the executable, then its arguments"))
        }
    }

    @Test func aPluginDriverFileCannotDeclareAWatchdogTheHostWouldNeverFeed() {
        #expect(throws: ValidationError.self) {
            try DriverSpec.parse("""
                driver: x
                transport: plugin
                watchdog: { holding: 1, value: 5 }
                channels: { a: { unit: g } }
                """, path: "x.yaml")
        }
    }

    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? 0
    }

    /// This process's children, zombies included.
    static func childProcesses() -> Int {
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int32(entry) != nil, let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == me
        }.count
    }
}
