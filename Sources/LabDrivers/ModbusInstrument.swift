public import LabCore
public import LabSpec
public import LabTransport

/// An instrument whose driver file is a Modbus register map, over TCP or over a serial line (RTU).
public struct ModbusInstrument: DriverBackedInstrument, TextReadable {
    public let identity: InstrumentIdentity
    public let spec: DriverSpec
    private let client: any ModbusClient
    private let writeGuard: WriteGuard

    /// `clock` times the `max_rate` checks: the simulated lab's clock for a simulated device.
    public init(name: String, spec: DriverSpec, client: any ModbusClient, clock: any LabClock = ScaledClock()) {
        self.spec = spec
        self.client = client
        writeGuard = WriteGuard(instrument: name, clock: clock)
        identity = Self.identity(name: name, spec: spec, address: client.address)
        client.prepare(Self.session(spec))
    }

    /// The driver file's `min_interval:` and `init:` writes, as the link sends them on every connect.
    static func session(_ spec: DriverSpec) -> ModbusSession {
        ModbusSession(minInterval: spec.minInterval, greeting: spec.initSteps.compactMap { step in
            switch step.action {
            case .holding(let address, let value): ModbusSession.Write(label: step.description, target: .registers(address, [value]))
            case .coil(let address, let bit): ModbusSession.Write(label: step.description, target: .coil(address, bit))
            case .command: nil
            }
        })
    }

    public func read(_ channel: String) async throws -> Value {
        let channel = try lookup(channel)
        guard channel.readable else { throw LabError(.accessDenied, "\(identity.name).\(channel.name) cannot be read (access: w)") }
        if channel.isText { throw LabError(.accessDenied, "\(identity.name).\(channel.name) is a string channel: its text is recorded with each run") }
        return try await read(channel, retries: channel.retries)
    }

    public var textChannels: [String] { spec.channels.values.filter(\.isText).map(\.name).sorted() }

    /// A string channel's registers as text: two characters a register (bytes swapped for `BADC`
    /// and `DCBA`), up to the first NUL, trailing blanks dropped.
    public func readText(_ name: String) async throws -> String {
        let channel = try lookup(name)
        let (table, address): (ModbusTable, UInt16)
        switch channel.register {
        case .holding(let a) where channel.isText: (table, address) = (.holding, a)
        case .input(let a) where channel.isText: (table, address) = (.input, a)
        default: throw LabError(.accessDenied, "\(identity.name).\(name) is not a string channel")
        }
        let registers = try await client.readRegisters(table, address: address, count: channel.textRegisters, retries: channel.retries)
        return ModbusFloat.decodeString(registers, channel.wordOrder.modbus)
    }

    /// Connects if needed, then reads the first readable channel by name once (no retries: a probe
    /// that fails is what it is there to find).
    public func probe() async throws {
        try await client.connect()
        if let channel = spec.channels.values.filter({ $0.readable && !$0.isText }).min(by: { $0.name < $1.name }) {
            _ = try await read(channel, retries: 0)
        }
    }

    /// Reads the driver file's identity registers as text.
    public func identifyDevice() async throws -> InstrumentIdentity {
        guard case .holding(let address, let count)? = spec.identity else { return identity }
        try await client.connect()
        var identified = identity
        identified.deviceAnswer = Self.text(try await client.readRegisters(.holding, address: address, count: count, retries: 0))
        return identified
    }

