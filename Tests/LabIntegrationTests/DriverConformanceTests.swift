import Foundation
import LabCore
import LabDrivers
import LabSpec
import Testing

/// `serendip driver test`: the shipped drivers pass against their simulators; a driver file that is
/// wrong for its device says what failed and why; nothing outside the limits reaches the device and
/// the safe state is commanded at the end.
@Suite struct DriverConformanceTests {
    static let shipped = ["balance", "dosing-balance", "infusion-pump", "mass-flow-controller", "ph-meter", "scpi-balance", "syringe-pump",
                          "temperature-controller", "thermo-reactor", "uv-vis"]

    static func driver(_ name: String) throws -> DriverSpec { try DriverSpec.load(path: Repository.path("drivers/\(name).yaml")) }

    static func model(_ spec: DriverSpec) -> RememberingModel {
        RememberingModel(SimulatedLab.model(driver: spec, chemistry: ToyChemistry(clock: ScaledClock(), seed: 1), bench: ToyBench(seed: 1)))
    }

    /// A check against a simulator built from the same driver file, whose word order is right by
    /// construction (as `--simulate` does): floats that read 0 are written too.
    static func trusted(_ spec: DriverSpec, at connection: LabConfig.Connection) throws -> DriverConformance {
        var check = try DriverConformance.connect(spec, at: connection)
        check.trustsWordOrder = true
        return check
    }

    static func failures(_ report: ConformanceReport) -> String {
        report.checks.filter { $0.result == .fail }.map { "\($0.channel ?? "-") \($0.check): \($0.detail)" }.joined(separator: "\n")
    }

    @Test(arguments: shipped)
    func everyShippedDriverPassesAgainstItsOwnSimulator(name: String) async throws {
        let (check, stop) = try DriverConformance.simulated(Self.driver(name))
        defer { stop() }
        let report = await check.run()
        #expect(report.passed, "\(Self.failures(report))")
        for channel in check.spec.channels.values {
            if channel.readable { #expect(report.check(channel.name, "read")?.result == .pass, "\(channel.name)") }
            if channel.writable { #expect(report.check(channel.name, "write")?.result == .pass, "\(channel.name)") }
        }
        #expect(report.check(nil, "safe-state")?.result == (check.spec.safeState.isEmpty ? .skipped : .pass))
    }

    @Test func onlyValuesInsideTheLimitsReachTheDeviceAndItEndsInItsSafeState() async throws {
        let spec = try Self.driver("thermo-reactor")
        let simulator = try ModbusSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let report = try await Self.trusted(spec, at: .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)).run()
        #expect(report.passed, "\(Self.failures(report))")
        #expect(simulator.written["setpoint"].allSatisfy { (0...150).contains($0) })
        #expect(Set(simulator.written["setpoint"]).isSuperset(of: [0, 75, 150]))
        #expect(simulator.written["setpoint"].last == 25)
        #expect(simulator.written["stirrer"].last == 0)
        #expect(report.check("setpoint", "limits")?.detail == "-150 and 300 degC refused before the wire")
    }

    @Test func aSerialDeviceGetsOnlyValuesInsideTheLimitsAndEndsInItsSafeState() async throws {
        let spec = try Self.driver("syringe-pump")
        let simulator = try SerialSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let report = try await DriverConformance.connect(spec, at: .serial(SerialAddress(port: .path(simulator.path), line: spec.serial.line))).run()
        #expect(report.passed, "\(Self.failures(report))")
        #expect(simulator.written["rate"].allSatisfy { (0...50).contains($0) } && simulator.written["rate"].last == 0)
        #expect(simulator.written["dispense"].allSatisfy { (0...10).contains($0) })
        #expect(report.check("dispense", "limits")?.result == .pass)
    }

    /// The reactor's register map as its vendor might get it wrong.
    static func wrongReactor(_ channels: String) throws -> DriverSpec {
        try DriverSpec.parse("""
            driver: thermo-reactor
            vendor: test
            transport: modbus
            channels:
            \(channels)
            safe_state: { setpoint: 25 degC, stirrer: false }
            """, path: "wrong.yaml")
    }

    @Test func aRegisterTheDeviceDoesNotHaveFailsWithTheDevicesExceptionAndTheSafeStateIsStillCommanded() async throws {
        let simulator = try ModbusSimulator(spec: Self.driver("thermo-reactor"), model: InertModel())
        defer { simulator.stop() }
        let spec = try Self.wrongReactor("""
              setpoint:    { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
              temperature: { input: 40, type: float32, unit: degC }
              stirrer:     { coil: 5, access: rw }
            """)
        let report = try await Self.trusted(spec, at: .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)).run()
        #expect(!report.passed)
        let read = try #require(report.check("temperature", "read"))
        #expect(read.result == .fail && read.detail.contains("illegal data address"))
        #expect(report.check("setpoint", "write")?.result == .pass)
        #expect(report.check(nil, "safe-state")?.result == .pass)
        #expect(simulator.written["setpoint"].last == 25)
    }

