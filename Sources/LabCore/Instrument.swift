/// Small capabilities an instrument may have; the engine asks for the one it needs.
public protocol ChannelReadable: Sendable {
    func read(_ channel: String) async throws -> Value
}

public protocol ChannelWritable: Sendable {
    /// Writes a value already converted to the channel's unit. Implementations check limits
    /// again right before the value reaches the wire.
    func write(_ channel: String, _ value: Value) async throws
}

public protocol SafeStateCapable: Sendable {
    /// Commands the instrument to the safe state its driver file declares.
    func goToSafeState() async throws
}

/// What the engine needs to know about a channel to convert units and check limits.
public struct ChannelInfo: Sendable, Hashable {
    public var unit: LabUnit
    public var writable: Bool
    public var limits: ClosedRange<Double>?
    public var isBoolean: Bool
    /// Whether the channel holds a state that can be read (a setpoint, a switch), rather than being
    /// a write-only command (a dispense): only states are written again when a paused run resumes.
    public var readable: Bool
    /// Set for an array channel (a spectrum): a read returns a whole array, never a number.
    public var array: ArrayLayout?

    public init(unit: LabUnit, writable: Bool, limits: ClosedRange<Double>?, isBoolean: Bool, readable: Bool = true,
                array: ArrayLayout? = nil) {
        self.unit = unit; self.writable = writable; self.limits = limits; self.isBoolean = isBoolean; self.readable = readable
        self.array = array
    }
}

/// Who an instrument is, for provenance.
public struct InstrumentIdentity: Sendable, Hashable, Codable {
    public var name: String
    public var driver: String
    public var driverSHA256: String
    public var address: String
    /// What the driver file asks the device to say what it is (`*IDN?`), and what it answered
    /// (`Serendip,SIM-UV-VIS,0001,1.0`): nil when the driver declares no such query.
    public var deviceQuery: String?
    public var deviceAnswer: String?

    public init(name: String, driver: String, driverSHA256: String, address: String,
                deviceQuery: String? = nil, deviceAnswer: String? = nil) {
        self.name = name; self.driver = driver; self.driverSHA256 = driverSHA256; self.address = address
        self.deviceQuery = deviceQuery; self.deviceAnswer = deviceAnswer
    }
}

/// A connected instrument as the engine uses it.
public protocol Instrument: ChannelReadable, ChannelWritable, SafeStateCapable {
    var identity: InstrumentIdentity { get }
    func channelInfo(_ channel: String) -> ChannelInfo?
    /// `identity` with the device's own answer to its identity query, asked now (the device behind
    /// an address may have been swapped since the last run). Throws if the device does not answer.
    func identifyDevice() async throws -> InstrumentIdentity
}

extension Instrument {
    public func identifyDevice() async throws -> InstrumentIdentity { identity }
}
