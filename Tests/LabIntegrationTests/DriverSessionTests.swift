import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import LabTransport
import Logging
import Synchronization
import Testing

/// Driver files as real devices need them: `init:`, `min_interval:`, `errors:` and `scpi: true`,
/// over real pseudo-terminals and real Modbus TCP sockets.
enum SessionDrivers {
    static let serial = """
        driver: bath
        transport: serial
        serial: { timeout: 2 s }
        init:
          - "REM"
          - { send: "UNIT C", expect: "UNIT=C" }
        channels:
          temperature: { query: "T?", unit: degC }
          setpoint: { query: "S?", write: "S {value}", unit: degC, limits: [0, 100] }
        """

    static let modbus = """
        driver: oven
        transport: modbus
        timeout: 2 s
        init:
          - { holding: 300, value: 1 }
          - { coil: 7, value: true }
        channels:
          setpoint: { holding: 10, type: int16, unit: degC, access: rw, limits: [0, 300] }
          temperature: { input: 0, type: int16, unit: degC }
        """

    static let scpi = """
        driver: supply
        transport: serial
        scpi: true
        serial: { timeout: 2 s }
        init: ["*CLS", "SYST:REM"]
        channels:
          voltage: { query: "VOLT?", write: "VOLT {value}", unit: V, limits: [0, 30] }
          output: { on: "OUTP ON", off: "OUTP OFF", type: bool }
        """

    static func parse(_ text: String, _ path: String = "dev.yaml") throws -> DriverSpec { try DriverSpec.parse(text, path: path) }

    static func modbus(_ spec: DriverSpec, _ simulator: ModbusSimulator) -> ModbusInstrument {
        ModbusInstrument(name: "oven", spec: spec, client: ModbusTCPClient(.init(host: "127.0.0.1", port: simulator.port, responseTimeout: 2)))
    }
}

@Suite struct InitSequenceTests {
    @Test func aSerialDeviceHearsItsInitStepsInOrderBeforeTheFirstQuery() async throws {
        let heard = Mutex<[String]>([])
        let device = try LineServer { line in
            heard.withLock { $0.append(line) }
            return line == "UNIT C" ? "UNIT=C" : line == "T?" ? "21.5" : "OK"
        }
        defer { device.stop() }
        let bath = SerialInstrument(name: "bath", spec: try SessionDrivers.parse(SessionDrivers.serial), line: SerialLine(path: device.path, timeout: 2))
        #expect(try await bath.read("temperature") == .real(21.5))
        #expect(try await bath.read("temperature") == .real(21.5))
        #expect(heard.withLock { $0 } == ["REM", "UNIT C", "T?", "T?"])
    }

    @Test func aSerialDeviceIsInitialisedAgainAfterItsAdapterWasPluggedInAgain() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.serial)
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        try await bath.write("setpoint", .real(40))
        simulator.unplug()
        await #expect { try await bath.write("setpoint", .real(41)) } throws: { ($0 as? LabError)?.code == .instrumentLost }
        simulator.plugIn()
        try await bath.write("setpoint", .real(42))
        #expect(simulator.wireLog.entries.map(\.channel) == ["init", "init", "setpoint", "init", "init", "setpoint"])
    }

    @Test func aRefusedInitStepFailsTheConnectNamingTheStepAndItsLine() async throws {
        let device = try LineServer { line in line == "REM" ? "OK" : "ERR 7 local lockout" }
        defer { device.stop() }
        let bath = SerialInstrument(name: "bath", spec: try SessionDrivers.parse(SessionDrivers.serial), line: SerialLine(path: device.path, timeout: 2))
        await #expect { try await bath.read("temperature") } throws: { error in
            let text = "\(error)"
            return (error as? LabError)?.code == .instrumentLost
                && text.contains("init step 2 'UNIT C' (dev.yaml:6:5)") && text.contains("expected 'UNIT=C', device answered 'ERR 7 local lockout'")
        }
    }

    @Test func aModbusDeviceGetsItsInitWritesOnEveryConnect() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.modbus)
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let oven = SessionDrivers.modbus(spec, simulator)
        _ = try await oven.read("temperature")
        _ = try await oven.read("temperature")
        #expect(simulator.wireLog.entries(for: "init").map(\.value) == [1, 1])
        simulator.unplug()
        simulator.plugIn()
        await #expect { try await oven.read("temperature") } throws: { ($0 as? LabError)?.code == .instrumentLost }
        try await oven.write("setpoint", .real(120))
        #expect(simulator.wireLog.entries.map(\.channel) == ["init", "init", "init", "init", "setpoint"])
    }

    @Test func aModbusInitWriteTheDeviceRefusesFailsTheConnectNamingTheStep() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.modbus.replacingOccurrences(of: "holding: 300", with: "holding: 5000"))
        let simulator = try ModbusSimulator(spec: try SessionDrivers.parse(SessionDrivers.modbus), model: InertModel())
        defer { simulator.stop() }
        let oven = SessionDrivers.modbus(spec, simulator)
        for attempt in [{ try await oven.probe() }, { _ = try await oven.read("temperature") }] {
            await #expect { try await attempt() } throws: { error in
                (error as? LabError)?.code == .instrumentLost
                    && "\(error)".contains("init step 1 holding 5000 = 1 (dev.yaml:5:5) failed: device answered exception 2 (illegal data address)")
            }
        }
        #expect(simulator.wireLog.entries.isEmpty)
    }

    @Test func aModbusRTUUnitIsInitialisedBeforeItsFirstRequest() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.modbus.replacingOccurrences(of: "transport: modbus", with: "transport: modbus-rtu"))
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let bus = ModbusRTUBus(ModbusRTULine(path: try #require(simulator.rtuPath), baud: 9600))
        let oven = ModbusInstrument(name: "oven", spec: spec, client: ModbusRTUClient(bus: bus, unit: 1, timing: .init(response: 2, byte: 0.5)))
        try await oven.write("setpoint", .real(80))
        try await oven.write("setpoint", .real(81))
        #expect(simulator.wireLog.entries.map(\.channel) == ["init", "init", "setpoint", "setpoint"])
    }
}

