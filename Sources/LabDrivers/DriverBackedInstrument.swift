public import LabCore
public import LabSpec

/// An instrument whose behaviour comes from a driver file: channel metadata and the safe state are
/// the file's, whatever the transport.
public protocol DriverBackedInstrument: Instrument {
    var spec: DriverSpec { get }
}

extension DriverBackedInstrument {
    public func channelInfo(_ channel: String) -> ChannelInfo? { spec.channel(channel)?.info }

    public func goToSafeState() async throws {
        for (channel, value) in spec.safeState { try await write(channel, value) }
    }

    static func identity(name: String, spec: DriverSpec, address: String) -> InstrumentIdentity {
        InstrumentIdentity(name: name, driver: spec.name, driverSHA256: spec.source.sha256, address: address)
    }
}
