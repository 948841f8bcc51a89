import Foundation
import GRDB
import LabCore
import LabDrivers
import LabScheduler
import LabSpec
import LabStorage
import Logging
import Synchronization
import Testing

/// The daemon's queue and scheduler over a real SQLite file and in-process instruments.
@Suite struct SchedulerTests {
    /// A lab of `count` reactors (in-process, zero latency) and a scheduler over a database.
    struct Bench {
        let database: LabDatabase
        let path: String
        let lab: LabConfig
        let scheduler: Scheduler

        /// `estimates`: each entry's duration is its `minutes` parameter, as the daemon's simulation would say.
        init(path: String = Repository.temporaryDatabase(), reactors: Int = 2, speed: Double = 3000, estimates: Bool = false) async throws {
            self.path = path
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            let lines = (1...reactors).map { "  r\($0): { driver: \(Repository.path("drivers/thermo-reactor.yaml")), simulate: true }" }
            let labFile = directory.appendingPathComponent("lab.yaml")
            try ("lab: reactors\ninstruments:\n" + lines.joined(separator: "\n") + "\nsimulation: { speed: \(speed) }\n")
                .write(to: labFile, atomically: true, encoding: .utf8)
            lab = try LabConfig.load(path: labFile.path)
            database = try LabDatabase(path: path)
            let clock = ScaledClock(rate: speed)
            let drivers = lab.drivers
            scheduler = Scheduler(.init(
                store: database, recorder: database, instruments: InstrumentConnector.inProcess(lab, clock: clock),
                pool: lab.instruments.mapValues(\.driver.name),
                compile: { try ProtocolParser.parse($0.text, path: $0.path, drivers: drivers) },
                clock: clock, logger: Logger(label: "test"), softwareVersion: "test",
                estimate: estimates ? { @Sendable _, parameters in
                    if case .quantity(let minutes)? = parameters["minutes"] { minutes.seconds } else { nil }
                } : nil))
            try await scheduler.start()
        }

        static let hold = """
            serendip: 1
            name: hold
            instruments: { reactor: thermo-reactor }
            parameters:
              minutes: { type: real, unit: min, range: [0, 600], default: 1 min }
            steps:
              - set: reactor.setpoint
                to: 30 degC
              - hold: $minutes
            """

        func submission(_ text: String = Bench.hold, minutes: Double = 1, requestID: String? = nil, notBefore: Date? = nil,
                        autostart: Bool = false, approval: Bool = false, priority: Int = 0) -> Submission {
            Submission(protocolSource: SourceText(path: "/lab/hold.yaml", text: text, sha256: String(text.hashValue)),
                       protocolName: "hold", parameters: ["minutes": .quantity(Quantity(minutes, LabUnit.named("min")!))],
                       priority: priority, notBefore: notBefore, owner: "tester", requestID: requestID, autostart: autostart,
                       needsApproval: approval)
        }

        /// Waits until every entry has ended.
        func drain() async throws {
            try await waitFor { try database.queueEntries().allSatisfy { $0.state.isFinal } }
        }
    }

    @Test func theQueueSurvivesARestartAndOnlyAutostartEntriesGoOnByThemselves() async throws {
        let later = Date().addingTimeInterval(3600)
        let first = try await Bench()
        let held = try await first.scheduler.submit([first.submission(notBefore: later)])[0]
        let auto = try await first.scheduler.submit([first.submission(notBefore: later, autostart: true)])[0]
        let gated = try await first.scheduler.submit([first.submission(approval: true)])[0]
        // A second process on the same database (the first one "died").
        let second = try await Bench(path: first.path)
        let states = Dictionary(uniqueKeysWithValues: try await second.scheduler.open().map { ($0.id, $0.state) })
        #expect(states == [held.id: .held, auto.id: .queued, gated.id: .awaitingApproval])
        #expect(try await second.scheduler.entry(held.id)?.note == "held after a daemon restart: release it to run it")
    }

