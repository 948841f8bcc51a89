import Foundation
public import LabCore
public import LabSpec
public import LabTransport

/// An instrument whose driver file is an ASCII command set: `query: "ABS?"` reads a channel,
/// `write: "WL {value}"` (or `on:`/`off:` for a boolean) sets one. A reply starting with `ERR` is the device refusing.
public struct SerialInstrument: DriverBackedInstrument {
    public let identity: InstrumentIdentity
    public let spec: DriverSpec
    private let line: SerialLine

    public init(name: String, spec: DriverSpec, line: SerialLine) {
        self.spec = spec
        self.line = line
        identity = Self.identity(name: name, spec: spec, address: line.path)
    }

    public func read(_ name: String) async throws -> Value {
        guard let channel = spec.channel(name), case .command(let query?, _) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) cannot be read")
        }
        let reply = try await checked(line.query(query), name)
        if channel.type == .bool { return .bool(reply == "1" || reply.lowercased() == "on") }
        guard let x = Double(reply), x.isFinite else {
            throw LabError(.protocolViolation, "\(identity.name).\(name): reply '\(reply)' is not a number")
        }
        return .real(x)
    }

    public func write(_ name: String, _ value: Value) async throws {
        guard let channel = spec.channel(name), case .command(_, let command?) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) cannot be written")
        }
        let checkedValue = try WriteGuard.check(value, for: channel, instrument: identity.name)
        _ = try await checked(line.query(command.text(for: checkedValue)), name)
    }

    private func checked(_ reply: String, _ channel: String) throws(LabError) -> String {
        if reply.hasPrefix("ERR") { throw LabError(.protocolViolation, "\(identity.name).\(channel): device says '\(reply)'") }
        return reply
    }
}