    /// ASCII two characters a register, high byte first, up to the first NUL, trailing blanks dropped.
    static func text(_ registers: [UInt16]) -> String {
        let bytes = registers.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }.prefix { $0 != 0 }
        return String(String(decoding: bytes, as: UTF8.self).reversed().drop { $0 == " " }.reversed())
    }

    /// The registers holding `text` (cut to fit, NUL-padded): what `text(_:)` reads back.
    static func registers(_ text: String, count: Int) -> [UInt16] {
        let bytes = Array(text.utf8.prefix(count * 2)) + Array(repeating: 0, count: max(0, count * 2 - text.utf8.count))
        return (0..<count).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
    }

    public func feedWatchdog() async throws {
        guard let watchdog = spec.watchdog, case .holding(let address) = watchdog.target else { return }
        try await client.writeRegisters(address: address, values: [UInt16(watchdog.seconds)])
    }

    private func read(_ channel: ChannelSpec, retries: Int) async throws -> Value {
        switch channel.register {
        case .holding(let address):
            return try await decode(client.readRegisters(.holding, address: address, count: channel.registerCount, retries: retries), channel)
        case .input(let address):
            return try await decode(client.readRegisters(.input, address: address, count: channel.registerCount, retries: retries), channel)
        case .coil(let address):
            return .bool(try await client.readBits(.coil, address: address, count: 1, retries: retries)[0])
        case .discreteInput(let address):
            return .bool(try await client.readBits(.discreteInput, address: address, count: 1, retries: retries)[0])
        case .command, .plugin:
            throw LabError(.invalidFile, "\(identity.name).\(channel.name) is a serial command on a Modbus instrument")
        }
    }

    public func write(_ name: String, _ value: Value, rateLimited: Bool) async throws {
        let channel = try lookup(name)
        let checked = try await writeGuard.check(value, for: channel, rateLimited: rateLimited) { try await read(name) }
        switch (channel.register, checked) {
        case (.coil(let address), .bool(let bit)):
            try await client.writeBit(address: address, bit)
            writeGuard.wrote(checked, to: channel)
        case (.holding(let address), .bool(let bit)):
            // A bool kept in a holding register: 1 or 0.
            try await client.writeRegisters(address: address, values: [bit ? 1 : 0])
            writeGuard.wrote(checked, to: channel)
        case (.holding(let address), .real(let x)):
            let registers = Self.encode(x, channel)
            try await client.writeRegisters(address: address, values: registers)
            writeGuard.wrote(checked, to: channel)
            // Read back: a device that silently ignored or clipped the write must not go unnoticed.
            let echoed = try await client.readRegisters(.holding, address: address, count: registers.count, retries: channel.retries)
            guard echoed == registers else {
                throw LabError(.readBackMismatch, "\(identity.name).\(channel.name): wrote \(x) \(channel.unit), device holds \(try decode(echoed, channel)) \(channel.unit)")
            }
        default:
            throw LabError(.accessDenied, "\(identity.name).\(channel.name) cannot be written")
        }
    }

    private func lookup(_ name: String) throws(LabError) -> ChannelSpec {
        guard let channel = spec.channel(name) else {
            throw LabError(.unknownReference, "\(identity.name) has no channel '\(name)'")
        }
        return channel
    }

    /// The registers for an engineering value that passed the write guard (raw = (x − offset) / scale).
    static func encode(_ x: Double, _ channel: ChannelSpec) -> [UInt16] {
        guard let number = channel.number else { return [x != 0 ? 1 : 0] }
        return ModbusFloat.encode(channel.raw(x), as: number, channel.wordOrder.modbus)
    }

    private func decode(_ registers: [UInt16], _ channel: ChannelSpec) throws(LabError) -> Value {
        Self.decode(registers, channel)
    }

    static func decode(_ registers: [UInt16], _ channel: ChannelSpec) -> Value {
        guard let number = channel.number else { return .bool(registers[0] != 0) }
        return .real(channel.engineering(ModbusFloat.decode(registers, as: number, channel.wordOrder.modbus)))
    }
}

extension ChannelSpec {
    /// How the register holds the channel's value; nil for a bool (a bit, or 0/1 in a register).
    var number: ModbusFloat.Number? {
        switch type {
        case .bool, .string, .array: nil
        case .float: .float32
        default: ModbusFloat.Number(rawValue: type.rawValue)
        }
    }

    var registerCount: Int { isText ? textRegisters : number?.registerCount ?? 1 }
}

extension WordOrder {
    var modbus: ModbusFloat.Order { ModbusFloat.Order(rawValue: rawValue)! }
}
