import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Logging
import Synchronization
import Testing

/// Drivers with a device watchdog, served by their simulators over a real socket and a real pty.
enum WatchdogDrivers {
    static func reactor(seconds: Int = 2, feedEvery: String = "100 ms") throws -> DriverSpec {
        try DriverSpec.parse("""
            driver: thermo-reactor
            transport: modbus
            timeout: 500 ms
            watchdog: { holding: 200, value: \(seconds), feed_every: \(feedEvery) }
            channels:
              setpoint:    { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
              temperature: { input: 0, type: float32, unit: degC }
              stirrer:     { coil: 5, access: rw }
            safe_state: { setpoint: 25 degC, stirrer: false }
            """, path: "thermo-reactor.yaml")
    }

    static func pump(seconds: String = "2 s", feedEvery: String = "100 ms") throws -> DriverSpec {
        try DriverSpec.parse("""
            driver: syringe-pump
            transport: serial
            serial: { timeout: 500 ms }
            watchdog: { command: "WDT {value}", value: \(seconds), feed_every: \(feedEvery) }
            channels:
              rate:    { query: "RATE?", write: "RATE {value}", unit: mL/min, access: rw, limits: [0, 50] }
              running: { on: "RUN", off: "STOP", type: bool }
            safe_state: { rate: 0 mL/min, running: false }
            """, path: "syringe-pump.yaml")
    }

    static func connect(_ simulator: ModbusSimulator, connectAttempts: Int = 3) -> ModbusInstrument {
        ModbusInstrument(name: "reactor", spec: simulator.spec, client: ModbusTCPClient(.init(
            host: "127.0.0.1", port: simulator.port, responseTimeout: simulator.spec.responseTimeout, connectAttempts: connectAttempts)))
    }

    static func connect(_ simulator: SerialSimulator) -> SerialInstrument {
        SerialInstrument(name: "pump", spec: simulator.spec, line: SerialLine(path: simulator.path, timeout: simulator.spec.serial.timeoutSeconds))
    }
}

/// Records the hub's reports.
final class HealthLog: Sendable {
    private let changes = Mutex<[String]>([])
    func record(_ name: String, _ health: InstrumentHub.Health) {
        changes.withLock { $0.append(health == .connected ? "\(name) back" : "\(name) lost") }
    }
    var all: [String] { changes.withLock { $0 } }
}

func isLoss(_ error: any Error) -> Bool { InstrumentHub.isLoss(error) }

@Suite struct DriverFileWatchdogTests {
    @Test func aWatchdogFeedsEveryThirdOfItsValueUnlessTheFileSaysOtherwise() throws {
        let spec = try DriverSpec.parse("""
            driver: d
            transport: modbus
            watchdog: { holding: 200, value: 6 }
            channels: { x: { input: 0 } }
            """, path: "d.yaml")
        #expect(spec.watchdog == DriverSpec.Watchdog(target: .holding(200), seconds: 6, feedEvery: 2))
        #expect(spec.responseTimeout == 1)
    }

    @Test func aSerialQueryIsNotRepeatedByDefault() throws {
        #expect(try WatchdogDrivers.pump().channel("rate")?.retries == 0)
    }

    @Test func aWatchdogFedAsOftenAsItRunsOutIsRefusedAtItsPosition() throws {
        let text = """
            driver: d
            transport: modbus
            watchdog: { holding: 200, value: 2, feed_every: 3 s }
            channels: { x: { input: 0 } }
            """
        #expect { try DriverSpec.parse(text, path: "d.yaml") } throws: { error in
            String(describing: error).contains("d.yaml:3:") && String(describing: error).contains("feed_every must be shorter")
        }
    }
}

@Suite struct InstrumentLossTests {
    @Test func anUnpluggedModbusDeviceIsLostAndAnswersAgainOncePluggedIn() async throws {
        let simulator = try ModbusSimulator(spec: WatchdogDrivers.reactor(), model: InertModel())
        defer { simulator.stop() }
        let reactor = WatchdogDrivers.connect(simulator)
        try await reactor.write("setpoint", .real(60))
        simulator.unplug()
        await #expect { try await reactor.read("setpoint") } throws: { ($0 as? LabError)?.code == .instrumentLost }
        await #expect { try await reactor.write("stirrer", .bool(true)) } throws: { ($0 as? LabError)?.code == .instrumentLost }
        simulator.plugIn()
        #expect(try await reactor.read("setpoint") == .real(60))
        #expect(simulator.wireLog.entries(for: "stirrer").isEmpty)
    }

