import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabScheduler
import LabServer
import LabSpec
import LabTransport
import Logging
import Testing

/// 100,000 seeded random values — NaN, infinities, huge, tiny, in other units, at and just past each
/// limit on both sides — sent down every write path to simulators over the real transports (Modbus
/// TCP, a pty): protocol parameters (in `steps` and in `finally`), expressions, planner proposals,
/// safe states and the daemon's socket API. What the simulators captured off the wire must all be
/// inside the limits, and every value that should have gone out must have. The protocols are
/// validated against the drivers without their limits, so that the run-time guard, not validation,
/// is what stands between a value and the wire (as when a driver file was tightened after a
/// protocol was checked). `SERENDIP_LIMIT_VALUES` changes the total (the API path takes 1,000).
@Suite(.serialized) struct WriteLimitPropertyTests {
    static let reactorText = """
        driver: prop-reactor
        transport: modbus
        channels:
          setpoint: { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
          trim:     { holding: 102, type: int16, unit: degC, access: rw, limits: [-40, 40] }
        """
    static let pumpText = """
        driver: prop-pump
        transport: serial
        channels:
          flow: { query: "FLOW?", write: "FLOW {value}", unit: mL/min, limits: [0.5, 50] }
        """
    static let reactor = try! DriverSpec.parse(reactorText, path: "prop-reactor.yaml")
    static let pump = try! DriverSpec.parse(pumpText, path: "prop-pump.yaml")
    /// The same drivers with no limits, to validate the protocols against.
    static let unlimited = [
        "prop-reactor": try! DriverSpec.parse(reactorText.replacing(/, limits: \[[^\]]*\]/, with: ""), path: "r.yaml"),
        "prop-pump": try! DriverSpec.parse(pumpText.replacing(/, limits: \[[^\]]*\]/, with: ""), path: "p.yaml"),
    ]
    static let total = ProcessInfo.processInfo.environment["SERENDIP_LIMIT_VALUES"].flatMap(Int.init) ?? 100_000
    static let apiValues = 1_000

    /// A bench of the two simulated devices, with clients over the real transports.
    struct Bench {
        let reactorDevice: ModbusSimulator
        let pumpDevice: SerialSimulator
        let instruments: [String: any Instrument]

        init() throws {
            reactorDevice = try ModbusSimulator(spec: WriteLimitPropertyTests.reactor, model: InertModel())
            pumpDevice = try SerialSimulator(spec: WriteLimitPropertyTests.pump, model: InertModel())
            instruments = [
                "reactor": ModbusInstrument(name: "reactor", spec: WriteLimitPropertyTests.reactor,
                                            client: ModbusTCPClient(.init(host: "127.0.0.1", port: reactorDevice.port, responseTimeout: 5))),
                "pump": SerialInstrument(name: "pump", spec: WriteLimitPropertyTests.pump, line: SerialLine(path: pumpDevice.path, timeout: 5)),
            ]
        }

        func captured(_ channel: String) -> [Double] {
            channel == "flow" ? pumpDevice.written[channel] : reactorDevice.written[channel]
        }

        func stop() { reactorDevice.stop(); pumpDevice.stop() }
    }

    @Test func noValueOutsideTheLimitsReachesTheWireOnAnyPath() async throws {
        let bench = try Bench()
        defer { bench.stop() }
        var generator = LimitValues(seed: 0x5E4E_D1B5)
        let budget = Self.total - Self.apiValues
        let started = ContinuousClock.now
        var sent = 0
        for (path, share) in [(WritePath.parameter, 0.3), (.expression, 0.25), (.proposal, 0.25), (.safeState, 0.2)] {
            let count = Int(Double(budget) * share)
            try await path.send(count, &generator, bench)
            sent += count
        }
        sent += try await WritePath.api(Self.apiValues, &generator, bench)
        for channel in ["setpoint", "trim", "flow"] {
            let limits = (channel == "flow" ? Self.pump : Self.reactor).channel(channel)!.limits!
            let outside = bench.captured(channel).filter { !limits.contains($0) }
            #expect(outside.isEmpty, "\(channel): \(outside.prefix(10)) reached the wire")
        }
        #expect(sent >= Self.total - 10)
        let reached = ["setpoint", "trim", "flow"].map { bench.captured($0).count }
        // A good part of them is inside the limits: the test is not passing by refusing everything.
        #expect(reached.allSatisfy { $0 > Self.total / 40 }, "\(reached)")
        print("WriteLimitPropertyTests: \(sent) values in \(ContinuousClock.now - started), \(reached) on the wire")
    }
}

