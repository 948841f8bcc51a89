import Foundation
public import LabCore
public import LabSpec
public import LabTransport

/// An instrument whose driver file is an ASCII command set: `query: "ABS?"` reads a channel,
/// `write: "WL {value}"` (or `on:`/`off:` for a boolean) sets one. A reply the driver file's `errors:`
/// recognises (by default one starting with `ERR`) is the device refusing. Under `scpi: true` a
/// write gets no reply, and `SYST:ERR?` says whether the device took it.
public struct SerialInstrument: DriverBackedInstrument, ArrayReadable, TextReadable {
    public let identity: InstrumentIdentity
    public let spec: DriverSpec
    private let line: SerialLine
    private let writeGuard: WriteGuard

    /// `clock` times the `max_rate` checks: the simulated lab's clock for a simulated device.
    public init(name: String, spec: DriverSpec, line: SerialLine, clock: any LabClock = ScaledClock()) {
        self.spec = spec
        self.line = line
        writeGuard = WriteGuard(instrument: name, clock: clock)
        identity = Self.identity(name: name, spec: spec, address: line.path)
        line.prepare(SerialLine.Session(minInterval: spec.minInterval, greeting: Self.greeting(spec, instrument: name)))
    }

    /// The driver file's `init:`, sent by the line on every (re)open before anything else. A step
    /// with `expect` must get exactly that reply; any other must not be refused (under SCPI, the
    /// step is silent and `SYST:ERR?` must answer no error). A device that refuses its init is not
    /// connected: `instrumentLost` (or `timeout`), so a run pauses and the hub probes it again.
    static func greeting(_ spec: DriverSpec, instrument: String) -> SerialLine.Greeting? {
        guard !spec.initSteps.isEmpty else { return nil }
        let steps = spec.initSteps, errors = spec.errorReplies, scpi = spec.scpi
        return { ask throws(LabError) in
            for step in steps {
                guard case .command(let send, let expect) = step.action else { continue }
                let failed = "\(instrument): \(step) failed"
                do throws(LabError) {
                    if scpi, expect == nil {
                        _ = try ask(send, false)
                        let answer = try ask(scpiErrorQuery, true) ?? ""
                        if !DriverSpec.scpiNoError(answer) { throw LabError(.instrumentLost, "\(failed): SYST:ERR? answered '\(answer)'") }
                        continue
                    }
                    let reply = try ask(send, true) ?? ""
                    if let expect, reply != expect {
                        throw LabError(.instrumentLost, "\(failed): expected '\(expect)', device answered '\(reply)'")
                    }
                    if expect == nil, errors.isRefusal(reply) { throw LabError(.instrumentLost, "\(failed): device says '\(reply)'") }
                } catch {
                    // A line that broke or stayed silent still names the step it broke on.
                    if error.message.hasPrefix(failed) { throw error }
                    throw LabError(error.code, "\(failed): \(error.message)")
                }
            }
        }
    }

    static let scpiErrorQuery = "SYST:ERR?"