@Suite struct RequestSpacingTests {
    /// Gaps between consecutive requests as the device received them. Only lower bounds are
    /// asserted, well below the interval: each request waits for the last one's reply, so a busy
    /// machine can shorten a gap only by delaying the device's handling of the earlier request.
    static func gaps(_ entries: [WireLog.Entry]) -> [Double] {
        let times = entries.map(\.time).sorted()
        return zip(times.dropFirst(), times).map { $0 - $1 }
    }

    @Test func aSerialDeviceIsNeverAskedTwiceWithinItsMinimumInterval() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.serial + "\nmin_interval: 400 ms")
        #expect(spec.minInterval == 0.4)
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        for x in [10.0, 11, 12] { try await bath.write("setpoint", .real(x)) }
        let entries = simulator.wireLog.entries
        #expect(entries.map(\.channel) == ["init", "init", "setpoint", "setpoint", "setpoint"])
        #expect(Self.gaps(entries).allSatisfy { $0 >= 0.15 }, "\(Self.gaps(entries))")
        #expect(entries.last!.time - entries.first!.time >= 4 * 0.4 * 0.75)
    }

    @Test func aModbusDeviceIsNeverAskedTwiceWithinItsMinimumInterval() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.modbus + "\nmin_interval: 0.4 s")
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let oven = SessionDrivers.modbus(spec, simulator)
        for x in [10.0, 11, 12] { try await oven.write("setpoint", .real(x)) }
        let entries = simulator.wireLog.entries
        #expect(entries.map(\.channel) == ["init", "init", "setpoint", "setpoint", "setpoint"])
        // Each write is followed by its read-back, which waits its turn too.
        let gaps = Self.gaps(entries)
        #expect(gaps.prefix(2).allSatisfy { $0 >= 0.15 } && gaps.dropFirst(2).allSatisfy { $0 >= 0.55 }, "\(gaps)")
        #expect(entries.last!.time - entries.first!.time >= 6 * 0.4 * 0.75)
    }
}

