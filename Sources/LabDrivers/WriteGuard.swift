public import LabCore
public import LabSpec
import LabTransport
import Synchronization

/// The last check before a value reaches the wire, whatever the validator already said: access,
/// type, NaN and infinities (refused, never clamped), the driver file's limits and its `max_rate`.
/// One per instrument, held by it, so every path to the wire (protocol steps, `finally`, safe
/// states, planner proposals, API calls) passes the same checks; it remembers the last value
/// written to each channel, and when, for the rate check.
public final class WriteGuard: Sendable {
    private let instrument: String
    private let clock: any LabClock
    /// When the instrument connected: a value read from the device as the baseline for its first
    /// write is taken to have been held since then (nothing of ours wrote it meanwhile).
    private let connected: Double
    private let lastWritten = Mutex<[String: (value: Double, time: Double)]>([:])

    /// `clock` is monotonic time (the simulated lab's clock for a simulated device, so that a ramp
    /// run at simulated speed is judged in simulated time).
    public init(instrument: String, clock: any LabClock = ScaledClock()) {
        self.instrument = instrument
        self.clock = clock
        connected = clock.now
    }

    /// The value to send, or the reason it must not be sent. `rateLimited` is false only for the
    /// safe state, which must be reached now however fast that is; limits and NaN still apply to it.
    /// `current` reads the device, for the baseline of the first write to a rate-limited channel.
    public func check(_ value: Value, for channel: ChannelSpec, rateLimited: Bool = true,
                      current: () async throws -> Value) async throws -> Value {
        let checked = try Self.check(value, for: channel, instrument: instrument)
        guard rateLimited, let maxRate = channel.maxRate, case .real(let x) = checked else { return checked }
        var baseline = lastWritten.withLock { $0[channel.name] }
        if baseline == nil, channel.readable {
            // Without a readable channel there is no baseline: the first write is not rate-checked.
            baseline = (try await current().asDouble, connected)
        }
        guard let baseline else { return checked }
        let elapsed = max(0, clock.now - baseline.time)
        // A relative slack of 1e-9 only absorbs rounding in the step a ramp computes.
        if abs(x - baseline.value) > maxRate * elapsed * (1 + 1e-9) {
            throw LabError(.outOfLimits, "refused to move \(instrument).\(channel.name) from \(baseline.value) to \(x) \(channel.unit) in \(Self.seconds(elapsed)): faster than its max_rate of \(maxRate * 60) \(channel.unit)/min")
        }
        return checked
    }

    /// Remembers a value that went out on the wire.
    public func wrote(_ value: Value, to channel: ChannelSpec) {
        guard channel.maxRate != nil, case .real(let x) = value else { return }
        let now = clock.now
        lastWritten.withLock { $0[channel.name] = (x, now) }
    }

    private static func seconds(_ s: Double) -> String { s < 1 ? "\(Int((s * 1000).rounded())) ms" : "\((s * 10).rounded() / 10) s" }

    /// The checks that need no history: access, type, NaN and infinities, limits, what the register holds.
    public static func check(_ value: Value, for channel: ChannelSpec, instrument: String) throws(LabError) -> Value {
        let name = "\(instrument).\(channel.name)"
        guard channel.writable else { throw LabError(.accessDenied, "\(name) is read-only") }
        switch (channel.type, value) {
        case (.bool, .bool):
            return value
        case (.bool, .real(let x)) where x == 0 || x == 1:
            return .bool(x == 1)
        case (.bool, _):
            throw LabError(.outOfLimits, "\(name) takes true or false, not \(value)")
        case (_, .bool):
            throw LabError(.outOfLimits, "\(name) takes a number, not \(value)")
        case (let type, .real(let x)):
            guard x.isFinite else { throw LabError(.notANumber, "refused to write \(x) to \(name)") }
            if let limits = channel.limits, !limits.contains(x) {
                throw LabError(.outOfLimits, "refused to write \(x)\(channel.unit.afterNumber) to \(name): outside \(limits.lowerBound)…\(limits.upperBound)")
            }
            // On a Modbus register a `float` is sent as a float32; on a serial line it is text.
            let number: ModbusFloat.Number? = switch (type, channel.register) {
            case (.float, .holding): .float32
            case (.float, _), (.bool, _): nil
            default: ModbusFloat.Number(rawValue: type.rawValue)
            }
            guard let number else { return value }
            let raw = channel.raw(x)
            guard number.representable.contains(number.isInteger ? raw.rounded() : raw) else {
                let range = number.representable, plain = { (x: Double) in x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }
                let scaled = channel.scale != 1 || channel.offset != 0
                    ? " (\(x) \(channel.unit) is \(plain(raw)) counts at scale \(plain(channel.scale)), offset \(plain(channel.offset)))" : ""
                throw LabError(.outOfLimits, "\(x) \(channel.unit) does not fit \(name): its \(number.rawValue) register holds "
                               + "\(plain(range.lowerBound))…\(plain(range.upperBound))\(scaled)")
            }
            let limits = channel.limits ?? -.infinity ... .infinity
            guard let wire = onTheWire(raw, number, channel).first(where: { limits.contains($0) }) else {
                throw LabError(.outOfLimits, "refused to write \(x) \(channel.unit) to \(name): no \(number.rawValue) value near it is inside its limits")
            }
            return .real(wire)
        }
    }

    /// What the register can hold near a raw value, in the channel's unit, nearest first: where
    /// the nearest would step past a limit the value itself respects (150.5 rounded to 151, 0.1 as a
    /// float32 just above 0.1), a neighbour may be inside. The wire must not carry what the check refused.
    private static func onTheWire(_ raw: Double, _ type: ModbusFloat.Number, _ channel: ChannelSpec) -> [Double] {
        let candidates: [Double] = switch type {
        case .float64: [raw]
        case .float32: [Float(raw), Float(raw).nextDown, Float(raw).nextUp].map(Double.init)
        default: [raw.rounded(), raw.rounded(.down), raw.rounded(.up)]
        }
        // Unscaled, the value itself; scaled, what the register's value means in the channel's unit.
        return candidates.filter { type.representable.contains($0) }.map { channel.scale == 1 && channel.offset == 0 ? $0 : channel.engineering($0) }
    }
}
