import Foundation
import Glibc
import Testing

/// The client commands as a person runs them: the built `serendip` as a child process.
@Suite struct ClientCommandTests {
    /// Runs `serendip ARGUMENTS` to its end; its exit status and what it printed (both streams).
    static func serendip(_ arguments: [String], in directory: URL? = nil) async throws -> (status: Int32, output: String) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-client-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let child = try Child(arguments, output: scratch, directory: directory)
        let status = try await child.exitStatus()
        return (status, try child.output())
    }

    static func emptyDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.path
    }

    @Test func aClientWithNoDaemonInItsDataDirectorySaysHowToStartOneAndExits3() async throws {
        let empty = try Self.emptyDirectory()
        let (status, output) = try await Self.serendip(["queue", "--data", empty])
        #expect(status == 3)
        #expect(output == "no Serendip daemon is running in \(empty) (start one with: serendip serve --lab LAB --data \(empty))\n")
    }

    @Test func aDataDirectoryThatDoesNotExistIsReportedTheSameWay() async throws {
        let missing = "/tmp/serendip-missing-\(UUID().uuidString)"
        let (status, output) = try await Self.serendip(["status", "4", "--data", missing, "--json"])
        #expect(status == 3)
        #expect(output.hasPrefix("no Serendip daemon is running in \(missing)"))
    }

    @Test func aClientCommandWithoutADataDirectorySaysHowToGiveOne() async throws {
        let (status, output) = try await Self.serendip(["queue"])
        #expect(status == 64)
        #expect(output.contains("--data DIR, or set SERENDIP_DATA=DIR"))
    }

    @Test func submitReportsAParameterTheProtocolDoesNotHaveBeforeAskingAnyDaemon() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "reactor-yield", "--param", "temprature=80 degC", "--data", try Self.emptyDirectory()])
        #expect(status == 1)
        #expect(output.contains("--param temprature: reactor-yield has no parameter 'temprature' (it has: "))
    }

    @Test func submitReportsAValueOfTheWrongKindBeforeAskingAnyDaemon() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "protocols/reactor-yield.yaml", "--param", "temperature=5 min", "--data", try Self.emptyDirectory()])
        #expect(status == 1)
        #expect(output.hasPrefix("--param temperature=5 min: "))
    }

    @Test func submitOfAProtocolNameWithNoFileNamesWhereItLooked() async throws {
        let (status, output) = try await Self.serendip(["submit", "no-such-protocol", "--data", try Self.emptyDirectory()])
        #expect(status == 2)
        #expect(output.contains("no protocol file no-such-protocol nor protocols/no-such-protocol.yaml in "))
    }

    @Test func anUnreadableStartTimeIsRefusedWithTheFormsItTakes() async throws {
        let (status, output) = try await Self.serendip(
            ["submit", "reactor-yield", "--not-before", "soon", "--data", try Self.emptyDirectory()])
        #expect(status == 64)
        #expect(output.contains("--not-before soon: write an ISO 8601 time with a zone"))
    }
}

/// A stand-in daemon for what the client does with a reply: a real Unix socket in DIR that answers
/// one request with a fixed line and keeps the request it received.
final class OneReplyServer: @unchecked Sendable {
    let directory: String
    private let fd: Int32
    private let done = DispatchSemaphore(value: 0)
    private(set) var request = ""

    init(reply: String) throws {
        directory = try ClientCommandTests.emptyDirectory()
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        fd = listener
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array((directory + "/serendip.sock").utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 1) == 0 else { throw POSIXError(.EADDRINUSE) }
        // A thread of its own: Swift's cooperative threads (dispatch's global queues on Linux) may all
        // be blocked in `received()` by tests running in parallel.
        Thread { [self] in
            let connection = accept(listener, nil, nil)
            var received = Data()
            var byte: UInt8 = 0
            while recv(connection, &byte, 1, 0) == 1 && byte != UInt8(ascii: "\n") { received.append(byte) }
            request = String(decoding: received, as: UTF8.self)
            let line = Array((reply + "\n").utf8)
            _ = send(connection, line, line.count, Int32(MSG_NOSIGNAL))
            close(connection)
            done.signal()
        }.start()
    }

    /// The request line the client sent, once it has been answered.
    /// Bounded: a client that never connected fails the test instead of hanging it.
    func received() -> String {
        let answered = done.wait(timeout: .now() + 30) == .success
        close(fd)
        return answered ? request : ""
    }
}

