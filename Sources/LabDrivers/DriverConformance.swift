import Foundation
public import LabCore
public import LabSpec
public import LabTransport
import Synchronization

/// The conformance check a vendor runs against a device (or its simulator) with the driver file
/// written for it. Every value it writes is inside the channel's limits, and whatever happens (a
/// failed check, a lost device, an interruption) it ends by commanding the safe state.
public struct DriverConformance: Sendable {
    public let spec: DriverSpec
    public let instrument: any DriverBackedInstrument
    /// Writes that left for the device; nil where the transport cannot tell.
    public let wire: WireCounter?
    /// Whether a float that reads exactly 0 may be written: 0 reads the same in every word order,
    /// so the driver file's order is unchecked there (`--trust-word-order`; always for `--simulate`,
    /// whose device is built from the same file).
    public var trustsWordOrder = false

    public init(spec: DriverSpec, instrument: any DriverBackedInstrument, wire: WireCounter?) {
        self.spec = spec; self.instrument = instrument; self.wire = wire
    }

    /// Connects to the device at `connection` over the transport the driver names.
    public static func connect(_ spec: DriverSpec, at connection: LabConfig.Connection, name: String? = nil) throws -> DriverConformance {
        let name = name ?? spec.name, wire = WireCounter()
        var watchdogRegister: UInt16?, watchdogCommand: String?
        switch spec.watchdog?.target {
        case .holding(let address)?: watchdogRegister = address
        case .command(let template)?: watchdogCommand = template.components(separatedBy: "{value}").first
        case nil: break
        }
        switch (spec.transport, connection) {
        case (.modbus, .modbusTCP), (.modbusRTU, .modbusTCP), (.modbus, .modbusRTU), (.modbusRTU, .modbusRTU):
            let instrument = try InstrumentConnector.instrument(name, spec, at: connection, link: {
                CountingModbusClient(client: $0, writes: wire, watchdog: watchdogRegister)
            })
            return .init(spec: spec, instrument: instrument, wire: wire)
        case (.serial, .serial):
            let feed = watchdogCommand.map { Array($0.utf8) }
            let instrument = try InstrumentConnector.instrument(name, spec, at: connection, tap: { direction, bytes in
                if direction == .sent, feed.map({ !bytes.starts(with: $0) }) ?? true { wire.add() }
            })
            return .init(spec: spec, instrument: instrument, wire: wire)
        default:
            throw LabError(.invalidFile, "the driver '\(spec.name)' speaks \(spec.transport.rawValue), which this address cannot reach")
        }
    }

    /// Against the driver's own simulator (`--simulate`), over the transport it names; a plugin
    /// driver's in process. `stop` ends the simulator.
    public static func simulated(_ spec: DriverSpec) throws -> (check: DriverConformance, stop: @Sendable () -> Void) {
        let model = RememberingModel(SimulatedLab.model(driver: spec, chemistry: ToyChemistry(clock: ScaledClock(), seed: 1),
                                                        bench: ToyBench(seed: 1)))
        switch spec.transport {
        case .modbus, .modbusRTU:
            let simulator = try ModbusSimulator(spec: spec, model: model)
            let connection: LabConfig.Connection = simulator.rtuPath.map {
                .modbusRTU(ModbusRTUAddress(port: .path($0), line: spec.serial.line, unit: 1))
            } ?? .modbusTCP(host: "127.0.0.1", port: simulator.port, unit: 1)
            var check = try connect(spec, at: connection)
            check.trustsWordOrder = true
            return (check, simulator.stop)
        case .serial:
            let simulator = try SerialSimulator(spec: spec, model: model)
            return (try connect(spec, at: .serial(SerialAddress(port: .path(simulator.path), line: spec.serial.line))), simulator.stop)
        case .plugin:
            return (DriverConformance(spec: spec, instrument: InProcessInstrument(name: spec.name, spec: spec, model: model), wire: nil), {})
        }
    }

