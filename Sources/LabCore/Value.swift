/// A value read from or written to an instrument channel.
public enum Value: Hashable, Sendable, CustomStringConvertible {
    case real(Double)
    case bool(Bool)

    public var asDouble: Double {
        switch self {
        case .real(let x): x
        case .bool(let b): b ? 1 : 0
        }
    }

    public var description: String {
        switch self {
        case .real(let x): "\(x)"
        case .bool(let b): "\(b)"
        }
    }
}

/// `instrument.channel`, as written in protocols (`reactor.setpoint`).
public struct ChannelRef: Hashable, Sendable, CustomStringConvertible, Codable {
    public var instrument: String
    public var channel: String

    public init(instrument: String, channel: String) {
        self.instrument = instrument; self.channel = channel
    }

    public var description: String { "\(instrument).\(channel)" }
}
