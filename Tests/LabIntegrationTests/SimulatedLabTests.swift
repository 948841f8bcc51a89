import Foundation
import Glibc
import GRDB
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging
import Synchronization
import Testing

/// The repository's own example lab, so the tests exercise exactly what users run.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func temporaryDatabase() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-tests-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("lab.sqlite").path
    }
}

/// A started simulated lab with its instruments connected and a database to record into.
struct LabFixture {
    let lab: LabConfig
    let clock: ScaledClock
    let simulators: SimulatedLab
    let instruments: [String: any Instrument]
    let database: LabDatabase

    init(speed: Double = 3000) throws {
        var lab = try LabConfig.load(path: Repository.path("examples/toy-lab/lab.yaml"))
        lab.simulation.speed = speed
        self.lab = lab
        clock = ScaledClock(rate: speed)
        simulators = try SimulatedLab(config: lab, clock: clock)
        instruments = try InstrumentConnector.connect(lab, simulators: simulators)
        database = try LabDatabase(path: Repository.temporaryDatabase())
    }

    func executor(_ definition: ProtocolDefinition) -> ProtocolExecutor {
        ProtocolExecutor(definition: definition, instruments: instruments, clock: clock, recorder: database,
                         logger: Logger(label: "test"))
    }

    func start(_ definition: ProtocolDefinition, _ parameters: [String: ExprValue]) -> RunStart {
        RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source,
                 parameters: parameters.map { ParameterValue(name: $0.key, value: $0.value) }, chosenBy: "test",
                 proposalID: nil, instruments: instruments.mapValues(\.identity), operatorName: "tester",
                 softwareVersion: "test", startedAt: Date(), startedMonotonic: clock.now)
    }
}

@Suite(.serialized) struct SimulatedLabTests {
    static let celsius = LabUnit.named("degC")!
    static let minutes = LabUnit.named("min")!

    @Test func storesExactlyWhatTheSimulatedInstrumentsProduced() async throws {
        // At 600× a busy machine's scheduling delays move the chemistry less than at 3000×.
        let fixture = try LabFixture(speed: 600)
        defer { fixture.simulators.stop() }
        let definition = try ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml"), drivers: fixture.lab.drivers)
        let parameters: [String: ExprValue] = ["temperature": .quantity(Quantity(80, Self.celsius)),
                                               "residence": .quantity(Quantity(14, Self.minutes))]
        let result = try await fixture.executor(definition).run(parameters: parameters, start: fixture.start(definition, parameters))

        #expect(result.outcome == .completed, "\(result.error ?? "")")
        let stored = try fixture.database.measurements(run: result.runID, series: "absorbance").map(\.value)
        #expect(stored.count == 3)
        #expect(stored == fixture.simulators.serial["spectro"]!.served["absorbance"])
        // Every temperature the reactor served while the engine waited is stored, in order.
        let temperatures = try fixture.database.measurements(run: result.runID, series: "reactor.temperature").map(\.value)
        #expect(!temperatures.isEmpty)
        #expect(temperatures == fixture.simulators.modbus["reactor"]!.served["temperature"])
        #expect(abs(temperatures.last! - 80) <= 0.5)
        // The output is computed from the stored series, and the chemistry is near its known yield.
        guard case .quantity(let output)? = result.outputs["yield"] else { Issue.record("no yield"); return }
        let yield = output.value
        #expect(abs(yield - stored.reduce(0, +) / 3 * 41.2) < 1e-9)
        // Within 6 points of the isothermal yield (about 40 %): heating up and a loaded machine's
        // delays shift it a little; a wrong reading or a wrong unit would shift it far more.
        #expect(abs(yield - 100 * ToyChemistry.isothermalYield(celsius: 80, minutes: 14)) < 6)
        #expect(try fixture.database.outputs(run: result.runID)["yield"] == yield)
    }