    @Test func aDeviceThatWasAwayWhileIdleIsReportedLostBeforeAnythingIsSentAndThenUsedAgain() async throws {
        let simulator = try ModbusSimulator(spec: WatchdogDrivers.reactor(), model: InertModel())
        defer { simulator.stop() }
        let reactor = WatchdogDrivers.connect(simulator)
        try await reactor.write("stirrer", .bool(false))
        simulator.unplug()
        simulator.plugIn()
        // It may have restarted and forgotten its state: the run must hear of it, and nothing is sent.
        await #expect { try await reactor.write("stirrer", .bool(true)) } throws: {
            ($0 as? LabError)?.code == .instrumentLost && "\($0)".contains("closed the connection since the last request")
        }
        #expect(simulator.wireLog.entries(for: "stirrer").map(\.value) == [0])
        // The next request goes out on a fresh connection.
        try await reactor.write("stirrer", .bool(true))
        #expect(simulator.wireLog.entries(for: "stirrer").map(\.value) == [0, 1])
    }

    @Test func anUnpluggedSerialAdapterIsLostAndTheDeviceIsUsedAgainAtTheSamePath() async throws {
        let simulator = try SerialSimulator(spec: WatchdogDrivers.pump(), model: InertModel())
        defer { simulator.stop() }
        let pump = WatchdogDrivers.connect(simulator)
        try await pump.write("rate", .real(5))
        simulator.unplug()
        await #expect { try await pump.write("rate", .real(6)) } throws: { ($0 as? LabError)?.code == .instrumentLost }
        simulator.plugIn()
        try await pump.write("rate", .real(7))
        #expect(simulator.wireLog.entries(for: "rate").map(\.value) == [5, 7])
    }

    @Test func aLineThatHungUpWhileIdleIsOpenedAgainBeforeTheNextCommand() async throws {
        let simulator = try SerialSimulator(spec: WatchdogDrivers.pump(), model: InertModel())
        defer { simulator.stop() }
        let pump = WatchdogDrivers.connect(simulator)
        try await pump.write("rate", .real(5))
        simulator.unplug()
        simulator.plugIn()
        try await pump.write("rate", .real(7))
        #expect(simulator.wireLog.entries(for: "rate").map(\.value) == [5, 7])
    }

    @Test func theHubReportsAnUnpluggedInstrumentLostAndThenBack() async throws {
        let reactorSim = try ModbusSimulator(spec: WatchdogDrivers.reactor(), model: InertModel())
        let pumpSim = try SerialSimulator(spec: WatchdogDrivers.pump(), model: InertModel())
        defer { reactorSim.stop(); pumpSim.stop() }
        let hub = InstrumentHub(instruments: ["reactor": WatchdogDrivers.connect(reactorSim), "pump": WatchdogDrivers.connect(pumpSim)],
                                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), backoff: 0.01...0.1, probeInterval: 0.05)
        let log = HealthLog()
        await hub.onChange { log.record($0, $1) }
        await hub.start()
        defer { Task { await hub.stop() } }
        reactorSim.unplug()
        pumpSim.unplug()
        #expect(try await eventually { Set(log.all) == ["reactor lost", "pump lost"] })
        guard case .lost = await hub.health("reactor") else { Issue.record("reactor not lost"); return }
        reactorSim.plugIn()
        pumpSim.plugIn()
        #expect(try await eventually { log.all.count == 4 })
        #expect(Set(log.all.suffix(2)) == ["reactor back", "pump back"])
        #expect(await hub.health("pump") == .connected)
    }

    @Test func theHubFindsALossByProbingAnInstrumentWithoutAWatchdog() async throws {
        let spec = try DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml"))
        #expect(spec.watchdog == nil)
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let hub = InstrumentHub(instruments: ["reactor": WatchdogDrivers.connect(simulator)],
                                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                backoff: 0.01...0.1, probeInterval: 0.05)
        let log = HealthLog()
        await hub.onChange { log.record($0, $1) }
        await hub.start()
        defer { Task { await hub.stop() } }
        simulator.unplug()
        #expect(try await eventually { log.all == ["reactor lost"] })
        simulator.plugIn()
        #expect(try await eventually { log.all == ["reactor lost", "reactor back"] })
    }

    @Test func aLossTheEngineReportsIsRecoveredByTheHub() async throws {
        let simulator = try ModbusSimulator(spec: WatchdogDrivers.reactor(), model: InertModel())
        defer { simulator.stop() }
        let hub = InstrumentHub(instruments: ["reactor": WatchdogDrivers.connect(simulator)], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                backoff: 0.01...0.1, probeInterval: 100)
        let log = HealthLog()
        await hub.onChange { log.record($0, $1) }
        await hub.start()
        defer { Task { await hub.stop() } }
        await hub.reportLost("reactor", error: "no reply within 0.5 s")
        #expect(await hub.health("reactor") == .lost(error: "no reply within 0.5 s"))
        #expect(try await eventually { log.all == ["reactor lost", "reactor back"] })
    }
}