    @Test func aWrongWordOrderIsCaughtAsAnImplausibleReading() async throws {
        let spec = try Self.driver("thermo-reactor")
        let simulator = try ModbusSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        // A first, right check leaves the setpoint at its safe 25 degC.
        #expect(try await Self.trusted(spec, at: .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)).run().passed)
        let writtenBefore = simulator.written["setpoint"]
        let wrong = try Self.wrongReactor("""
              setpoint:    { holding: 100, type: float32, word_order: CDAB, unit: degC, access: rw, limits: [0, 150] }
              temperature: { input: 0, type: float32, word_order: CDAB, unit: degC }
              stirrer:     { coil: 5, access: rw }
            """)
        let report = try await DriverConformance.connect(wrong, at: .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)).run()
        let read = try #require(report.check("temperature", "read"))
        #expect(read.result == .fail && read.detail.contains("wrong word order"), "\(read.detail)")
        #expect(!report.passed)
        // The setpoint read wrong too, so nothing is written to it: 6 degC in the wrong word order
        // would reach the device as about -1e8, and its safe value as well.
        #expect(report.check("setpoint", "read")?.result == .fail)
        #expect(report.check("setpoint", "write")?.result == .skipped)
        #expect(report.check("stirrer", "write")?.result == .pass)
        let safe = try #require(report.check(nil, "safe-state"))
        #expect(safe.result == .pass && safe.detail.contains("setpoint left as found"), "\(safe.detail)")
        #expect(simulator.written["setpoint"] == writtenBefore, "\(simulator.written["setpoint"])")
    }

    /// The host's own pacing is not the device's slowness: with `min_interval` near the timeout, a
    /// read queued behind a watchdog feed waits two intervals before it is even sent.
    @Test func readsSlowedOnlyByTheHostsPacingPass() async throws {
        let text = try String(contentsOfFile: Repository.path("drivers/temperature-controller.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "min_interval: 20 ms", with: "min_interval: 300 ms")
            .replacingOccurrences(of: "watchdog: { holding: 100, value: 10 s }", with: "watchdog: { holding: 100, value: 1 s }")
        let spec = try DriverSpec.parse(text, path: "paced.yaml")
        let simulator = try ModbusSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let address = "modbus-rtu://\(try #require(simulator.rtuPath))?unit=1"
        let report = try await DriverConformance.connect(spec, at: LabConfig.Connection.parse(address: address, for: spec)).run()
        #expect(report.passed, "\(Self.failures(report))")
    }

    /// A float at 0 reads the same in every word order: unless told to trust the driver file's
    /// order, the check writes nothing to it (a wrong order would send the device about -1e8).
    @Test func aFloatAtZeroIsNotWrittenUnlessTheWordOrderIsTrusted() async throws {
        let spec = try Self.driver("thermo-reactor")
        let simulator = try ModbusSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let address = LabConfig.Connection.modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)
        let report = try await DriverConformance.connect(spec, at: address).run()
        #expect(report.check("setpoint", "read")?.detail == "0.0 degC (0 reads the same in every word order)")
        #expect(report.check("setpoint", "write")?.result == .skipped)
        #expect(report.check("setpoint", "write")?.detail.contains("--trust-word-order") == true)
        #expect(report.check("stirrer", "write")?.result == .pass)
        #expect(simulator.written["setpoint"].isEmpty)
        #expect(try await Self.trusted(spec, at: address).run().passed)
        #expect(simulator.written["setpoint"].last == 25)
    }

    /// A writable channel that reads outside its own limits is a sign of a wrong scale or type:
    /// the temperature controller's int16 setpoint in tenths read as whole degrees (25.0 → 250).
    @Test func aReadingOutsideTheChannelsLimitsFails() async throws {
        let spec = try Self.driver("temperature-controller")
        let simulator = try ModbusSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let address = "modbus-rtu://\(try #require(simulator.rtuPath))?unit=1"
        // A first, right check leaves the device at its safe state: setpoint 25 degC, 250 counts.
        #expect(try await DriverConformance.connect(spec, at: LabConfig.Connection.parse(address: address, for: spec)).run().passed)
        var wrong = spec
        wrong.channels["setpoint"]?.scale = 1
        wrong.channels["setpoint"]?.limits = 0...150
        let report = try await DriverConformance.connect(wrong, at: LabConfig.Connection.parse(address: address, for: wrong)).run()
        let read = try #require(report.check("setpoint", "read"))
        #expect(read.result == .fail && read.detail.contains("250.0 degC is outside the driver file's limits 0.0…150.0"), "\(read.detail)")
        #expect(!report.passed)
    }

    /// A device slower than the driver file's timeout, answered only by the read's repeat, fails.
    @Test func aReadThatOnlyARetryAnsweredFails() async throws {
        // Request 1 is the probe, 2 the first read (setpoint): answered after the client gave up.
        let device = try MisbehavingModbusDevice(faults: [2: .late(seconds: 0.6)])
        defer { device.stop() }
        let spec = try DriverSpec.parse("""
            driver: slow
            vendor: test
            transport: modbus
            timeout: 300 ms
            channels:
              setpoint:    { holding: 100, type: uint16, unit: degC, access: rw, limits: [0, 2000] }
            safe_state: { setpoint: 25 degC }
            """, path: "slow.yaml")
        let report = try await DriverConformance.connect(spec, at: .modbusTCP(host: "127.0.0.1", port: device.port, unit: 1)).run()
        let read = try #require(report.check("setpoint", "read"))
        #expect(read.result == .fail && read.detail.contains("longer than the driver file's timeout of 0.3 s"), "\(read.detail)")
    }

    @Test func aChannelTheDeviceRefusesFailsWithWhatTheDeviceSaid() async throws {
        let spec = try Self.driver("ph-meter")
        let simulator = try SerialSimulator(spec: spec, model: Self.model(spec))
        defer { simulator.stop() }
        let wrong = try DriverSpec.parse("""
            driver: ph-meter
            vendor: test
            transport: serial
            channels:
              ph:          { query: "PH?", unit: pH }
              temperature: { query: "TEMP?", unit: degC }
            """, path: "wrong.yaml")
        let report = try await DriverConformance.connect(wrong, at: .serial(SerialAddress(port: .path(simulator.path), line: wrong.serial.line))).run()
        let read = try #require(report.check("temperature", "read"))
        #expect(read.result == .fail && read.detail.contains("ERR unknown command 'TEMP?'"), "\(read.detail)")
        #expect(report.check("ph", "read")?.result == .pass)
        #expect(!report.passed)
    }

    @Test func anInterruptedTestStillCommandsTheSafeState() async throws {
        let spec = try Self.driver("thermo-reactor")
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let check = try DriverConformance.connect(spec, at: .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1))
        let task = Task { await check.run() }
        task.cancel()
        let report = await task.value
        #expect(report.checks.contains { $0.detail == "interrupted" })
        #expect(report.check(nil, "safe-state")?.result == .pass)
        #expect(simulator.written["setpoint"].last == 25)
    }

    static let serendip = Repository.path(".build/debug/serendip")

    @Test func theCommandPrintsAReportWhoseJSONShapeIsStable() throws {
        let (status, output) = try runToEnd(Self.serendip, ["driver", "test", Repository.path("drivers/thermo-reactor.yaml"), "--simulate", "--json"])
        #expect(status == 0, "\(output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["driver", "address", "checks", "passed"])
        #expect(object["driver"] as? String == "thermo-reactor" && object["passed"] as? Bool == true)
        let checks = try #require(object["checks"] as? [[String: Any]])
        #expect(checks.map { $0["check"] as? String ?? "" } == ["connect", "identity", "watchdog", "read", "read", "read",
                                                                "write", "write", "limits", "limits", "safe-state"])
        for check in checks {
            #expect(Set(check.keys).isSubset(of: ["channel", "check", "result", "detail", "milliseconds"]) && check["detail"] is String)
            #expect(["pass", "skipped"].contains(check["result"] as? String))
        }
        let temperature = try #require(checks.first { $0["channel"] as? String == "temperature" })
        #expect(temperature["milliseconds"] is Double)
    }

    @Test func theCommandExitsNonZeroAndSaysWhyWhenTheDriverIsWrong() throws {
        let simulator = try ModbusSimulator(spec: Self.driver("thermo-reactor"), model: InertModel())
        defer { simulator.stop() }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("wrong-\(UUID().uuidString).yaml")
        try """
            driver: thermo-reactor
            vendor: test
            transport: modbus
            channels:
              setpoint: { holding: 1000, type: float32, unit: degC, access: rw, limits: [0, 150] }
            safe_state: { setpoint: 25 degC }
            """.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try runToEnd(Self.serendip, ["driver", "test", file.path, "--address", "modbus-tcp://127.0.0.1:\(simulator.port)?unit=1"])
        #expect(status == 1)
        #expect(output.contains("setpoint  read") && output.contains("illegal data address"), "\(output)")
        #expect(output.hasSuffix("FAIL: 3 check(s) failed\n"), "\(output)")
    }

    @Test func theExampleInTheDocsIsWhatTheCommandPrints() throws {
        // Ports, read times and the reactor's temperature change from run to run.
        func normalised(_ text: String) -> String {
            text.replacingOccurrences(of: #"127\.0\.0\.1:\d+"#, with: "127.0.0.1:PORT", options: .regularExpression)
                .replacingOccurrences(of: #"\(\d+(\.\d+)? ms\)"#, with: "(N ms)", options: .regularExpression)
                .replacingOccurrences(of: #"(temperature +read +pass +)[-0-9.e]+"#, with: "$1T", options: .regularExpression)
        }
        let docs = try String(contentsOfFile: Repository.path("docs/drivers.md"), encoding: .utf8)
        let block = try #require(docs.components(separatedBy: "```console\n$ serendip driver test drivers/thermo-reactor.yaml --simulate\n").dropFirst().first?
            .components(separatedBy: "```").first)
        let (status, output) = try runToEnd(Self.serendip, ["driver", "test", Repository.path("drivers/thermo-reactor.yaml"), "--simulate"])
        #expect(status == 0)
        #expect(normalised(output) == normalised(block))
    }

    /// The RTU example of docs/drivers.md, over a pseudo-terminal and through the address form.
    @Test func anRTUDriverIsCheckedOverItsSerialLineAtTheAddressGiven() async throws {
        let spec = try DriverSpec.parse("""
            driver: pid-controller
            vendor: test
            transport: modbus-rtu
            serial: { baud: 19200, parity: E, stop_bits: 1 }
            timeout: 500 ms
            byte_timeout: 50 ms
            channels:
              setpoint:    { holding: 10, type: int16, scale: 0.1, unit: degC, access: rw, limits: [-50, 300] }
              temperature: { input: 0, type: int16, scale: 0.1, unit: degC }
            safe_state: { setpoint: 20 degC }
            """, path: "pid-controller.yaml")
        let simulator = try ModbusSimulator(spec: spec, model: InertModel())
        defer { simulator.stop() }
        let path = try #require(simulator.rtuPath)
        let report = try await DriverConformance.connect(spec, at: LabConfig.Connection.parse(address: "modbus-rtu://\(path)?unit=1", for: spec)).run()
        #expect(report.passed, "\(Self.failures(report))")
        #expect(report.check("setpoint", "write")?.detail == "wrote -50, 125, 300 degC, each read back")
        #expect(simulator.written["setpoint"].allSatisfy { (-50...300).contains($0) } && simulator.written["setpoint"].last == 20)
    }

    /// The watchdog is armed and fed while the checks run; its feeds are not taken for a value that
    /// left despite the guard (fed every 10 ms here, so they fall among the limit checks).
    @Test func aWatchdogIsArmedAndFedThroughoutAndItsFeedsAreNotTakenForWrites() async throws {
        let reactor = try ModbusSimulator(spec: WatchdogDrivers.reactor(feedEvery: "10 ms"), model: InertModel())
        let pump = try SerialSimulator(spec: WatchdogDrivers.pump(feedEvery: "10 ms"), model: RememberingModel(InertModel()))
        defer { reactor.stop(); pump.stop() }
        for _ in 0..<5 {
            let checks = try [DriverConformance.connect(reactor.spec, at: .modbusTCP(host: "127.0.0.1", port: reactor.port, unit: 1)),
                              DriverConformance.connect(pump.spec, at: .serial(SerialAddress(port: .path(pump.path), line: pump.spec.serial.line)))]
            for check in checks {
                let report = await check.run()
                #expect(report.passed, "\(Self.failures(report))")
                #expect(report.check(nil, "watchdog")?.result == .pass)
            }
        }
        #expect(reactor.wireLog.entries(for: "watchdog").count >= 5 && pump.wireLog.entries(for: "watchdog").count >= 5)
        #expect(reactor.wireLog.entries.allSatisfy { !$0.byDevice } && pump.wireLog.entries.allSatisfy { !$0.byDevice })
    }

    @Test func ctrlCEndsTheChecksCommandsTheSafeStateAndExits130() async throws {
        // The second request (the first read after the probe) is answered 8 s late, inside the 10 s
        // timeout: long enough that, on a machine busy with the rest of the suite, the Ctrl-C is
        // handled before the checks could end on their own (with 2 s, once in a clean-clone run, it was not).
        let device = try MisbehavingModbusDevice(faults: [2: .late(seconds: 8)])
        defer { device.stop() }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("slow-\(UUID().uuidString).yaml")
        try """
            driver: slow-reactor
            vendor: test
            transport: modbus
            timeout: 10 s
            channels:
              setpoint:    { holding: 100, type: uint16, unit: degC, access: rw, limits: [0, 2000] }
              temperature: { input: 0, type: uint16, unit: degC }
            safe_state: { setpoint: 25 degC }
            """.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.serendip)
        process.arguments = ["driver", "test", file.path, "--address", "modbus-tcp://127.0.0.1:\(device.port)", "--json"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        #expect(try await eventually { device.requests >= 2 })
        // Again until it ends: libdispatch may take a moment to watch for the signal on a busy machine.
        let pressing = Task {
            while process.isRunning {
                process.interrupt()
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        pressing.cancel()
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        let report = try #require(try JSONSerialization.jsonObject(with: output) as? [String: Any])
        let checks = try #require(report["checks"] as? [[String: Any]])
        #expect(checks.contains { $0["detail"] as? String == "interrupted" })
        #expect(checks.last?["check"] as? String == "safe-state" && checks.last?["result"] as? String == "pass")
        // The safe value, and nothing else was written.
        #expect(device.holding(100) == 25 && device.holding(101) == 1101)
    }

    @Test func aSafeStateWhoseConnectionDroppedIsCommandedAgain() async throws {
        // Requests 1-11: the probe, the read, three writes each read back twice; 12 is the safe state's write.
        let device = try MisbehavingModbusDevice(faults: [12: .closeWithoutReply])
        defer { device.stop() }
        let spec = try DriverSpec.parse("""
            driver: heater
            vendor: test
            transport: modbus
            channels:
              setpoint: { holding: 100, type: uint16, unit: degC, access: rw, limits: [0, 2000] }
            safe_state: { setpoint: 25 degC }
            """, path: "heater.yaml")
        let report = try await DriverConformance.connect(spec, at: .modbusTCP(host: "127.0.0.1", port: device.port, unit: 1)).run()
        #expect(report.check(nil, "safe-state")?.detail == "commanded setpoint = 25 (at the second attempt)", "\(report.checks)")
        #expect(device.holding(100) == 25)
    }
}