/// One value to write, and what should become of it: the number the channel should receive, or nil
/// when it must be refused.
struct LimitCase {
    var value: Quantity
    var expected: Double?
}

/// The channels under test, each with its limits, unit and the other units a value may come in.
struct TestChannel {
    var role: String, name: String
    var limits: ClosedRange<Double>
    var unit: LabUnit
    var others: [LabUnit]
    /// Values in other units exactly at a limit (inside) and just past it (outside), written as a person would.
    var atLimits: [(Double, String, Bool)]

    static let setpoint = TestChannel(
        role: "reactor", name: "setpoint", limits: 0...150, unit: LabUnit.named("degC")!,
        others: ["K", "degF", "mdegC", "mK"].map { LabUnit.named($0)! },
        atLimits: [(423.15, "K", true), (423.15.nextUp, "K", false), (423.16, "K", false), (273.15, "K", true),
                   (273.15.nextDown, "K", false), (302, "degF", true), (302.nextUp, "degF", false), (302.01, "degF", false),
                   (32, "degF", true), (32.nextDown, "degF", false), (150_000, "mdegC", true), (150_000.nextUp, "mdegC", false),
                   (150_000.001, "mdegC", false), (-1e-300, "mdegC", false), (423_150, "mK", true), (273_150.nextDown, "mK", false)])
    static let trim = TestChannel(
        role: "reactor", name: "trim", limits: -40...40, unit: LabUnit.named("degC")!,
        others: ["K", "degF", "mdegC"].map { LabUnit.named($0)! },
        atLimits: [(313.15, "K", true), (313.15.nextUp, "K", false), (233.15, "K", true), (233.15.nextDown, "K", false),
                   (104, "degF", true), (104.nextUp, "degF", false), (-40, "degF", true), ((-40.0).nextDown, "degF", false),
                   (40_000, "mdegC", true), (40_000.001, "mdegC", false)])
    static let flow = TestChannel(
        role: "pump", name: "flow", limits: 0.5...50, unit: LabUnit.named("mL/min")!,
        others: ["L/min", "mL/h", "uL/min", "L/h"].map { LabUnit.named($0)! },
        atLimits: [(0.05, "L/min", true), (0.05.nextUp, "L/min", false), (0.0005, "L/min", true), (0.0005.nextDown, "L/min", false),
                   (3000, "mL/h", true), (3000.nextUp, "mL/h", false), (30, "mL/h", true), (30.nextDown, "mL/h", false),
                   (500, "uL/min", true), (500.nextDown, "uL/min", false), (0.03, "L/h", true), (3.0.nextUp, "L/h", false)])
    static let all = [setpoint, trim, flow]
}

/// Seeded values of every kind the issue names, each with its verdict known without the code under test.
struct LimitValues {
    var random: SplitMix64
    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func pick<T>(_ options: [T]) -> T { options[Int(random.next() % UInt64(options.count))] }

    /// A value for `channel`, given (for the verdict) as a number in the channel's unit and the
    /// quantity that is sent.
    mutating func next(for channel: TestChannel) -> LimitCase {
        let (low, high) = (channel.limits.lowerBound, channel.limits.upperBound)
        let span = high - low
        switch random.next() % 8 {
        case 0:  // not a number
            return LimitCase(value: Quantity(pick([.nan, .infinity, -.infinity]), pick([channel.unit] + channel.others)), expected: nil)
        case 1:  // huge and tiny, in the channel's unit (tiny ones sit at a limit of 0 where one is)
            let x = pick([1e300, 1e308, 3.5e38, 1e40, 1e20, 1e-300, 5e-324, 1e-10]) * pick([1.0, -1.0])
            return LimitCase(value: Quantity(x, channel.unit), expected: channel.limits.contains(x) ? x : nil)
        case 2:  // at and just past each limit, in the channel's unit
            let x = pick([low, high, low.nextDown, high.nextUp, low.nextUp, high.nextDown, low - 1e-9, high + 1e-9, -0.0])
            return LimitCase(value: Quantity(x, channel.unit), expected: channel.limits.contains(x) ? x : nil)
        case 3:  // at and just past each limit, in another unit, exact by construction
            let (x, symbol, inside) = pick(channel.atLimits)
            let unit = LabUnit.named(symbol)!
            // Each value inside is exactly at a limit: the nearer one.
            let near = Self.reference(x, unit, channel.unit)
            return LimitCase(value: Quantity(x, unit), expected: inside ? (abs(near - low) < abs(near - high) ? low : high) : nil)
        default:  // anywhere around the limits, in any unit, away from a limit's last digits
            let unit = pick([channel.unit] + channel.others)
            while true {
                let inChannel = low - span + 3 * span * random.nextUnit()
                let x = unit == channel.unit ? inChannel : Self.reference(inChannel, channel.unit, unit)
                let back = Self.reference(x, unit, channel.unit)
                let margin = 1e-9 * max(1, abs(low), abs(high))
                if abs(back - low) > margin && abs(back - high) > margin {
                    return LimitCase(value: Quantity(x, unit), expected: channel.limits.contains(back) ? back : nil)
                }
            }
        }
    }