extension ClientCommandTests {
    static let entry = """
        {"run":7,"state":"queued","protocol":"reactor-yield","parameters":{"temperature":{"value":80,"unit":"degC"}},\
        "priority":2,"owner":"ada","chosen_by":"user","submitted_at":"2026-11-30T04:00:00Z",\
        "expected_start":"2026-11-30T05:00:00Z","expected_end":"2026-11-30T05:30:00Z"}
        """

    @Test func anInvalidFileReplyIsPrintedAsTheDaemonWroteItAndExits1() async throws {
        let diagnostics = "protocols/x.yaml:14:9: unknown channel 'reactor.temprature' (did you mean 'temperature'?)\\n   14 |   - set: reactor.temprature\\n      |         ^"
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"error":{"code":-32010,"message":"\#(diagnostics)","data":{"diagnostics":[]}}}"#)
        let (status, output) = try await Self.serendip(["submit", "reactor-yield", "--param", "temperature=80 degC",
                                                        "--param", "residence=12 min", "--data", server.directory])
        #expect(status == 1)
        #expect(output == "protocols/x.yaml:14:9: unknown channel 'reactor.temprature' (did you mean 'temperature'?)\n   14 |   - set: reactor.temprature\n      |         ^\n")
        #expect(server.received().contains(#""method":"queue.add""#))
    }

    @Test func submitSendsTheProtocolsAbsolutePathTextAndTypedParameters() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":\#(Self.entry)}"#)
        let (status, output) = try await Self.serendip(
            ["submit", "reactor-yield", "--param", "temperature=80 degC", "--param", "residence=12", "--priority", "2",
             "--not-before", "2026-11-30T05:00:00Z", "--request-id", "k1", "--data", server.directory])
        #expect(status == 0)
        #expect(output.hasPrefix("queued as run 7; expected to start at "))
        let request = try #require(try JSONSerialization.jsonObject(with: Data(server.received().utf8)) as? [String: Any])
        let params = try #require(request["params"] as? [String: Any])
        let sent = try #require(params["protocol"] as? [String: String])
        #expect(sent["path"] == Repository.path("protocols/reactor-yield.yaml"))
        #expect(sent["text"] == (try String(contentsOfFile: Repository.path("protocols/reactor-yield.yaml"), encoding: .utf8)))
        let values = try #require(params["parameters"] as? [String: [String: Any]])
        #expect(values["temperature"]?["value"] as? Double == 80 && values["temperature"]?["unit"] as? String == "degC")
        #expect(values["residence"]?["value"] as? Double == 12 && values["residence"]?["unit"] as? String == "min", "a bare number is in the parameter's unit")
        #expect(params["priority"] as? Int == 2 && params["request_id"] as? String == "k1")
        #expect(params["not_before"] as? String == "2026-11-30T05:00:00Z")
    }

    @Test func jsonPrintsTheResultWithSortedKeysOnOneLine() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":{"b":1,"a":{"d":true,"c":"x"}}}"#)
        let (status, output) = try await Self.serendip(["status", "7", "--json", "--data", server.directory])
        #expect(status == 0)
        #expect(output == #"{"a":{"c":"x","d":true},"b":1}"# + "\n")
        #expect(server.received().contains(#""params":{"run":7}"#))
    }

    @Test func statusPrintsTheEntrysFieldsOnePerLine() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":\#(Self.entry)}"#)
        let (status, output) = try await Self.serendip(["status", "7", "--data", server.directory])
        #expect(status == 0)
        #expect(output.contains("run:            7\nstate:          queued\nprotocol:       reactor-yield\nparameters:     temperature=80 degC\n"))
        #expect(output.contains("owner:          ada\n"))
    }

    @Test func anEmptyQueueSaysSo() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":[]}"#)
        let (status, output) = try await Self.serendip(["queue", "--data", server.directory])
        #expect(status == 0)
        #expect(output == "the queue is empty\n")
    }

    @Test func aRunThatDoesNotExistIsReportedWithTheDaemonsMessageAndExits1() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"there is no queue entry 99"}}"#)
        let (status, output) = try await Self.serendip(["hold", "99", "--data", server.directory])
        #expect(status == 1)
        #expect(output == "queue.hold: there is no queue entry 99 (error -32004)\n")
    }
}