    @Test func sendsEveryInstrumentToItsSafeStateWhenAStepFails() async throws {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        // Measuring with the lamp off makes the photometer answer with an error.
        let text = """
            serendip: 1
            name: forgets-the-lamp
            instruments: { reactor: thermo-reactor, spectro: uv-vis }
            steps:
              - set: reactor.setpoint
                to: 60 degC
              - set: reactor.stirrer
                to: true
              - measure: { channel: spectro.absorbance, as: a }
            """
        let definition = try ProtocolParser.parse(text, path: "forgets-the-lamp.yaml", drivers: fixture.lab.drivers)
        let result = try await fixture.executor(definition).run(parameters: [:], start: fixture.start(definition, [:]))

        #expect(result.outcome == .failed)
        #expect(result.error?.contains("lamp off") == true)
        #expect(result.error?.contains("forgets-the-lamp.yaml:9:5") == true)
        let reactor = fixture.instruments["reactor"]!
        #expect(try await reactor.read("setpoint") == .real(25))
        #expect(try await reactor.read("stirrer") == .bool(false))
        #expect(try fixture.database.runs().first?.state == "failed")
    }

    @Test func neverPutsAValueOutsideTheLimitsOrANaNOnTheWire() async throws {
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        let reactor = fixture.instruments["reactor"]!
        try await reactor.write("setpoint", .real(40))
        for bad in [200.0, -1, .nan, .infinity] {
            await #expect(throws: LabError.self) { try await reactor.write("setpoint", .real(bad)) }
        }
        await #expect(throws: LabError.self) { try await reactor.write("temperature", .real(30)) }
        #expect(try await reactor.read("setpoint") == .real(40))
        #expect(fixture.simulators.chemistry.productFraction == 0)
    }

    @Test func abortingARunStillRunsFinallyAndTheSafeState() async throws {
        let fixture = try LabFixture(speed: 60)
        defer { fixture.simulators.stop() }
        let definition = try ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml"), drivers: fixture.lab.drivers)
        let parameters: [String: ExprValue] = ["temperature": .quantity(Quantity(90, Self.celsius)),
                                               "residence": .quantity(Quantity(30, Self.minutes))]
        let executor = fixture.executor(definition)
        let start = fixture.start(definition, parameters)
        let task = Task { try await executor.run(parameters: parameters, start: start) }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = try await task.value
        #expect(result.outcome == .aborted)
        #expect(try await fixture.instruments["reactor"]!.read("setpoint") == .real(25))
        #expect(try await fixture.instruments["spectro"]!.read("lamp") == .bool(false))
        #expect(try fixture.database.runs().first?.state == "aborted")
    }
}

@Suite struct StorageTests {
    @Test func aRunThatWasRunningAtRestartBecomesInterrupted() async throws {
        let path = Repository.temporaryDatabase()
        let fixture = try LabFixture()
        defer { fixture.simulators.stop() }
        let definition = try ProtocolParser.load(path: Repository.path("protocols/reactor-yield.yaml"), drivers: fixture.lab.drivers)
        let first = try LabDatabase(path: path)
        let run = try await first.beginRun(fixture.start(definition, [:]))
        // The daemon "crashes" here; a new one opens the same file.
        let second = try LabDatabase(path: path)
        #expect(try second.interruptRunningRuns() == 1)
        #expect(try second.runs().first { $0.id == run }?.state == "interrupted")
        #expect(try second.run(run)?.error?.hasPrefix("interrupted: the process running it stopped without ending it") == true)
    }

    @Test func aSecondDaemonCannotOwnTheSameDatabase() throws {
        let path = Repository.temporaryDatabase()
        let lock = try DatabaseLock(database: path)
        #expect(throws: LabError.self) { try DatabaseLock(database: path) }
        withExtendedLifetime(lock) {}
    }

