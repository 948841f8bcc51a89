public import LabCore

/// The behaviour behind a simulated instrument: what its read-only channels report and how it
/// reacts to writes. Values are in the channel's unit as the driver file declares it.
public protocol DeviceModel: Sendable {
    /// The value a read-only channel reports now; throwing makes the device answer with an error.
    func value(of channel: String) throws -> Double
    /// A client wrote a writable channel.
    func didWrite(_ channel: String, _ value: Double)
}

/// A device with no physics: read-only channels report zero, writes are accepted.
public struct InertModel: DeviceModel {
    public init() {}
    public func value(of channel: String) throws -> Double { 0 }
    public func didWrite(_ channel: String, _ value: Double) {}
}