extension ClientCommandTests {
    @Test func campaignStartSendsTheCampaignAndTheProtocolItNamesRelativeToIt() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":{"campaign":4,"name":"yield","state":"running","experiments":[],"waiting":[]}}"#)
        let (status, output) = try await Self.serendip(["campaign", "start", "examples/toy-lab/campaign.yaml", "--approval", "--data", server.directory])
        #expect(status == 0)
        #expect(output == "started campaign 4 (follow it with: serendip campaign status 4)\n")
        let request = try #require(try JSONSerialization.jsonObject(with: Data(server.received().utf8)) as? [String: Any])
        #expect(request["method"] as? String == "campaign.start")
        let params = try #require(request["params"] as? [String: Any])
        #expect((params["campaign"] as? [String: String])?["path"] == Repository.path("examples/toy-lab/campaign.yaml"))
        #expect((params["protocol"] as? [String: String])?["path"] == Repository.path("protocols/reactor-yield.yaml"))
        #expect((params["protocol"] as? [String: String])?["text"]?.hasPrefix("serendip: 1\nname: reactor-yield") == true)
        #expect(params["approval"] as? Bool == true)
    }

    @Test func campaignStatusPrintsTheExperimentsInTheDemosColumns() async throws {
        let server = try OneReplyServer(reply: #"""
            {"jsonrpc":"2.0","id":1,"result":{"campaign":4,"name":"yield","state":"running","objective":"yield","best":0.61,"waiting":[9],"experiments":[\#
            {"index":1,"run":7,"parameters":{"temperature":{"value":80,"unit":"degC"},"residence":{"value":12,"unit":"min"}},"chosen_by":"sobol","objective":0.52,"best":0.52,"outcome":"completed"},\#
            {"index":2,"run":8,"parameters":{"temperature":{"value":95,"unit":"degC"},"residence":{"value":8,"unit":"min"}},"chosen_by":"planner","best":0.52,"outcome":"failed","error":"reactor timed out"}]}}
            """#)
        let (status, output) = try await Self.serendip(["campaign", "status", "4", "--data", server.directory])
        #expect(status == 0)
        #expect(output == """
            campaign 4 (yield) is running; 2 experiments, best 0.61
             #  residence     temperature   yield         best          chosen by
             1  12 min        80 degC       0.52          0.52          sobol
             2  8 min         95 degC       failed        0.52          planner
                  reactor timed out
            waiting in the queue: run 9

            """)
    }

    @Test func notBeforeAsAClockTimeAlreadyPastMeansTomorrow() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":\#(Self.entry)}"#)
        let (status, _) = try await Self.serendip(["submit", "reactor-yield", "--param", "temperature=80 degC", "--param", "residence=12 min",
                                                   "--not-before", "00:00", "--data", server.directory])
        #expect(status == 0)
        let request = try #require(try JSONSerialization.jsonObject(with: Data(server.received().utf8)) as? [String: Any])
        let sent = try #require(((request["params"] as? [String: Any])?["not_before"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        let midnight = Calendar.current.startOfDay(for: Date().addingTimeInterval(86400))
        #expect(abs(sent.timeIntervalSince(midnight)) < 2, "the next local midnight, not the one past")
    }

    @Test func notBeforeAsAnOffsetIsSentAsTheTimeItNames() async throws {
        let server = try OneReplyServer(reply: #"{"jsonrpc":"2.0","id":1,"result":\#(Self.entry)}"#)
        let before = Date()
        let (status, _) = try await Self.serendip(["submit", "reactor-yield", "--param", "temperature=80 degC", "--param", "residence=12 min",
                                                   "--not-before", "+2h", "--data", server.directory])
        #expect(status == 0)
        let request = try #require(try JSONSerialization.jsonObject(with: Data(server.received().utf8)) as? [String: Any])
        let sent = try #require(((request["params"] as? [String: Any])?["not_before"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) })
        #expect(sent.timeIntervalSince(before) > 7190 && sent.timeIntervalSince(before) < 7260)
    }
}

// MARK: - Against the daemon

/// `serendip serve` on the toy lab as a child process, driven by the client commands as a person
/// types them, with their text and their --json output.
@Suite(.serialized) struct ClientServeTests {
    /// A daemon in a fresh data directory, with its socket answering.
    struct Served {
        let directory: URL
        let child: Child
        var data: String { directory.path }

        init() async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("serendip-serve-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            child = try Child(["serve", "--lab", "examples/toy-lab/lab.yaml", "--data", directory.path],
                              output: FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID()).txt"))
            let socket = directory.appendingPathComponent("serendip.sock").path
            let deadline = ContinuousClock.now + .seconds(60)
            while try await !answers(socket) {
                guard ContinuousClock.now < deadline, child.process.isRunning else {
                    child.signal(SIGKILL)
                    throw CancellationError()
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        private func answers(_ socket: String) async throws -> Bool {
            guard FileManager.default.fileExists(atPath: socket) else { return false }
            return try await client(["queue"]).status == 0
        }

        func client(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await ClientCommandTests.serendip(arguments + ["--data", data])
        }

        func json(_ arguments: [String]) async throws -> Any {
            let (status, output) = try await client(arguments + ["--json"])
            #expect(status == 0, "\(arguments): \(output)")
            return try JSONSerialization.jsonObject(with: Data(output.utf8))
        }

        func stop() async throws -> Int32 {
            child.signal(SIGTERM)
            return try await child.exitStatus()
        }
    }

    @Test func submitQueueStatusHoldReleaseAndCancelDriveOneEntry() async throws {
        let served = try await Served()
        // Not before two hours from now: the entry waits, so holding and cancelling it are not a race.
        let submitted = try await served.client(["submit", "reactor-yield", "--param", "temperature=80 degC",
                                                 "--param", "residence=12", "--not-before", "+2h", "--priority", "3"])
        #expect(submitted.status == 0, "\(submitted.output)")
        #expect(submitted.output.hasPrefix("queued as run 1"))

        let queue = try await served.client(["queue"])
        #expect(queue.output.hasPrefix("run  state   protocol       priority  owner"), "\(queue.output)")
        #expect(queue.output.contains("1    queued  reactor-yield  3"), "\(queue.output)")
        let listed = try #require(try await served.json(["queue"]) as? [[String: Any]])
        #expect(listed.map { $0["run"] as? Int } == [1])

        let status = try await served.client(["status", "1"])
        #expect(status.output.contains("parameters:     residence=12 min, temperature=80 degC"), "\(status.output)")
        let entry = try #require(try await served.json(["status", "1"]) as? [String: Any])
        #expect(entry["state"] as? String == "queued" && entry["priority"] as? Int == 3)
        #expect((entry["parameters"] as? [String: [String: Any]])?["temperature"]?["unit"] as? String == "degC")

        #expect(try await served.client(["hold", "1"]).output.hasPrefix("run 1 is held"))
        #expect(try await served.client(["release", "1"]).output.hasPrefix("run 1 is queued"))
        let cancelled = try #require(try await served.json(["cancel", "1"]) as? [String: Any])
        #expect(cancelled["state"] as? String == "cancelled")
        #expect(try await served.client(["queue"]).output == "the queue is empty\n")
        #expect(try await served.client(["queue", "--all"]).output.contains("cancelled"))
        #expect(try await served.stop() == 0)
    }

    @Test func aProtocolThatDoesNotValidateIsRefusedAtItsLineAndColumn() async throws {
        let served = try await Served()
        let file = served.directory.appendingPathComponent("typo.yaml")
        try """
            serendip: 1
            name: typo
            instruments: { reactor: thermo-reactor }
            steps:
              - set: reactor.temprature
                to: 40 degC
            """.write(to: file, atomically: true, encoding: .utf8)
        let (status, output) = try await served.client(["submit", file.path])
        #expect(status == 1)
        #expect(output.contains("\(file.path):5:"), "\(output)")
        #expect(try await served.stop() == 0)
    }

    @Test func aCampaignStartsShowsItsRunsAndStops() async throws {
        let served = try await Served()
        let campaign = try served.longSweep()
        let started = try await served.client(["campaign", "start", campaign])
        #expect(started.output.hasPrefix("started campaign 1"), "\(started.output)")
        try await waitFor {
            let status = try JSONSerialization.jsonObject(with: Data(served.runSync(["campaign", "status", "1", "--json"]).utf8)) as? [String: Any]
            return !((status?["waiting"] as? [Any]) ?? []).isEmpty
        }
        let status = try await served.client(["campaign", "status", "1"])
        #expect(status.output.hasPrefix("campaign 1 (long-sweep) is running"), "\(status.output)")
        #expect(status.output.contains("waiting in the queue: run "), "\(status.output)")
        let queue = try #require(try await served.json(["queue"]) as? [[String: Any]])
        #expect(queue.allSatisfy { $0["campaign"] as? Int == 1 && $0["protocol"] as? String == "long-hold" })
        let stopped = try #require(try await served.json(["campaign", "stop", "1"]) as? [String: Any])
        #expect(stopped["state"] as? String == "stopped")
        #expect(try await served.client(["campaign", "list"]).output.contains("long-sweep  stopped"))
        #expect(try await served.stop() == 0)
    }

    @Test func approveLetsARunStartAndRejectKeepsOneFromEverStarting() async throws {
        let served = try await Served()
        #expect(try await served.client(["campaign", "start", try served.longSweep(), "--approval"]).status == 0)
        var waiting: [[String: Any]] = []
        try await waitFor {
            let listed = try JSONSerialization.jsonObject(with: Data(served.runSync(["queue", "--json"]).utf8)) as? [[String: Any]]
            waiting = (listed ?? []).filter { $0["state"] as? String == "awaiting_approval" }
            return !waiting.isEmpty
        }
        let run = try #require(waiting.first?["run"] as? Int)
        #expect(try await served.client(["reject", "\(run)"]).output.hasPrefix("run \(run) is rejected"))
        try await waitFor {
            let listed = try JSONSerialization.jsonObject(with: Data(served.runSync(["queue", "--json"]).utf8)) as? [[String: Any]]
            waiting = (listed ?? []).filter { $0["state"] as? String == "awaiting_approval" }
            return !waiting.isEmpty
        }
        let next = try #require(waiting.first?["run"] as? Int)
        let approved = try await served.client(["approve", "\(next)"])
        #expect(approved.output.hasPrefix("run \(next) is queued") || approved.output.hasPrefix("run \(next) is running"), "\(approved.output)")
        // SIGTERM with that run possibly running: aborted safely, and the daemon exits 0.
        #expect(try await served.stop() == 0)
    }
}

extension ClientServeTests.Served {
    /// A two-point sweep whose runs hold the reactor for ten hours (12 s at the toy lab's 3000x):
    /// the campaign is still running while the test looks at it. Returns the campaign file's path.
    func longSweep() throws -> String {
        try """
            serendip: 1
            name: long-hold
            instruments: { reactor: thermo-reactor }
            parameters:
              temperature: { type: real, unit: degC, range: [30, 60] }
            steps:
              - set: reactor.setpoint
                to: $temperature
              - hold: 10 h
            """.write(to: directory.appendingPathComponent("long-hold.yaml"), atomically: true, encoding: .utf8)
        let campaign = directory.appendingPathComponent("campaign.yaml")
        try """
            serendip: 1
            campaign: long-sweep
            protocol: long-hold.yaml
            sweep:
              vary:
                temperature: [40 degC, 50 degC]
            """.write(to: campaign, atomically: true, encoding: .utf8)
        return campaign.path
    }
}

extension ClientServeTests.Served {
    /// A client call run to its end synchronously, for a condition polled by waitFor.
    func runSync(_ arguments: [String]) throws -> String {
        try runToEnd(Child.executable.path, arguments + ["--data", data]).output
    }
}

extension ClientCommandTests {
    /// A time is never half read: a time without a zone, a day the month lacks, or a span where a
    /// fixed window is needed is refused, not taken as something else.
    @Test(arguments: [
        (["runs", "--since", "2026-11-30T23:59"], "--since 2026-11-30T23:59: give a date"),
        (["runs", "--since", "2026-02-30"], "--since 2026-02-30: give a date"),
        (["audit", "--since", "2026-11-30T12:20:38.050"], "2026-11-30T12:20:38.050"),
        (["usage", "--from", "7d", "--to", "2026-12-01"], "--from 7d: give a date"),
        (["usage", "--from", "2026-11-30", "--to", "2026-11-31"], "--to 2026-11-31: give a date"),
    ])
    func aTimeThatIsNotWhollyUnderstoodIsRefused(arguments: [String], message: String) async throws {
        let (status, output) = try await Self.serendip(arguments + ["--data", try Self.emptyDirectory()])
        #expect(status == 64, "\(output)")
        #expect(output.contains(message), "\(output)")
    }

    @Test func aDateAndAZonedTimeAreAccepted() async throws {
        for since in ["2026-11-30", "2026-11-30T08:00:00Z", "2026-11-30T09:00:00+01:00", "2026-11-30T08:00:00.250Z", "90m"] {
            let (status, output) = try await Self.serendip(["runs", "--since", since, "--data", try Self.emptyDirectory()])
            #expect(status != 64, "\(since): \(output)")
        }
    }
}

extension ClientCommandTests {
    /// `serendip ports` lists what libserialport finds: each a character device that exists, the same
    /// in text and JSON (a pseudo-terminal is not among them).
    @Test func portsListsTheMachinesSerialDevices() async throws {
        let (status, output) = try await Self.serendip(["ports", "--json"])
        #expect(status == 0, "\(output)")
        let ports = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
        for port in ports {
            let path = try #require(port["path"] as? String)
            var info = stat()
            #expect(stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR, "\(path)")
            #expect(["usb", "bluetooth", "native"].contains(port["transport"] as? String ?? ""))
        }
        let text = try await Self.serendip(["ports"]).output
        // Each adapter with a serial number gets a second line: the lab config's `usb:` binding for it.
        let bindings = ports.filter { $0["usb_serial"] != nil }.count
        #expect(ports.isEmpty ? text == "no serial ports found\n" : text.split(separator: "\n").count == ports.count + bindings, "\(text)")
    }
}