@Suite struct ErrorReplyTests {
    static func bath(errors: String, replying reply: String) throws -> (SerialInstrument, LineServer) {
        let spec = try SessionDrivers.parse("""
            driver: bath
            transport: serial
            errors: \(errors)
            channels:
              temperature: { query: "T?", unit: degC }
            """)
        let device = try LineServer { _ in reply }
        return (SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: device.path, timeout: 2)), device)
    }

    @Test(arguments: [(#"{ prefix: ["ERR", "?"] }"#, "? syntax error"), (#"{ match: "^E[0-9]+" }"#, "E42 over range")])
    func aReplyTheDriverFileCallsAnErrorIsARefusalCarryingTheDevicesText(errors: String, reply: String) async throws {
        let (bath, device) = try Self.bath(errors: errors, replying: reply)
        defer { device.stop() }
        await #expect { try await bath.read("temperature") } throws: { error in
            (error as? LabError)?.code == .protocolViolation && "\(error)".contains("bath.temperature: device says '\(reply)'")
        }
    }

    @Test func aDeclaredPatternReplacesTheDefaultErrPrefix() async throws {
        let (bath, device) = try Self.bath(errors: #"{ match: "^E[0-9]+" }"#, replying: "ERRATIC")
        defer { device.stop() }
        // Not a refusal under this device's rule, and not a number either.
        await #expect { try await bath.read("temperature") } throws: { "\($0)".contains("reply 'ERRATIC' is not a number") }
    }
}

@Suite struct SCPITests {
    @Test func aSCPIWriteWaitsForNoReplyAndAsksForTheErrorQueue() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.scpi)
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let supply = SerialInstrument(name: "supply", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        try await supply.write("voltage", .real(12))
        try await supply.write("output", .bool(true))
        #expect(simulator.wireLog.entries.map(\.channel) == ["init", "init", "voltage", "output"])
        #expect(simulator.written["voltage"] == [12])
    }

    @Test func theHostSendsSystErrAfterEachSCPICommandAndInitStep() async throws {
        let heard = Mutex<[String]>([])
        let device = try LineServer { line in
            heard.withLock { $0.append(line) }
            return line.hasSuffix("?") ? (line == "SYST:ERR?" ? "+0,\"No error\"" : "1.5") : nil
        }
        defer { device.stop() }
        let supply = SerialInstrument(name: "supply", spec: try SessionDrivers.parse(SessionDrivers.scpi), line: SerialLine(path: device.path, timeout: 2))
        try await supply.write("voltage", .real(3))
        #expect(heard.withLock { $0 } == ["*CLS", "SYST:ERR?", "SYST:REM", "SYST:ERR?", "VOLT 3.0", "SYST:ERR?"])
    }

    @Test func aCommandTheSCPIDeviceRejectsFailsTheStepWithTheDevicesErrorText() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.scpi)
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let wrong = try SessionDrivers.parse(SessionDrivers.scpi.replacingOccurrences(of: "write: \"VOLT {value}\"", with: "write: \"VOLTAGE:LEVEL {value}\""))
        let supply = SerialInstrument(name: "supply", spec: wrong, line: SerialLine(path: simulator.path, timeout: 2))
        await #expect { try await supply.write("voltage", .real(12)) } throws: { error in
            (error as? LabError)?.code == .protocolViolation && "\(error)".contains(#"device says '-113,"Undefined header"' after 'VOLTAGE:LEVEL 12.0'"#)
        }
        // The queue was emptied by the query: the next good command passes.
        try await supply.write("output", .bool(false))
    }

    @Test func aSCPIInitStepTheDeviceRejectsFailsTheConnectNamingTheStep() async throws {
        let simulator = try SerialSimulator(spec: try SessionDrivers.parse(SessionDrivers.scpi), model: InertModel())
        defer { simulator.stop() }
        let spec = try SessionDrivers.parse(SessionDrivers.scpi.replacingOccurrences(of: "\"SYST:REM\"", with: "\"SYST:RWL\""))
        let supply = SerialInstrument(name: "supply", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        await #expect { try await supply.write("output", .bool(true)) } throws: {
            "\($0)".contains(#"supply: init step 2 'SYST:RWL' (dev.yaml:5:16) failed: SYST:ERR? answered '-113,"Undefined header"'"#)
        }
        #expect(simulator.written["output"].isEmpty)
    }

    @Test func aSCPIDeviceSaysWhatItIsToStarIDNWithoutAnIdentityKey() async throws {
        let spec = try SessionDrivers.parse(SessionDrivers.scpi)
        #expect(spec.identity == .command("*IDN?"))
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let supply = SerialInstrument(name: "supply", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        #expect(try await supply.identifyDevice().deviceAnswer == "Serendip,SIM-SUPPLY,0001,1.0")
    }
}

@Suite struct StringChannelTests {
    @Test(arguments: ["ABCD", "BADC"])
    func aModbusStringChannelIsReadAsTextInItsByteOrder(order: String) async throws {
        let spec = try SessionDrivers.parse("""
            driver: oven
            transport: modbus
            channels:
              temperature: { input: 0, type: int16, unit: degC }
              firmware: { holding: 40, type: string, count: 8, word_order: \(order) }
            """)
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let oven = SessionDrivers.modbus(spec, simulator)
        #expect(try await oven.readText("firmware") == "SIM-FIRMWARE")
        #expect(oven.textChannels == ["firmware"])
        await #expect { try await oven.read("firmware") } throws: { "\($0)".contains("is a string channel") }
    }

    @Test func aSerialStringChannelKeepsItsReplyAsText() async throws {
        let spec = try SessionDrivers.parse("""
            driver: bath
            transport: serial
            channels:
              serial_number: { query: "SN?", type: string }
            """)
        let device = try LineServer { $0 == "SN?" ? "AB-0042 rev 3" : "ERR" }
        defer { device.stop() }
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: device.path, timeout: 2))
        #expect(try await bath.readText("serial_number") == "AB-0042 rev 3")
    }
}