    /// Plain Double arithmetic through SI: close enough away from a limit, and not the code under test.
    static func reference(_ x: Double, _ from: LabUnit, _ to: LabUnit) -> Double {
        from == to ? x : to.fromSI(from.toSI(x))
    }
}

/// The ways a value reaches an instrument.
enum WritePath {
    case parameter, expression, proposal, safeState

    /// Silent: tens of thousands of refused runs would each log a warning.
    static let logger = Logger(label: "property") { _ in SwiftLogNoOpLogHandler() }

    static func protocolText(_ name: String, parameters: String, set channel: TestChannel, to expression: String, inFinally: Bool) -> String {
        let drivers = channel.role == "pump" ? "{ pump: prop-pump }" : "{ reactor: prop-reactor }"
        let set = """
              - set: \(channel.role).\(channel.name)
                to: \(expression)
            """
        return """
            serendip: 1
            name: \(name)
            instruments: \(drivers)
            parameters: \(parameters)
            steps:
            \(inFinally ? "  - log: nothing" : set)
            \(inFinally ? "finally:\n" + set : "")
            """
    }

    static func definition(_ text: String) throws -> ProtocolDefinition {
        try ProtocolParser.parse(text, path: "property.yaml", drivers: WriteLimitPropertyTests.unlimited)
    }

    /// Runs one value through a protocol and says whether it was written.
    static func run(_ executor: ProtocolExecutor, _ parameters: [String: ExprValue]) async -> Bool {
        guard let result = try? await executor.run(parameters: parameters, start: PropertyRuns.start(executor.definition)) else { return false }
        return result.outcome == .completed
    }