    /// A refused lock closed its descriptor, then its deinit closed the same number again: whatever
    /// another thread had opened under it in between (a simulator's listening socket, in the tests).
    /// Here another thread keeps opening and checking descriptors while locks are refused.
    @Test func aRefusedLockClosesItsDescriptorOnlyOnce() throws {
        let path = Repository.temporaryDatabase()
        let lock = try DatabaseLock(database: path)
        let stopping = Atomic<Bool>(false), lostDescriptors = Atomic<Int>(0), finished = Atomic<Bool>(false)
        Thread {
            while !stopping.load(ordering: .acquiring) {
                let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                // Closed under us by someone else's second close: the check or our own close fails.
                if fcntl(fd, F_GETFD) < 0 || close(fd) != 0 { lostDescriptors.add(1, ordering: .relaxed) }
            }
            finished.store(true, ordering: .releasing)
        }.start()
        for _ in 0..<3000 { _ = try? DatabaseLock(database: path) }
        stopping.store(true, ordering: .releasing)
        while !finished.load(ordering: .acquiring) { usleep(1000) }
        #expect(lostDescriptors.load(ordering: .relaxed) == 0)
        withExtendedLifetime(lock) {}
    }

    @Test func theSchemaRefusesAnUnknownRunState() throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        #expect(throws: DatabaseError.self) {
            try database.pool.write { db in
                try db.execute(sql: """
                    INSERT INTO run (protocol_name, protocol_path, protocol_sha256, protocol_text, state, chosen_by,
                                     operator, software_version, started_at, started_monotonic)
                    VALUES ('p', 'p', 'h', 't', 'resumed', 'x', 'o', 'v', 'now', 0)
                    """)
            }
        }
    }
}

@Suite struct CampaignTests {
    @Test func theDemoCampaignStoresEveryRunAndImprovesOnItsInitialDesign() async throws {
        let path = Repository.temporaryDatabase()
        let summary = try await CampaignSession.run(campaignPath: Repository.path("examples/toy-lab/campaign.yaml"),
                                                    databasePath: path, budget: 14)
        #expect(summary.experiments.count == 14)
        #expect(summary.experiments.allSatisfy { $0.outcome == .completed })
        let database = try LabDatabase(path: path)
        let runs = try database.runs(campaign: summary.campaignID)
        #expect(runs.count == 14)
        for (run, report) in zip(runs, summary.experiments) {
            let stored = try database.parameters(run: run.id).compactMapValues { value -> Double? in
                if case .quantity(let q) = value { return q.value }
                return nil
            }
            #expect(stored == report.parameters)
            #expect(try database.measurements(run: run.id, series: "absorbance").count == 3)
        }
        #expect(runs.prefix(5).allSatisfy { $0.chosenBy.contains("initial design") })
        #expect(runs.dropFirst(5).allSatisfy { $0.chosenBy.contains("planner") })
        let best = try #require(summary.best?.objective), initial = try #require(summary.bestInitial?.objective)
        #expect(best > initial)
    }
}

@Suite struct ResumeTests {
    static let demo = Repository.path("examples/toy-lab/campaign.yaml")

    static func points(_ reports: [ExperimentReport]) -> [[String: Double]] { reports.map(\.parameters) }