@Suite struct AccessTests {
    @Test func aWriteOnlyRegisterIsNeverRead() async throws {
        let spec = try SessionDrivers.parse("""
            driver: doser
            transport: modbus
            channels:
              dose: { holding: 4, type: int16, unit: mL, access: w }
            """)
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let doser = SessionDrivers.modbus(spec, simulator)
        await #expect { try await doser.read("dose") } throws: { ($0 as? LabError)?.code == .accessDenied }
    }

    @Test func aWriteOnlySerialChannelWithAQueryIsNeverQueried() async throws {
        let spec = try SessionDrivers.parse("""
            driver: doser
            transport: serial
            channels:
              dose: { query: "D?", write: "D {value}", unit: mL, access: w }
            """)
        let device = try LineServer { _ in "5" }
        defer { device.stop() }
        let doser = SerialInstrument(name: "doser", spec: spec, line: SerialLine(path: device.path, timeout: 2))
        await #expect { try await doser.read("dose") } throws: { ($0 as? LabError)?.code == .accessDenied }
    }
}

/// What a string channel is for: its text goes with the run; protocols and interlocks cannot read it.
@Suite(.serialized) struct StringChannelRunTests {
    static let bath = """
        driver: bath
        transport: serial
        serial: { timeout: 2 s }
        channels:
          temperature: { query: "T?", unit: degC }
          firmware: { query: "VER?", type: string }
        """

    @Test func aRunRecordsTheTextOfEveryStringChannelAsItStarts() async throws {
        let spec = try SessionDrivers.parse(Self.bath)
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        let definition = try ProtocolParser.parse("""
            serendip: 1
            name: look
            instruments: { bath: bath }
            steps:
              - measure: { channel: bath.temperature }
            """, path: "look.yaml", drivers: ["bath": spec])
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let clock = ScaledClock(rate: 1000)
        let executor = ProtocolExecutor(definition: definition, instruments: ["bath": bath], clock: clock, recorder: database,
                                        logger: Logger(label: "test"))
        let start = RunStart(campaignID: nil, protocolName: definition.name, protocolSource: definition.source, parameters: [],
                             chosenBy: "test", proposalID: nil, instruments: ["bath": bath.identity], operatorName: "tester",
                             softwareVersion: "test", startedAt: Date(), startedMonotonic: clock.now)
        let result = try await executor.run(parameters: [:], start: start)
        #expect(result.outcome == .completed, "\(result.error ?? "")")
        let logged = try database.events(run: result.runID).filter { $0.kind == "log" }.map(\.message)
        #expect(logged.contains("bath.firmware = 'SIM-FIRMWARE'"), "\(logged)")
        // What `serendip show` prints under "log".
        #expect(try database.detail(run: result.runID)?.logs.contains("bath.firmware = 'SIM-FIRMWARE'") == true)
    }

    @Test func aProtocolThatMeasuresAStringChannelIsRefusedAtTheChannel() throws {
        let spec = try SessionDrivers.parse(Self.bath)
        let error = try #require(throws: ValidationError.self) {
            try ProtocolParser.parse("""
                serendip: 1
                name: look
                instruments: { bath: bath }
                steps:
                  - measure: { channel: bath.firmware }
                """, path: "look.yaml", drivers: ["bath": spec])
        }
        #expect(error.diagnostics.map { "\($0.location) \($0.message)" }
            == ["look.yaml:5:25 'bath.firmware' is a string channel: its text is recorded with each run, not measured"])
    }

    @Test func anInterlockOnAStringChannelIsRefused() throws {
        let scratch = Scratch()
        scratch.write("bath.yaml", Self.bath)
        let error = try #require(throws: ValidationError.self) {
            try LabConfig.load(path: scratch.write("lab.yaml", """
                lab: l
                instruments:
                  bath: { driver: bath.yaml, simulate: true }
                interlocks:
                  odd: { channel: bath.firmware, above: 3 }
                """))
        }
        #expect(error.diagnostics.contains { $0.message == "'bath.firmware' is a string channel; an interlock watches a single number" },
                "\(error.diagnostics)")
    }
}