    /// Runs every check, then commands the safe state. Cancelling the task stops the checks early;
    /// the safe state is still commanded.
    public func run() async -> ConformanceReport {
        var report = ConformanceReport(driver: spec.name, address: instrument.identity.address)
        var feeder: Task<Void, Never>?
        // Channels whose encoding is in doubt (a reading that cannot be right, or a float of 0 that
        // reads the same in every word order), each with why: what would be written to them may not
        // be what the device gets, so nothing is, not even the safe state.
        var unwritable: [String: String] = [:]
        if await connect(&report) {
            await identify(&report)
            feeder = await armWatchdog(&report)
            var refused: [(row: Int, channel: ChannelSpec)] = []
            for channel in channels(where: { $0.readable }) {
                switch await checkRead(channel, &report) {
                case .refused: refused.append((report.checks.count - 1, channel))
                case .wrong: unwritable[channel.name] = Self.unwritten
                case .orderUnchecked: unwritable[channel.name] = Self.uncheckedOrder
                case .other: break
                }
            }
            for channel in channels(where: { $0.writable }) {
                if let why = unwritable[channel.name] {
                    report.checks.append(.init(channel: channel.name, check: "write", result: .skipped, detail: why))
                    continue
                }
                await checkWrites(channel, &report)
            }
            // A device may refuse a read in its safe state (no absorbance with the lamp off): asked
            // again now that each bool was last written away from its safe value.
            for (row, channel) in refused where !Task.isCancelled {
                var again = ConformanceReport(driver: spec.name, address: report.address)
                await checkRead(channel, &again)
                guard var check = again.checks.first, check.result == .pass else { continue }
                check.detail += "; refused at first (\(report.checks[row].detail)), answered after the writes"
                report.checks[row] = check
            }
            for channel in channels(where: { $0.writable }) { await checkLimits(channel, &report) }
        }
        await commandSafeState(&report, leaving: Set(unwritable.keys))
        feeder?.cancel()
        return report
    }

    static let unwritten = "not written: its reading cannot be right (above), so a value sent would not be the value the device gets"
    static let uncheckedOrder = "not written: it reads 0, which is the same in every word order, so a wrong word_order would send the device "
        + "nonsense; set the device to another value first, or pass --trust-word-order"

    private enum ReadOutcome {
        /// The device refused the read (it answered, with an error).
        case refused
        /// A value came back that cannot be what the device holds.
        case wrong
        /// A float of 0: right in every word order, so the driver file's order is unchecked.
        case orderUnchecked
        case other
    }

    private func channels(where wanted: (ChannelSpec) -> Bool) -> [ChannelSpec] {
        spec.channels.values.filter(wanted).sorted { $0.name < $1.name }
    }

    private static func ms(_ duration: Duration) -> Double {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
        return (seconds * 100_000).rounded() / 100
    }

    private func interrupted(_ channel: String?, _ check: String, _ report: inout ConformanceReport) -> Bool {
        guard Task.isCancelled else { return false }
        report.checks.append(.init(channel: channel, check: check, result: .skipped, detail: "interrupted"))
        return true
    }

    private func connect(_ report: inout ConformanceReport) async -> Bool {
        do {
            try await instrument.probe()
        } catch where InstrumentHub.isLoss(error) {
            report.checks.append(.init(channel: nil, check: "connect", result: .fail, detail: "\(error)"))
            return false
        } catch {
            // It answered, if only to refuse a read: the channel checks say which.
        }
        report.checks.append(.init(channel: nil, check: "connect", result: .pass, detail: "the device answers at \(instrument.identity.address)"))
        return true
    }

    private func identify(_ report: inout ConformanceReport) async {
        guard let query = spec.identity else {
            return report.checks.append(.init(channel: nil, check: "identity", result: .skipped, detail: "the driver file declares no identity query"))
        }
        do {
            let answer = try await instrument.identifyDevice().deviceAnswer ?? ""
            report.checks.append(answer.isEmpty
                ? .init(channel: nil, check: "identity", result: .fail, detail: "\(query) answered nothing")
                : .init(channel: nil, check: "identity", result: .pass, detail: answer))
        } catch {
            report.checks.append(.init(channel: nil, check: "identity", result: .fail, detail: "\(query): \(error)"))
        }
    }