@Suite struct DeviceWatchdogTests {
    @Test func aModbusWatchdogIsArmedOnConnectFedWhileTheHubRunsAndTripsWhenItStops() async throws {
        let model = RecordingModel()
        // 4 s: long enough that a busy test machine's stalls do not trip it while the hub feeds it.
        let simulator = try ModbusSimulator(spec: WatchdogDrivers.reactor(seconds: 4), model: model)
        defer { simulator.stop() }
        let reactor = WatchdogDrivers.connect(simulator)
        try await reactor.write("setpoint", .real(80))
        let hub = InstrumentHub(instruments: ["reactor": reactor], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), probeInterval: 100)
        await hub.start()
        #expect(try await eventually { simulator.wireLog.entries(for: "watchdog").count >= 10 })
        #expect(simulator.wireLog.entries(for: "watchdog").allSatisfy { $0.value == 4 })
        #expect(simulator.wireLog.entries.filter(\.byDevice).isEmpty)
        await hub.stop()
        let stopped = WireLog.now()
        #expect(try await eventually { !simulator.wireLog.entries.filter(\.byDevice).isEmpty })
        let own = simulator.wireLog.entries.filter(\.byDevice)
        let lastFeed = simulator.wireLog.entries(for: "watchdog").last!.time
        #expect(Set(own.map(\.channel)) == ["setpoint", "stirrer"])
        // Not before the watchdog ran out; well within its value and a margin for a busy machine.
        #expect(own.allSatisfy { $0.time >= lastFeed + 4 && $0.time < stopped + 4 + 3 })
        #expect(model.writes.withLock { $0.suffix(2) }.sorted() == ["setpoint=25.0", "stirrer=0.0"])
        // What the device did is what a client then reads.
        #expect(try await reactor.read("setpoint") == .real(25))
    }

    @Test func aSerialWatchdogTripsToTheSafeStateWhenTheFeedsStop() async throws {
        let model = RecordingModel()
        let simulator = try SerialSimulator(spec: WatchdogDrivers.pump(seconds: "1 s"), model: model)
        defer { simulator.stop() }
        let hub = InstrumentHub(instruments: ["pump": WatchdogDrivers.connect(simulator)], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), probeInterval: 100)
        await hub.start()
        #expect(try await eventually { simulator.wireLog.entries(for: "watchdog").count >= 3 })
        await hub.stop()
        #expect(try await eventually { simulator.wireLog.entries.filter(\.byDevice).count == 2 })
        let writes = model.writes.withLock { $0 }
        #expect(writes.sorted() == ["rate=0.0", "running=0.0"])
    }
}

/// Descriptors of this process that belong to one simulated device and its driver. Other suites
/// run at the same time and open and close hundreds, so the whole count says nothing; these do.
enum DeviceDescriptors {
    private static func links() -> [(fd: String, target: String)] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")).map { (fd, $0) }
        }
    }

    /// A /proc file whole (they report size 0, and are made as they are read).
    private static func readAll(_ path: String) -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sockets whose local or remote port is `port`: the driver's connection, the device's end of
    /// it, and the device's listening socket.
    static func sockets(port: Int) -> Int {
        var inodes: Set<String> = []
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            let text = readAll(table)
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 9 else { continue }
                let ports = [fields[1], fields[2]].compactMap { $0.split(separator: ":").last.flatMap { Int($0, radix: 16) } }
                if ports.contains(port) { inodes.insert(String(fields[9])) }
            }
        }
        return links().filter { $0.target.hasPrefix("socket:[") && inodes.contains(String($0.target.dropFirst(8).dropLast())) }.count
    }

    /// The pseudo-terminal index behind a descriptor: /dev/pts/N, or /dev/ptmx with its fdinfo's tty-index.
    private static func ptyIndex(_ link: (fd: String, target: String)) -> Int? {
        // A terminal whose other end closed shows as "/dev/pts/N (deleted)".
        if link.target.hasPrefix("/dev/pts/") { return Int(link.target.dropFirst(9).prefix { $0.isNumber }) }
        guard link.target == "/dev/ptmx", let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(link.fd)", encoding: .utf8) else { return nil }
        return info.split(separator: "\n").first { $0.hasPrefix("tty-index:") }.flatMap { Int($0.split(separator: "\t").last ?? "") }
    }

    /// Descriptors on any of these pseudo-terminals. A pty stays allocated while a descriptor holds
    /// it, so a leaked one keeps its index out of reuse and every cycle adds an index and descriptors.
    static func terminals(_ indices: Set<Int>) -> Int {
        links().filter { ptyIndex($0).map(indices.contains) ?? false }.count
    }

    static func index(of path: String) -> Int? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: path)).flatMap { Int($0.split(separator: "/").last ?? "") }
    }
}

