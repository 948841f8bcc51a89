public import LabCore
public import LabSpec

/// The last check before a value reaches the wire, whatever the validator already said:
/// access, type, NaN and infinities (rejected, never clamped), and the driver file's limits.
public enum WriteGuard {
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
            return value
        }
    }
}