    @Test func aRetriedSubmissionWithTheSameRequestIDIsQueuedOnce() async throws {
        let bench = try await Bench()
        let later = Date().addingTimeInterval(3600)
        let a = try await bench.scheduler.submit([bench.submission(requestID: "abc", notBefore: later)])
        let b = try await bench.scheduler.submit([bench.submission(requestID: "abc", notBefore: later)])
        #expect(a[0].id == b[0].id)
        #expect(try bench.database.queueEntries().count == 1)
        // The same key for other values is not a retry: refused, nothing queued.
        let reused = await #expect(throws: LabError.self) {
            try await bench.scheduler.submit([bench.submission(minutes: 7, requestID: "abc", notBefore: later)])
        }
        #expect(reused?.code == .conflict)
        #expect(try bench.database.queueEntries().count == 1)
    }

    @Test func anEntryAwaitingApprovalStartsOnlyOnceApprovedAndARejectedOneNever() async throws {
        let bench = try await Bench()
        let entries = try await bench.scheduler.submit([bench.submission(approval: true), bench.submission(approval: true)])
        try await Task.sleep(for: .milliseconds(100))
        #expect(try bench.database.runs().isEmpty, "nothing starts before approval")
        _ = try await bench.scheduler.apply(.approve, to: entries[0].id, by: "alice")
        _ = try await bench.scheduler.apply(.reject, to: entries[1].id, by: "alice")
        try await bench.drain()
        #expect(try bench.database.runs().map(\.id) == [entries[0].id], "the run takes its entry's number")
        #expect(try await bench.scheduler.entry(entries[1].id)?.state == .rejected)
        #expect(try await bench.scheduler.entry(entries[1].id)?.note == "reject by alice")
    }

    @Test func anInvalidSubmissionIsRefusedWithItsPositionAndNothingIsQueued() async throws {
        let bench = try await Bench()
        let broken = Bench.hold.replacingOccurrences(of: "reactor.setpoint", with: "reactor.setpiont")
        let error = await #expect(throws: ValidationError.self) {
            try await bench.scheduler.submit([bench.submission(), bench.submission(broken)])
        }
        #expect(error?.description.contains("/lab/hold.yaml:7:10: unknown channel 'reactor.setpiont'") == true, "\(String(describing: error))")
        #expect(try bench.database.queueEntries().isEmpty, "all or none")
    }

    @Test func higherPriorityRunsFirstAndHeldEntriesWait() async throws {
        let bench = try await Bench(reactors: 1)
        // The reactor is busy with a long run while the others are queued.
        let busy = try await bench.scheduler.submit([bench.submission(minutes: 60)])[0]
        let low = try await bench.scheduler.submit([bench.submission(priority: 0)])[0]
        let high = try await bench.scheduler.submit([bench.submission(priority: 5)])[0]
        let held = try await bench.scheduler.submit([bench.submission(priority: 9)])[0]
        _ = try await bench.scheduler.apply(.hold, to: held.id, by: "bob")
        try await waitFor { try bench.database.queueEntries().filter { $0.state.isFinal }.count == 3 }
        let order = try bench.database.runs().sorted { $0.startedAt < $1.startedAt }.map(\.id)
        #expect(order == [busy.id, high.id, low.id])
        #expect(try await bench.scheduler.entry(held.id)?.state == .held)
    }

    @Test func theQueueIsListedInTheOrderItWouldStartNotByPriorityAlone() async throws {
        // Real time, so that the running entry is still running while the list is read.
        let bench = try await Bench(reactors: 1, speed: 1, estimates: true)
        let busy = try await bench.scheduler.submit([bench.submission(minutes: 60)])[0]
        try await waitFor { try await bench.scheduler.entry(busy.id)?.state == .running }
        let tonight = try await bench.scheduler.submit([bench.submission(notBefore: Date().addingTimeInterval(7200), priority: 5)])[0]
        let now = try await bench.scheduler.submit([bench.submission(priority: 0)])[0]
        let held = try await bench.scheduler.submit([bench.submission(priority: 9)])[0]
        _ = try await bench.scheduler.apply(.hold, to: held.id, by: "bob")
        try await waitFor { await bench.scheduler.forecast().count == 3 }   // the estimates are in
        let listed = try await bench.scheduler.startOrder()
        #expect(listed.map(\.entry.id) == [busy.id, now.id, tonight.id, held.id])
        #expect(listed[1].window!.start < listed[2].window!.start)
        #expect(listed[3].window == nil)
        _ = try await bench.scheduler.apply(.cancel, to: busy.id, by: "the test")
    }

    @Test func noInstrumentIsEverHeldByTwoRunsAndDisjointRunsOverlap() async throws {
        // Random labs and queues; the recorded instrument intervals are checked afterwards.
        var random = SystemRandomNumberGenerator()
        for round in 0..<6 {
            let reactors = Int.random(in: 1...4, using: &random)
            let bench = try await Bench(reactors: reactors, speed: 6000)
            let two = Bench.hold.replacingOccurrences(of: "instruments: { reactor: thermo-reactor }",
                                                     with: "instruments: { reactor: thermo-reactor, other: thermo-reactor }")
            var submissions: [Submission] = []
            for _ in 0..<Int.random(in: 8...20, using: &random) {
                // Odd rounds mix runs that need two reactors into the queue.
                let needsTwo = round % 2 == 1 && reactors >= 2 && Bool.random(using: &random)
                submissions.append(bench.submission(needsTwo ? two : Bench.hold, minutes: Double.random(in: 0.5...5, using: &random),
                                                    priority: Int.random(in: 0...2, using: &random)))
            }
            _ = try await bench.scheduler.submit(submissions)
            try await bench.drain()
            let intervals = try await bench.database.pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT run_instrument.instrument AS instrument, run.id AS id, run.started_at AS started, run.ended_at AS ended
                    FROM run JOIN run_instrument ON run_instrument.run_id = run.id ORDER BY instrument, started
                    """).map { (instrument: $0["instrument"] as String, run: $0["id"] as Int64, start: $0["started"] as String, end: $0["ended"] as String) }
            }
            #expect(try bench.database.runs().allSatisfy { $0.state == "completed" }, "round \(round)")
            for (a, b) in zip(intervals, intervals.dropFirst()) where a.instrument == b.instrument {
                #expect(a.end <= b.start, "round \(round): \(a.instrument) held by runs \(a.run) and \(b.run) at once")
            }
            if reactors >= 2 && round % 2 == 0 {
                let runs = Dictionary(grouping: intervals, by: \.run).mapValues { ($0[0].start, $0[0].end) }
                let overlapping = runs.values.contains { a in runs.values.contains { b in a != b && a.0 < b.1 && b.0 < a.1 } }
                #expect(overlapping, "round \(round): with \(reactors) reactors, runs of one reactor each must run at the same time")
            }
        }
    }
}