    func send(_ count: Int, _ values: inout LimitValues, _ bench: WriteLimitPropertyTests.Bench) async throws {
        var expected: [String: [Double]] = [:]
        var before: [String: Int] = [:]
        for channel in TestChannel.all { before[channel.name] = bench.captured(channel.name).count }
        let recorder = MemoryRecorder()
        func executor(_ text: String) throws -> ProtocolExecutor {
            ProtocolExecutor(definition: try Self.definition(text), instruments: bench.instruments, clock: ScaledClock(),
                             recorder: recorder, logger: Self.logger)
        }
        let wide = "range: [-1e306, 1e306]"
        switch self {
        case .parameter:
            // Each channel, the value set in `steps` or (each step attempted whatever) in `finally`.
            var executors: [String: [ProtocolExecutor]] = [:]
            for channel in TestChannel.all {
                executors[channel.name] = try [false, true].map { inFinally in
                    try executor(Self.protocolText("p", parameters: "{ x: { type: real, unit: \(channel.unit.symbol), \(wide) } }",
                                                   set: channel, to: "$x", inFinally: inFinally))
                }
            }
            for i in 0..<count {
                let channel = TestChannel.all[i % 3]
                let item = values.next(for: channel)
                let completed = await Self.run(executors[channel.name]![i / 3 % 2], ["x": .quantity(item.value)])
                if let x = item.expected { expected[channel.name, default: []].append(x) }
                #expect(completed == (item.expected != nil), "\(item.value) to \(channel.name)")
            }
        case .expression:
            // `$x * 2 - 1 degC` (huge × 2 is infinite) and `$x / $k` (0/0 is NaN, huge/tiny infinite).
            let channel = TestChannel.setpoint
            let affine = try executor(Self.protocolText("e", parameters: "{ x: { type: real, unit: degC, \(wide) } }",
                                                        set: channel, to: "$x * 2 - 1 degC", inFinally: false))
            let ratio = try executor(Self.protocolText("q", parameters: "{ x: { type: real, unit: degC, \(wide) }, k: { type: real, \(wide) } }",
                                                       set: channel, to: "$x / $k", inFinally: false))
            for i in 0..<count {
                // A target y at or around the limits (any value refused as a parameter is tested elsewhere).
                let item = values.next(for: channel)
                let y = item.value.unit == channel.unit ? item.value.value : item.expected ?? .nan
                let parameters: [String: ExprValue], result: Double
                switch i % 4 {
                case 0, 1:  // x = (y + 1) / 2
                    let x = (y + 1) / 2
                    (parameters, result) = (["x": .quantity(Quantity(x, channel.unit))], x * 2 - 1)
                case 2:  // y·k / k, k = 0 giving NaN
                    let k = values.pick([1.0, 2, 0.5, 1e-300, 0, -3])
                    (parameters, result) = (["x": .quantity(Quantity(y * k, channel.unit)), "k": .quantity(Quantity(k))], y * k / k)
                default:  // huge / tiny: infinite
                    let (x, k) = (values.pick([1e10, -1e10, 1e306]), values.pick([1e-300, -1e-300]))
                    (parameters, result) = (["x": .quantity(Quantity(x, channel.unit)), "k": .quantity(Quantity(k))], x / k)
                }
                guard parameters.values.allSatisfy({ if case .quantity(let q) = $0 { q.value.isFinite && abs(q.value) <= 1e306 } else { false } })
                else { continue }
                let completed = await Self.run(i % 4 < 2 ? affine : ratio, parameters)
                let passes = result.isFinite && channel.limits.contains(result)
                if passes { expected[channel.name, default: []].append(result) }
                #expect(completed == passes, "\(parameters) to \(channel.name)")
            }
        case .proposal:
            // A planner works in coordinates: a real in the parameter's unit, an integer rounded.
            let real = try executor(Self.protocolText("r", parameters: "{ x: { type: real, unit: degC, \(wide) } }",
                                                      set: .setpoint, to: "$x", inFinally: false))
            let integer = try executor(Self.protocolText("n", parameters: "{ n: { type: integer, range: [-1000000, 1000000] } }",
                                                         set: .trim, to: "$n", inFinally: false))
            for i in 0..<count {
                let isInteger = i % 2 == 1
                let channel = isInteger ? TestChannel.trim : TestChannel.setpoint
                var item = values.next(for: channel)
                if item.value.unit != channel.unit { item = LimitCase(value: Quantity(item.expected ?? .nan, channel.unit), expected: item.expected) }
                let coordinate = item.value.value + (isInteger ? values.pick([0, 0.4, -0.4, 0.5, -0.5]) : 0)
                let executor = isInteger ? integer : real
                let spec = executor.definition.parameter(named: isInteger ? "n" : "x")!
                let completed = await Self.run(executor, [spec.name: spec.value(coordinate: coordinate)])
                let sent = isInteger ? coordinate.rounded() : coordinate
                let passes = sent.isFinite && channel.limits.contains(sent)
                if passes { expected[channel.name, default: []].append(sent) }
                #expect(completed == passes, "coordinate \(coordinate) to \(channel.name)")
            }
        case .safeState:
            // Safe states in chunks: every channel of one is attempted even when another is refused.
            for chunk in stride(from: 0, to: count, by: 500) {
                for channel in TestChannel.all {
                    var spec = channel.role == "pump" ? WriteLimitPropertyTests.pump : WriteLimitPropertyTests.reactor
                    spec.safeState = []
                    for _ in 0..<(min(500, count - chunk) / 3) {
                        var item = values.next(for: channel)
                        // A safe state is in the channel's unit once the driver file is read.
                        if item.value.unit != channel.unit { item = LimitCase(value: Quantity(item.expected ?? .nan, channel.unit), expected: item.expected) }
                        spec.safeState.append((channel.name, .real(item.value.value)))
                        if let x = item.expected { expected[channel.name, default: []].append(x) }
                    }
                    let instrument: any Instrument = channel.role == "pump"
                        ? SerialInstrument(name: "pump", spec: spec, line: SerialLine(path: bench.pumpDevice.path, timeout: 5))
                        : ModbusInstrument(name: "reactor", spec: spec, client: ModbusTCPClient(.init(host: "127.0.0.1", port: bench.reactorDevice.port)))
                    let refusals = spec.safeState.count - spec.safeState.indices.filter { i in
                        if case .real(let x) = spec.safeState[i].value { return channel.limits.contains(x) } else { return false }
                    }.count
                    do {
                        try await instrument.goToSafeState()
                        #expect(refusals == 0)
                    } catch {
                        #expect(refusals > 0 && "\(error)".contains("refused"), "\(error)")
                    }
                }
            }
        }
        for channel in TestChannel.all {
            let captured = Array(bench.captured(channel.name).dropFirst(before[channel.name]!))
            Self.expectSame(captured, expected[channel.name] ?? [], channel, path: "\(self)")
        }
    }

