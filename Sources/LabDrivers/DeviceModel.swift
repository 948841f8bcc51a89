public import LabCore

/// The behaviour behind a simulated instrument: what its read-only channels report and how it
/// reacts to writes. Values are in the channel's unit as the driver file declares it.
public protocol DeviceModel: Sendable {
    /// The value a read-only channel reports now; throwing makes the device answer with an error.
    func value(of channel: String) throws -> Double
    /// A client wrote a writable channel.
    func didWrite(_ channel: String, _ value: Double)
    /// What an array channel reports now: one value per position along its axis.
    func values(of channel: String, along positions: [Double]) throws -> [Double]
}

extension DeviceModel {
    /// A device with no spectrum of its own reports its value at every position.
    public func values(of channel: String, along positions: [Double]) throws -> [Double] {
        Array(repeating: try value(of: channel), count: positions.count)
    }
}

extension ArrayLayout {
    /// The axis position of each element.
    public var positions: [Double] { (0..<length).map(axis.position) }
}

/// A device with no physics: read-only channels report zero, writes are accepted.
public struct InertModel: DeviceModel {
    public init() {}
    public func value(of channel: String) throws -> Double { 0 }
    public func didWrite(_ channel: String, _ value: Double) {}
}