    /// Arms the device's watchdog and feeds it while the checks run, so that it does not trip midway.
    private func armWatchdog(_ report: inout ConformanceReport) async -> Task<Void, Never>? {
        guard let watchdog = spec.watchdog else {
            report.checks.append(.init(channel: nil, check: "watchdog", result: .skipped, detail: "the driver file declares no watchdog"))
            return nil
        }
        do {
            try await instrument.feedWatchdog()
        } catch {
            report.checks.append(.init(channel: nil, check: "watchdog", result: .fail, detail: "arming it failed: \(error)"))
            return nil
        }
        report.checks.append(.init(channel: nil, check: "watchdog", result: .pass,
                                   detail: "armed at \(watchdog.seconds) s and fed every \(watchdog.feedEvery.formatted(.number.precision(.significantDigits(1...3)))) s; it runs out after the test"))
        let instrument = self.instrument
        return Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(watchdog.feedEvery)) } catch { return }
                try? await instrument.feedWatchdog()
            }
        }
    }

    @discardableResult
    private func checkRead(_ channel: ChannelSpec, _ report: inout ConformanceReport) async -> ReadOutcome {
        guard !interrupted(channel.name, "read", &report) else { return .other }
        let clock = ContinuousClock(), start = clock.now
        do {
            if let layout = channel.array {
                guard let arrays = instrument as? any ArrayReadable else {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .skipped, detail: "array channels are not read over this transport"))
                    return .other
                }
                let values = try await arrays.readArray(channel.name)
                let took = Self.ms(clock.now - start)
                let odd = values.enumerated().first { Self.implausibility($0.element, channel) != nil }
                report.checks.append(odd.map {
                    .init(channel: channel.name, check: "read", result: .fail,
                          detail: "element \($0.offset): \(Self.implausibility($0.element, channel)!)", milliseconds: took)
                } ?? .init(channel: channel.name, check: "read", result: .pass, detail: "\(values.count) of \(layout.length) values in \(channel.unit)", milliseconds: took))
                return odd == nil ? .other : .wrong
            }
            if channel.isText {
                guard let texts = instrument as? any TextReadable else {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .skipped, detail: "string channels are not read over this transport"))
                    return .other
                }
                let text = try await texts.readText(channel.name)
                report.checks.append(.init(channel: channel.name, check: "read", result: .pass, detail: "'\(text)'", milliseconds: Self.ms(clock.now - start)))
                return .other
            }
            let value = try await instrument.read(channel.name)
            let took = Self.ms(clock.now - start)
            // Longer than one request may take: the first attempt timed out and a retry answered.
            // The host's own pacing may come first, twice (behind a watchdog feed).
            let timeout = spec.transport == .serial ? spec.serial.timeoutSeconds : spec.responseTimeout
            let pacing = 2 * spec.minInterval
            if took > (timeout + pacing) * 1000 {
                let paced = pacing > 0 ? " (and \(pacing) s of min_interval pacing)" : ""
                report.checks.append(.init(channel: channel.name, check: "read", result: .fail,
                                           detail: "\(value) after \(Int(took)) ms, longer than the driver file's timeout of \(timeout) s\(paced): the device answered "
                                                   + "only to a repeated request; give it a longer timeout", milliseconds: took))
                return .other
            }
            switch (channel.type, value) {
            case (.bool, .bool), (.bool, .real(0)), (.bool, .real(1)):
                report.checks.append(.init(channel: channel.name, check: "read", result: .pass, detail: "\(value)", milliseconds: took))
            case (.bool, .real(let x)):
                report.checks.append(.init(channel: channel.name, check: "read", result: .fail, detail: "\(x) for a bool channel", milliseconds: took))
            case (_, .bool(let b)):
                report.checks.append(.init(channel: channel.name, check: "read", result: .fail, detail: "\(b) for a \(channel.type.rawValue) channel", milliseconds: took))
            case (_, .real(let x)):
                if let limits = channel.limits, !limits.contains(x) {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .fail,
                                               detail: "\(x)\(channel.unit.afterNumber) is outside the driver file's limits \(limits.lowerBound)…\(limits.upperBound): a wrong scale, type, word order or address?",
                                               milliseconds: took))
                } else if let problem = Self.implausibility(x, channel) {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .fail, detail: problem, milliseconds: took))
                } else if x == 0, [.float32, .float64].contains(channel.type), !trustsWordOrder {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .pass, detail: "0.0\(channel.unit.afterNumber) (0 reads the same in every word order)",
                                               milliseconds: took))
                    return .orderUnchecked
                } else {
                    report.checks.append(.init(channel: channel.name, check: "read", result: .pass, detail: "\(x)\(channel.unit.afterNumber)", milliseconds: took))
                }
            }
        } catch {
            report.checks.append(.init(channel: channel.name, check: "read", result: .fail, detail: "\(error)", milliseconds: Self.ms(clock.now - start)))
            return (error as? LabError)?.code == .protocolViolation ? .refused : .other
        }
        return report.checks.last?.result == .fail ? .wrong : .other
    }

    /// Why a value read from a channel cannot be what the device measures, if it cannot. A float in
    /// the wrong word order decodes to a denormal-sized or astronomically large number; a
    /// temperature below absolute zero or a pH far off its scale is a wrong scale, offset or unit.
    static func implausibility(_ x: Double, _ channel: ChannelSpec) -> String? {
        guard x.isFinite else { return "\(x) is not a finite number (a wrong type or word order?)" }
        if [.float32, .float64, .float].contains(channel.type), x != 0, abs(x) < 1e-20 || abs(x) > 1e15 {
            return "\(x) \(channel.unit) is implausible for a measurement: a \(channel.type.rawValue) read in the wrong word order (\(channel.wordOrder.rawValue) in the driver file) or as the wrong type looks like this"
        }
        if channel.unit.dimension == .temperature, channel.unit.toSI(x) < -1e-9 {
            return "\(x) \(channel.unit) is below absolute zero (a wrong unit, scale or offset?)"
        }
        if channel.unit.symbol == "pH", !(-2...16).contains(x) {
            return "pH \(x) is off the pH scale (a wrong scale or type?)"
        }
        return nil
    }

    /// The values written to a channel: for a number the low end, middle and high end of its limits;
    /// a bool both ways, ending away from its safe value (the safe state at the end brings it back). What the register cannot hold exactly goes as the
    /// guard rounds it, so the read-back is compared with what was really sent.
    private func plan(_ channel: ChannelSpec) async -> (values: [Value], note: String?) {
        let safe = spec.safeState.first { $0.channel == channel.name }?.value
        if channel.type == .bool {
            let safeValue = safe.map { $0.asDouble != 0 } ?? false
            return ([.bool(safeValue), .bool(!safeValue)], nil)
        }
        if channel.maxRate != nil {
            // Steps across the limits would be refused by max_rate; the present value is always allowed.
            if channel.readable, let now = try? await instrument.read(channel.name) { return ([now], "max_rate: only its present value is written") }
            return (safe.map { [$0] } ?? [], safe == nil ? "max_rate and nothing to read or fall back to" : "max_rate: only its safe value is written")
        }
        guard let limits = channel.limits else {
            return (safe.map { [$0] } ?? [], safe == nil ? "no limits in the driver file: no value is known to be safe to write" : "no limits: only its safe value is written")
        }
        let values = [limits.lowerBound, (limits.lowerBound + limits.upperBound) / 2, limits.upperBound]
        return (values.compactMap { try? WriteGuard.check(.real($0), for: channel, instrument: spec.name) }, nil)
    }

    private func checkWrites(_ channel: ChannelSpec, _ report: inout ConformanceReport) async {
        guard !interrupted(channel.name, "write", &report) else { return }
        let (values, note) = await plan(channel)
        guard !values.isEmpty else {
            return report.checks.append(.init(channel: channel.name, check: "write", result: .skipped, detail: note ?? "nothing to write"))
        }
        var done: [String] = []
        for value in values {
            guard !Task.isCancelled else { break }
            do {
                try await instrument.write(channel.name, value)
                done.append(Self.text(value))
                guard channel.readable, channel.array == nil else { continue }
                let held = try await instrument.read(channel.name)
                guard Self.agree(held, value, channel) else {
                    return report.checks.append(.init(channel: channel.name, check: "write", result: .fail,
                                                      detail: "wrote \(Self.text(value)), read back \(Self.text(held))"))
                }
            } catch {
                return report.checks.append(.init(channel: channel.name, check: "write", result: .fail,
                                                  detail: "writing \(Self.text(value)): \(error)"))
            }
        }
        let unit = channel.type == .bool ? "" : channel.unit.afterNumber
        var detail = "wrote \(done.joined(separator: ", "))\(unit)" + (channel.readable ? ", each read back" : " (write-only: not read back)")
        if let note { detail += "; \(note)" }
        report.checks.append(.init(channel: channel.name, check: "write", result: .pass, detail: detail))
    }

    static func agree(_ held: Value, _ written: Value, _ channel: ChannelSpec) -> Bool {
        switch (held, written) {
        case (.bool(let a), .bool(let b)): return a == b
        case (.real(let a), .bool(let b)): return (a != 0) == b
        case (.real(let a), .real(let b)):
            let tolerance = channel.readBackTolerance.flatMap { $0 > 0 ? $0 : nil } ?? max(1e-9, abs(b) * 1e-6)
            return abs(a - b) <= tolerance
        case (.bool, .real): return false
        }
    }

    private static func text(_ value: Value) -> String {
        guard case .real(let x) = value else { return "\(value)" }
        return x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
    }

    /// A value beyond each limit must be refused by the guard, and nothing may reach the wire. The
    /// guard's own verdict is asked first: a value it would let through is never handed to the instrument.
    private func checkLimits(_ channel: ChannelSpec, _ report: inout ConformanceReport) async {
        guard !interrupted(channel.name, "limits", &report) else { return }
        guard channel.type != .bool, let limits = channel.limits else {
            return report.checks.append(.init(channel: channel.name, check: "limits", result: .skipped,
                                              detail: channel.type == .bool ? "a bool has no limits" : "the driver file gives no limits"))
        }
        let margin = max(1, limits.upperBound - limits.lowerBound)
        var refused: [String] = []
        for x in [limits.lowerBound - margin, limits.upperBound + margin] {
            guard (try? WriteGuard.check(.real(x), for: channel, instrument: spec.name)) == nil else {
                return report.checks.append(.init(channel: channel.name, check: "limits", result: .fail,
                                                  detail: "the guard would let \(Self.text(.real(x))) through; not sent"))
            }
            let before = wire?.sent
            do {
                try await instrument.write(channel.name, .real(x))
                return report.checks.append(.init(channel: channel.name, check: "limits", result: .fail, detail: "\(Self.text(.real(x))) was written"))
            } catch let error as LabError where error.code == .outOfLimits {
                if let before, let after = wire?.sent, after != before {
                    return report.checks.append(.init(channel: channel.name, check: "limits", result: .fail,
                                                      detail: "\(Self.text(.real(x))) was refused, but only after it was sent"))
                }
                refused.append(Self.text(.real(x)))
            } catch {
                return report.checks.append(.init(channel: channel.name, check: "limits", result: .fail,
                                                  detail: "\(Self.text(.real(x))): \(error)"))
            }
        }
        report.checks.append(.init(channel: channel.name, check: "limits", result: .pass,
                                   detail: "\(refused.joined(separator: " and "))\(channel.unit.afterNumber) refused before the wire"))
    }

    /// Always runs, also after failures: the device must not be left off its safe state.
    private func commandSafeState(_ report: inout ConformanceReport, leaving left: Set<String>) async {
        guard !spec.safeState.isEmpty else {
            return report.checks.append(.init(channel: nil, check: "safe-state", result: .skipped, detail: "the driver file declares no safe_state"))
        }
        let safeState = spec.safeState.filter { !left.contains($0.channel) }
        let untouched = spec.safeState.filter { left.contains($0.channel) }.map(\.channel)
        let leftAlone = untouched.isEmpty ? "" : "; \(untouched.joined(separator: ", ")) left as found: never written (see its read)"
        // Commanded again after a failure (a connection dropped under it): a write is never
        // repeated by the transport, since a device may have applied it, but the safe state may be.
        var attempts = 0
        while true {
            attempts += 1
            do {
                try await instrument.goToSafeState(leaving: left)
                break
            } catch {
                guard attempts < 3 else {
                    return report.checks.append(.init(channel: nil, check: "safe-state", result: .fail,
                                                      detail: "\(error) (commanded 3 times; the device may not be in its safe state)"))
                }
                try? await ContinuousClock().sleep(for: .milliseconds(500))
            }
        }
        var off: [String] = []
        for (name, value) in safeState {
            guard let channel = spec.channel(name), channel.readable, channel.array == nil else { continue }
            do {
                let held = try await instrument.read(name)
                if !Self.agree(held, value, channel) { off.append("\(name) reads \(Self.text(held)), not \(Self.text(value))") }
            } catch {
                off.append("\(name): \(error)")
            }
        }
        let all = safeState.map { "\($0.channel) = \(Self.text($0.value))" }.joined(separator: ", ")
        let again = attempts > 1 ? " (at the \(attempts == 2 ? "second" : "third") attempt)" : ""
        report.checks.append(off.isEmpty
            ? .init(channel: nil, check: "safe-state", result: .pass, detail: "\(all.isEmpty ? "nothing commanded" : "commanded \(all)")\(again)\(leftAlone)")
            : .init(channel: nil, check: "safe-state", result: .fail, detail: "commanded \(all), but " + off.joined(separator: "; ") + leftAlone))
    }
}

/// Behind `--simulate`: the driver's own physics, holding what was last written to a channel as a
/// real device holds a setpoint, so a write can be read back.
public final class RememberingModel: DeviceModel {
    private let base: any DeviceModel
    private let held = Mutex<[String: Double]>([:])

    public init(_ base: any DeviceModel) { self.base = base }

    public func value(of channel: String) throws -> Double {
        try held.withLock { $0[channel] } ?? base.value(of: channel)
    }

    public func didWrite(_ channel: String, _ value: Double) {
        held.withLock { $0[channel] = value }
        base.didWrite(channel, value)
    }

    public func values(of channel: String, along positions: [Double]) throws -> [Double] {
        try base.values(of: channel, along: positions)
    }
}