    /// What reached the wire is what should have, in order, up to the register's rounding.
    static func expectSame(_ captured: [Double], _ expected: [Double], _ channel: TestChannel, path: String) {
        #expect(captured.count == expected.count, "\(path) \(channel.name): \(captured.count) values on the wire, \(expected.count) expected")
        let tolerance: (Double) -> Double = switch channel.name {
        case "trim": { _ in 0.5 }
        // A float32 register, and values converted from other units by the plain-Double reference.
        case "setpoint": { max(abs($0) * 1.2e-7, 1e-10) }
        default: { max(abs($0), 1) * 1e-12 }
        }
        let wrong = zip(captured, expected).enumerated().filter { abs($0.element.0 - $0.element.1) > tolerance($0.element.1) }
        #expect(wrong.isEmpty, "\(path) \(channel.name): \(wrong.prefix(5).map { "#\($0.offset): \($0.element.0) for \($0.element.1)" })")
    }

    /// Through the daemon's socket: `queue.add` with the value as a JSON number (1e400 for the
    /// infinities: JSON has no NaN), against a protocol validated with the real limits.
    static func api(_ count: Int, _ values: inout LimitValues, _ bench: WriteLimitPropertyTests.Bench) async throws -> Int {
        let directory = URL(fileURLWithPath: Repository.temporaryDatabase()).deletingLastPathComponent()
        try WriteLimitPropertyTests.reactorText.write(to: directory.appendingPathComponent("prop-reactor.yaml"), atomically: true, encoding: .utf8)
        try WriteLimitPropertyTests.pumpText.write(to: directory.appendingPathComponent("prop-pump.yaml"), atomically: true, encoding: .utf8)
        let lab = directory.appendingPathComponent("lab.yaml")
        try """
            lab: property
            instruments:
              reactor: { driver: prop-reactor.yaml, modbus: { host: 127.0.0.1, port: \(bench.reactorDevice.port), unit: 1 } }
            """.write(to: lab, atomically: true, encoding: .utf8)
        let daemon = try await Daemon(Daemon.Options(labPath: lab.path, dataDirectory: directory.appendingPathComponent("data").path,
                                                      logger: Self.logger))
        let server = try SocketServer(path: directory.appendingPathComponent("api.sock").path, dispatcher: RPCDispatcher(daemon.methods))
        defer { server.stop() }
        let channel = TestChannel.setpoint
        let before = bench.captured(channel.name).count
        let text = Self.protocolText("api", parameters: "{ x: { type: real, unit: degC, range: [0, 150] } }", set: channel, to: "$x", inFinally: false)
        let protocolJSON = String(decoding: try JSONEncoder().encode(["path": "api.yaml", "text": text]), as: UTF8.self)
        let client = try SocketClient(server.path)
        var expected: [Double] = []
        for i in 0..<count {
            let item = values.next(for: channel)
            let q = item.value
            let number = q.value.isNaN ? "\"NaN\"" : q.value.isInfinite ? (q.value > 0 ? "1e400" : "-1e400") : "\(q.value)"
            _ = client.send(#"{"jsonrpc": "2.0", "id": \#(i), "method": "queue.add", "params": {"protocol": \#(protocolJSON), "parameters": {"x": {"value": \#(number), "unit": "\#(q.unit.symbol)"}}}}"# + "\n")
            let reply = try client.reply()
            #expect((reply["result"] != nil) == (item.expected != nil), "\(q): \(reply)")
            if reply["result"] != nil, let x = item.expected { expected.append(x) }
        }
        try await waitFor(seconds: 600) { try await daemon.scheduler.open().isEmpty }
        await daemon.shutDown(by: "the test")
        let captured = Array(bench.captured(channel.name).dropFirst(before))
        expectSame(captured.sorted(), expected.sorted(), channel, path: "api")
        return count
    }
}