    @Test func aResumedCampaignContinuesItsDesignAndTellsThePlannerEveryEarlierResult() async throws {
        let path = Repository.temporaryDatabase()
        let first = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 3)
        let resumed = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 7, resume: first.campaignID)
        #expect(resumed.campaignID == first.campaignID)
        #expect(resumed.experiments.prefix(3).map(\.runID) == first.experiments.map(\.runID))
        #expect(try LabDatabase(path: path).runs(campaign: first.campaignID).count == 7)
        // The design goes on from its fourth point, as in a campaign that never stopped.
        let straight = try await CampaignSession.run(campaignPath: Self.demo, databasePath: Repository.temporaryDatabase(), budget: 5)
        #expect(Self.points(Array(resumed.experiments.prefix(5))) == Self.points(straight.experiments))
        // The planner knew the five earlier results: its proposals are new points, chosen by the model.
        for report in resumed.experiments.suffix(2) {
            #expect(report.chosenBy.contains("planner"))
            #expect(!Self.points(Array(resumed.experiments.prefix(5))).contains(report.parameters))
        }
    }

    @Test func aRunCutShortByACrashIsRunAgainAndNotCounted() async throws {
        let path = Repository.temporaryDatabase()
        let first = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 2)
        // A crash between starting the second run and recording its end.
        let cut = first.experiments[1].runID
        try await LabDatabase(path: path).pool.write { db in
            try db.execute(sql: "UPDATE run SET state = 'running' WHERE id = ?", arguments: [cut])
            try db.execute(sql: "DELETE FROM run_output WHERE run_id = ?", arguments: [cut])
        }
        let resumed = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 3, resume: first.campaignID)
        #expect(resumed.experiments.map(\.runID).first == first.experiments[0].runID)
        #expect(!resumed.experiments.map(\.runID).contains(cut))
        #expect(resumed.experiments[1].parameters == first.experiments[1].parameters)
        #expect(try LabDatabase(path: path).run(cut)?.state == "interrupted")
    }

    @Test func theExperimentACrashCutShortIsTheNextOneRunEvenWhenThePlannerChoseIt() async throws {
        let path = Repository.temporaryDatabase()
        // Five design points, then one proposal of the planner, cut short by a "crash".
        let first = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 6)
        let cut = first.experiments[5]
        #expect(cut.chosenBy.contains("planner"))
        try await LabDatabase(path: path).pool.write { db in
            try db.execute(sql: "UPDATE run SET state = 'running' WHERE id = ?", arguments: [cut.runID])
            try db.execute(sql: "DELETE FROM run_output WHERE run_id = ?", arguments: [cut.runID])
        }
        let resumed = try await CampaignSession.run(campaignPath: Self.demo, databasePath: path, budget: 7, resume: first.campaignID)
        #expect(resumed.experiments[5].parameters == cut.parameters)
        #expect(resumed.experiments[5].chosenBy == "\(cut.chosenBy) (again after run \(cut.runID) was interrupted)")
        #expect(resumed.experiments[6].chosenBy.contains("planner"))
        #expect(resumed.experiments[6].parameters != cut.parameters)
    }

    @Test func aResumedSweepGoesOnFromItsNextPoint() async throws {
        let path = Repository.temporaryDatabase(), sweep = Repository.path("examples/toy-lab/screen-grid.yaml")
        let first = try await CampaignSession.run(campaignPath: sweep, databasePath: path, budget: 2)
        let resumed = try await CampaignSession.run(campaignPath: sweep, databasePath: path, budget: 4, resume: first.campaignID)
        #expect(resumed.experiments.map(\.chosenBy) == (1...4).map { "sweep point \($0) of 24" })
        #expect(resumed.experiments.prefix(2).map(\.runID) == first.experiments.map(\.runID))
    }

    @Test func aCampaignWhoseFileChangedIsNotResumed() async throws {
        let path = Repository.temporaryDatabase()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(UUID()).yaml").path
        let text = try String(contentsOfFile: Self.demo, encoding: .utf8)
            .replacingOccurrences(of: "lab: lab.yaml", with: "lab: \(Repository.path("examples/toy-lab/lab.yaml"))")
            .replacingOccurrences(of: "protocol: ../../protocols/", with: "protocol: \(Repository.path("protocols"))/")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let first = try await CampaignSession.run(campaignPath: file, databasePath: path, budget: 1)
        try (text + "\n# edited\n").write(toFile: file, atomically: true, encoding: .utf8)
        let changed = await #expect(throws: LabError.self) {
            try await CampaignSession.run(campaignPath: file, databasePath: path, budget: 2, resume: first.campaignID)
        }
        #expect(changed?.message.contains("started from a different text than \(file)") == true)
        let missing = await #expect(throws: LabError.self) {
            try await CampaignSession.run(campaignPath: file, databasePath: path, budget: 2, resume: first.campaignID + 1)
        }
        #expect(missing?.message.contains("no campaign \(first.campaignID + 1)") == true)
        #expect(try LabDatabase(path: path).runs(campaign: first.campaignID).count == 1)
    }
}