/// The session examples of docs/drivers.md are driver files that load, and run against their simulators.
@Suite struct SessionDocumentationTests {
    static func example(_ title: String) throws -> DriverSpec {
        let text = try #require(try DocumentationTests.blocks("drivers.md", language: "yaml").first { $0.hasPrefix("# example: \(title)") })
        return try DriverSpec.parse(text, path: "doc.yaml")
    }

    @Test func theBathExampleIsInitialisedPacedAndReadsItsFirmware() async throws {
        let spec = try Self.example("a circulating bath")
        #expect(spec.minInterval == 0.05 && spec.initSteps.count == 2 && spec.errorReplies == .prefixes(["ERR", "?"]))
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        try await bath.write("setpoint", .real(37))
        #expect(try await bath.readText("firmware") == "SIM-FIRMWARE")
        #expect(simulator.wireLog.entries.map(\.channel) == ["init", "init", "setpoint"])
    }

    @Test func theSCPIExampleIsDrivenAsASCPIDevice() async throws {
        let spec = try Self.example("a SCPI power supply")
        #expect(spec.scpi && spec.identity == .command("*IDN?"))
        let simulator = try SerialSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let supply = SerialInstrument(name: "supply", spec: spec, line: SerialLine(path: simulator.path, timeout: 2))
        try await supply.write("voltage", .real(5))
        try await supply.write("output", .bool(true))
        #expect(simulator.written["voltage"] == [5] && simulator.written["output"] == [1])
    }
}

@Suite struct PacedStaleReplyTests {
    /// A device that answers the first query twice, the second time late: the late copy arrives
    /// while the next query waits its turn, and must be discarded, not read as that query's answer.
    @Test func aLateReplyArrivingWhileAQueryWaitsItsTurnIsNotTakenAsItsAnswer() async throws {
        let terminal = try PseudoTerminal.open()
        defer { terminal.close() }
        let device = Thread {
            var pending: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 64), answered = 0
            while answered < 2 {
                let n = buffer.withUnsafeMutableBytes { read(terminal.primary, $0.baseAddress, $0.count) }
                guard n > 0 else { return }
                pending += buffer[..<n]
                while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    pending.removeSubrange(...end)
                    answered += 1
                    let reply = answered == 1 ? "21.5\n" : "22.5\n"
                    _ = reply.withCString { write(terminal.primary, $0, strlen($0)) }
                    if answered == 1 {
                        usleep(100_000)
                        _ = "99\n".withCString { write(terminal.primary, $0, 3) }
                    }
                }
            }
        }
        device.start()
        let spec = try SessionDrivers.parse("""
            driver: bath
            transport: serial
            min_interval: 600 ms
            channels:
              temperature: { query: "T?", unit: degC }
            """)
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: terminal.path, timeout: 2))
        #expect(try await bath.read("temperature") == .real(21.5))
        #expect(try await bath.read("temperature") == .real(22.5))
    }
}

@Suite struct RefusedInitHubTests {
    @Test func aDeviceThatRefusesItsInitIsLostUntilItAcceptsIt() async throws {
        let remoteAllowed = Mutex(false)
        let device = try LineServer { line in
            line == "REM" ? (remoteAllowed.withLock { $0 } ? "OK" : "ERR local lockout") : "21.5"
        }
        defer { device.stop() }
        let spec = try SessionDrivers.parse("""
            driver: bath
            transport: serial
            init: ["REM"]
            channels:
              temperature: { query: "T?", unit: degC }
            """)
        let bath = SerialInstrument(name: "bath", spec: spec, line: SerialLine(path: device.path, timeout: 2))
        let hub = InstrumentHub(instruments: ["bath": bath], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                backoff: 0.01...0.05, probeInterval: 0.05)
        let log = HealthLog()
        await hub.onChange { log.record($0, $1) }
        await hub.start()
        defer { Task { await hub.stop() } }
        #expect(try await eventually(within: 10) { log.all == ["bath lost"] })
        guard case .lost(let error) = await hub.health("bath") else { Issue.record("not lost"); return }
        #expect(error.contains("init step 1 'REM' (dev.yaml:3:8) failed: device says 'ERR local lockout'"), "\(error)")
        remoteAllowed.withLock { $0 = true }
        #expect(try await eventually(within: 10) { log.all == ["bath lost", "bath back"] })
    }
}