/// SERENDIP_LOSS_CYCLES sets the cycles: 200 in `make test` (a leak is one descriptor or more per
/// cycle, plain after a few; about 2 s per transport alone), 1000 in `make soak`.
@Suite(.serialized) struct OpenFileTests {
    static let cycles = ProcessInfo.processInfo.environment["SERENDIP_LOSS_CYCLES"].flatMap(Int.init) ?? 200

    /// Waits until the hub has reconnected `name`; saying what it last saw if it never does.
    static func reconnected(_ name: String, _ hub: InstrumentHub, cycle: Int) async throws {
        do { try await waitFor { await hub.health(name) == .connected } } catch {
            Issue.record("cycle \(cycle): \(name) not reconnected; the hub says \(await hub.health(name))")
            throw error
        }
    }

    @Test func modbusLossesAndReturnsLeaveNoDescriptorOpen() async throws {
        let simulator = try ModbusSimulator(spec: WatchdogDrivers.reactor(), model: InertModel())
        defer { simulator.stop() }
        let reactor = WatchdogDrivers.connect(simulator, connectAttempts: 1)
        let hub = InstrumentHub(instruments: ["reactor": reactor], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                backoff: 0.001...0.004, probeInterval: 100)
        await hub.start()
        defer { Task { await hub.stop() } }
        var afterFirst = 0
        for cycle in 1...Self.cycles {
            simulator.unplug()
            do { _ = try await reactor.read("temperature"); Issue.record("read an unplugged device"); return } catch {
                #expect(isLoss(error))
                await hub.reportLost("reactor", error: "\(error)")
            }
            simulator.plugIn()
            try await Self.reconnected("reactor", hub, cycle: cycle)
            if cycle == 1 { afterFirst = DeviceDescriptors.sockets(port: simulator.port) }
        }
        // Listening socket, the driver's connection and the device's end of it.
        #expect(afterFirst == 3)
        #expect(DeviceDescriptors.sockets(port: simulator.port) == afterFirst)
    }

    @Test func unpluggedSerialAdaptersLeaveNoDescriptorOpen() async throws {
        let simulator = try SerialSimulator(spec: WatchdogDrivers.pump(), model: InertModel())
        defer { simulator.stop() }
        let pump = WatchdogDrivers.connect(simulator)
        let hub = InstrumentHub(instruments: ["pump": pump], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                backoff: 0.001...0.004, probeInterval: 100)
        await hub.start()
        defer { Task { await hub.stop() } }
        var used: Set<Int> = []
        var afterFirst = 0
        for cycle in 1...Self.cycles {
            simulator.unplug()
            do { _ = try await pump.read("rate"); Issue.record("read an unplugged device"); return } catch {
                #expect(isLoss(error))
                await hub.reportLost("pump", error: "\(error)")
            }
            simulator.plugIn()
            used.formUnion(DeviceDescriptors.index(of: simulator.path).map { [$0] } ?? [])
            try await Self.reconnected("pump", hub, cycle: cycle)
            if cycle == 1 { afterFirst = DeviceDescriptors.terminals(used) }
        }
        // The device's two ends and the driver's line. Other suites may have been handed an index
        // this device gave back, so allow a few of theirs; a leak is one per cycle.
        #expect(afterFirst >= 3)
        #expect(DeviceDescriptors.terminals(used) - 3 < 30)
    }
}
