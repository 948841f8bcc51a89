/// The raw bytes on an instrument's wire, each request and each reply, recorded with a run's
/// provenance when the lab config says `record_traffic: true` for the instrument.
public enum TrafficDirection: String, Sendable, Codable {
    case sent, received
}

/// Called by a transport, on the thread that runs the request, with each frame or line it sent or received whole.
/// It must not block: the recorder only hands the bytes over.
public typealias TrafficTap = @Sendable (TrafficDirection, [UInt8]) -> Void