    public func read(_ name: String) async throws -> Value {
        guard let channel = spec.channel(name), channel.readable, case .command(let query?, _) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) cannot be read")
        }
        if channel.array != nil { throw LabError(.accessDenied, "\(identity.name).\(name) is an array channel: measure it") }
        if channel.isText { throw LabError(.accessDenied, "\(identity.name).\(name) is a string channel: its text is recorded with each run") }
        let reply = try await checked(ask(query, retries: channel.retries), name)
        if channel.type == .bool { return .bool(reply == "1" || reply.lowercased() == "on") }
        guard let x = Double(reply), x.isFinite else {
            throw LabError(.protocolViolation, "\(identity.name).\(name): reply '\(reply)' is not a number")
        }
        return .real(x)
    }

    public var textChannels: [String] { spec.channels.values.filter(\.isText).map(\.name).sorted() }

    /// A string channel's reply line, as it came (unless it is a refusal).
    public func readText(_ name: String) async throws -> String {
        guard let channel = spec.channel(name), channel.isText, case .command(let query?, _) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) is not a string channel")
        }
        return try await checked(ask(query, retries: channel.retries), name)
    }

    /// An array channel's reply: its `length` numbers, separated by commas (spaces allowed).
    public func readArray(_ name: String) async throws -> [Double] {
        guard let channel = spec.channel(name), let layout = channel.array, case .command(let query?, _) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) is not an array channel")
        }
        // Room for every element in its longest form ("-1.2345678901234567e-300,").
        let reply = try await checked(ask(query, retries: channel.retries, maxReplyBytes: max(SerialLine.maxLineBytes, 32 * layout.length)), name)
        var values: [Double] = []
        values.reserveCapacity(layout.length)
        for field in reply.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let text = String(decoding: field, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            guard let x = Double(text), x.isFinite else {
                throw LabError(.protocolViolation, "\(identity.name).\(name): element \(values.count) '\(text.prefix(20))' is not a number")
            }
            values.append(x)
        }
        guard values.count == layout.length else {
            throw LabError(.protocolViolation, "\(identity.name).\(name): \(values.count) values, the driver file says \(layout.length)")
        }
        return values
    }

    public func write(_ name: String, _ value: Value, rateLimited: Bool) async throws {
        guard let channel = spec.channel(name), case .command(_, let command?) = channel.register else {
            throw LabError(.accessDenied, "\(identity.name).\(name) cannot be written")
        }
        let checkedValue = try await writeGuard.check(value, for: channel, rateLimited: rateLimited) { try await read(name) }
        try await send(command.text(for: checkedValue), name)
        writeGuard.wrote(checkedValue, to: channel)
        if let tolerance = channel.readBackTolerance, case .real(let x) = checkedValue { try await readBack(x, channel, tolerance) }
    }

    /// Queries a `read_back: true` channel after a write. Without a `read_back_tolerance` the device
    /// agrees if it prints the value to the precision it prints at: within half its last digit.
    private func readBack(_ written: Double, _ channel: ChannelSpec, _ tolerance: Double) async throws {
        guard case .command(let query?, _) = channel.register else { return }
        let reply = try await checked(line.query(query), channel.name)
        let allowed = tolerance > 0 ? tolerance : Self.halfLastDigit(of: reply)
        guard let held = Double(reply), abs(held - written) <= allowed * (1 + 1e-9) else {
            throw LabError(.readBackMismatch, "\(identity.name).\(channel.name): wrote \(written), device holds '\(reply)'")
        }
    }

    /// `12.50` → 0.005; `12` → 0.5; `1.5e-3` → 0.00005. Digits after the point, scaled by any exponent.
    static func halfLastDigit(of reply: String) -> Double {
        let parts = reply.lowercased().split(separator: "e", maxSplits: 1)
        let exponent = parts.count == 2 ? Int(parts[1]) ?? 0 : 0
        let decimals = parts.first?.split(separator: ".", maxSplits: 1).dropFirst().first?.count ?? 0
        return 0.5 * pow(10, Double(exponent - decimals))
    }

    /// Opens the line if needed; with a watchdog, feeds it (its reply proves the device listens),
    /// otherwise the first readable channel by name is queried once.
    public func probe() async throws {
        try await line.open()
        if spec.watchdog != nil { return try await feedWatchdog() }
        if let channel = spec.channels.values.filter({ $0.readable && $0.array == nil && !$0.isText }).min(by: { $0.name < $1.name }),
           case .command(let query?, _) = channel.register {
            _ = try await line.query(query)
        }
    }

    /// Asks the driver file's identity query (`*IDN?`); a refusal is not stored.
    public func identifyDevice() async throws -> InstrumentIdentity {
        guard case .command(let query)? = spec.identity else { return identity }
        try await line.open()
        var identified = identity
        identified.deviceAnswer = try checked(await line.query(query), "identity")
        return identified
    }

    public func feedWatchdog() async throws {
        guard let watchdog = spec.watchdog, case .command(let template) = watchdog.target else { return }
        let seconds = watchdog.seconds.rounded() == watchdog.seconds ? String(Int(watchdog.seconds)) : String(watchdog.seconds)
        try await send(template.replacingOccurrences(of: "{value}", with: seconds), "watchdog")
    }

    /// Sends a command that changes the device: its reply must not be a refusal, or under SCPI
    /// (where a command has no reply) `SYST:ERR?` must answer no error.
    private func send(_ text: String, _ channel: String) async throws {
        guard spec.scpi else {
            _ = try await checked(line.query(text), channel)
            return
        }
        try await line.send(text)
        let answer = try await line.query(Self.scpiErrorQuery)
        guard DriverSpec.scpiNoError(answer) else {
            throw LabError(.protocolViolation, "\(identity.name).\(channel): device says '\(answer)' after '\(text)'")
        }
    }

    /// A query repeated on a timeout or a lost line only as often as the driver file allows.
    private func ask(_ command: String, retries: Int, maxReplyBytes: Int = SerialLine.maxLineBytes) async throws -> String {
        for _ in 0..<retries {
            do { return try await line.query(command, maxReplyBytes: maxReplyBytes) } catch {
                guard error.code == .timeout || error.code == .instrumentLost else { throw error }
            }
        }
        return try await line.query(command, maxReplyBytes: maxReplyBytes)
    }

    private func checked(_ reply: String, _ channel: String) throws(LabError) -> String {
        if spec.errorReplies.isRefusal(reply) { throw LabError(.protocolViolation, "\(identity.name).\(channel): device says '\(reply)'") }
        return reply
    }
}