@Suite struct SweepCampaignTests {
    @Test func aSweepRunsItsPointsInOrderAndStoresEachValue() async throws {
        let path = Repository.temporaryDatabase()
        let summary = try await CampaignSession.run(campaignPath: Repository.path("examples/toy-lab/screen-grid.yaml"),
                                                    databasePath: path, budget: 3)
        #expect(summary.experiments.map(\.chosenBy) == ["sweep point 1 of 24", "sweep point 2 of 24", "sweep point 3 of 24"])
        let database = try LabDatabase(path: path)
        let stored = try database.runs(campaign: summary.campaignID).map { run in
            try database.parameters(run: run.id).mapValues(\.description)
        }
        #expect(stored == [["temperature": "60.0 degC", "residence": "5.0 min"], ["temperature": "60.0 degC", "residence": "5.0 min"],
                           ["temperature": "60.0 degC", "residence": "15.0 min"]])
    }

    @Test func aConstrainedBatchedOptimisationKeepsEveryRunInsideItsConstraint() async throws {
        let path = Repository.temporaryDatabase()
        let summary = try await CampaignSession.run(campaignPath: Repository.path("examples/toy-lab/constrained-optimisation.yaml"),
                                                    databasePath: path, budget: 12)
        #expect(summary.experiments.count == 12)
        // $temperature + 2 degC/min * $residence <= 150 degC, for every run the planner chose.
        for report in summary.experiments {
            #expect(report.parameters["temperature"]! + 2 * report.parameters["residence"]! <= 150 + 1e-6, "\(report.parameters)")
        }
        #expect(summary.experiments.prefix(8).allSatisfy { $0.chosenBy.contains("initial design (Sobol)") })
        #expect(summary.experiments.dropFirst(8).allSatisfy { $0.chosenBy.contains("planner") })
    }

}

@Suite struct StopRuleTests {
    static func campaign(stop: String) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("stop-\(UUID()).yaml").path
        try """
            serendip: 1
            campaign: stop-rules
            protocol: \(Repository.path("protocols/reactor-yield.yaml"))
            lab: \(Repository.path("examples/toy-lab/lab.yaml"))
            seed: 42
            optimize:
              maximize: yield
              budget: 20
              initial_points: 5
              stop: \(stop)
            """.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    @Test func aTargetStopsTheCampaignAtTheFirstResultThatReachesIt() async throws {
        let summary = try await CampaignSession.run(campaignPath: Self.campaign(stop: "{ target: 3 }"),
                                                    databasePath: Repository.temporaryDatabase())
        let values = summary.experiments.compactMap(\.objective)
        #expect(summary.experiments.count < 20)
        #expect(values.last! >= 3 && values.dropLast().allSatisfy { $0 < 3 })
    }

    @Test func noImprovementForNRunsStopsTheCampaign() async throws {
        let summary = try await CampaignSession.run(campaignPath: Self.campaign(stop: "{ no_improvement: 2 }"),
                                                    databasePath: Repository.temporaryDatabase())
        let best = summary.experiments.map(\.bestSoFar)
        #expect(summary.experiments.count < 20)
        // The last two runs left the best where it was, and no earlier pair of runs did.
        let n = best.count
        #expect(best[n - 1] == best[n - 3] && best[n - 2] == best[n - 3])
        for i in 2..<(n - 1) { #expect(best[i] != best[i - 2], "stopped late: runs \(i - 1) and \(i) did not improve") }
    }
}
