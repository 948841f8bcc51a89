public import LabCore
public import LabTransport
import Synchronization

/// What `serendip driver test` found, one row per check: whether the device does what its driver
/// file says. `channel` is nil for checks of the whole device (connect, identity, watchdog, safe state).
public struct ConformanceReport: Sendable, Encodable {
    public enum Result: String, Sendable, Codable { case pass, fail, skipped }

    public struct Check: Sendable, Codable {
        public var channel: String?
        /// `connect`, `identity`, `watchdog`, `read`, `write`, `limits` or `safe-state`.
        public var check: String
        public var result: Result
        /// What was seen, or why it failed or was skipped.
        public var detail: String
        /// The time of one read (for `read`), rounded to 0.01 ms.
        public var milliseconds: Double?
    }

    public var driver: String
    public var address: String
    public var checks: [Check] = []
    /// Nothing failed (skipped checks do not count against it).
    public var passed: Bool { !checks.contains { $0.result == .fail } }

    public init(driver: String, address: String) { self.driver = driver; self.address = address }

    public func check(_ channel: String?, _ check: String) -> Check? {
        checks.first { $0.channel == channel && $0.check == check }
    }

    enum CodingKeys: String, CodingKey { case driver, address, checks, passed }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(driver, forKey: .driver)
        try container.encode(address, forKey: .address)
        try container.encode(checks, forKey: .checks)
        try container.encode(passed, forKey: .passed)
    }
}

/// Counts what went out on the wire as a write, so a value the guard refused is seen not to have left.
public final class WireCounter: Sendable {
    private let count = Atomic<Int>(0)
    public init() {}
    public var sent: Int { count.load(ordering: .acquiring) }
    func add() { count.add(1, ordering: .acquiringAndReleasing) }
}

/// A Modbus link that counts the write requests passed to it, but the watchdog's feeds (they go
/// on in the background while the checks run).
struct CountingModbusClient: ModbusClient {
    let client: any ModbusClient
    let writes: WireCounter
    let watchdog: UInt16?
    var address: String { client.address }
    func readRegisters(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [UInt16] {
        try await client.readRegisters(table, address: address, count: count, retries: retries)
    }
    func writeRegisters(address: UInt16, values: [UInt16]) async throws {
        if address != watchdog { writes.add() }
        try await client.writeRegisters(address: address, values: values)
    }
    func readBits(_ table: ModbusTable, address: UInt16, count: Int, retries: Int) async throws -> [Bool] {
        try await client.readBits(table, address: address, count: count, retries: retries)
    }
    func writeBit(address: UInt16, _ value: Bool) async throws {
        writes.add()
        try await client.writeBit(address: address, value)
    }
    func connect() async throws { try await client.connect() }
    func prepare(_ session: ModbusSession) { client.prepare(session) }
}
