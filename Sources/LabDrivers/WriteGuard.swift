public import LabCore
public import LabSpec
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
        case (var type, .real(let x)):
            // On a Modbus register a `float` is sent as a float32.
            if type == .float, case .holding = channel.register { type = .float32 }
            guard x.isFinite else { throw LabError(.notANumber, "refused to write \(x) to \(name)") }
            if let limits = channel.limits, !limits.contains(x) {
                throw LabError(.outOfLimits, "refused to write \(x) \(channel.unit) to \(name): outside \(limits.lowerBound)…\(limits.upperBound)")
            }
            let representable: ClosedRange<Double>? = switch type {
            case .uint16: 0...65535
            case .int16: -32768...32767
            case .float32: -Double(Float.greatestFiniteMagnitude)...Double(Float.greatestFiniteMagnitude)
            default: nil
            }
            if let representable, !representable.contains(x) {
                throw LabError(.outOfLimits, "\(x) does not fit \(name) (\(type.rawValue))")
            }
            let wire = onTheWire(x, type, inside: channel.limits ?? -.infinity ... .infinity)
            guard channel.limits?.contains(wire) ?? true else {
                throw LabError(.outOfLimits, "refused to write \(x) \(channel.unit) to \(name): no \(type.rawValue) value near it is inside its limits")
            }
            return .real(wire)
        }
    }

    /// What the register will hold: the nearest value of its type, or, where that would step past a
    /// limit the value itself respects (150.5 rounded to 151, 0.1 as a float32 just above 0.1), the
    /// neighbour on the inside. The wire must not carry what the check refused.
    private static func onTheWire(_ x: Double, _ type: ChannelSpec.DataType, inside limits: ClosedRange<Double>) -> Double {
        switch type {
        case .uint16, .int16:
            let r = x.rounded()
            return r > limits.upperBound ? x.rounded(.down) : r < limits.lowerBound ? x.rounded(.up) : r
        case .float32:
            let f = Float(x)
            return Double(f) > limits.upperBound ? Double(f.nextDown) : Double(f) < limits.lowerBound ? Double(f.nextUp) : Double(f)
        case .float, .bool, .array:
            return x
        }
    }
}
