import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Synchronization
import Testing

/// A Modbus TCP device on 127.0.0.1 that misbehaves on purpose, framed by hand so it can do what no
/// well-behaved server does: answer late, twice, from another unit, or to another transaction.
/// Holding and input register n hold 1000 + n until written; one thread per connection, so a late
/// answer on an old connection does not hold up a new one.
final class MisbehavingModbusDevice: Sendable {
    enum Fault: Sendable { case late(seconds: Double), twice, wrongUnit, wrongTransaction, closeWithoutReply }

    private let acceptor: LoopbackAcceptor
    var port: Int { acceptor.port }
    private let state = Mutex(State())

    private struct State {
        var requests = 0
        var faults: [Int: Fault] = [:]
        var holding = (0..<256).map { UInt16(1000 + $0) }
        var coils = [Bool](repeating: true, count: 64)
        var lateRepliesSent = 0
    }

    /// `faults` by request number, counted from 1 over all connections.
    init(faults: [Int: Fault]) throws {
        state.withLock { $0.faults = faults }
        acceptor = try LoopbackAcceptor(backlog: 8)
        acceptor.start { [self] in serve($0) }
    }

    var lateRepliesSent: Int { state.withLock { $0.lateRepliesSent } }
    /// Requests that reached the device, over all connections.
    var requests: Int { state.withLock { $0.requests } }
    func holding(_ address: Int) -> UInt16 { state.withLock { $0.holding[address] } }
    func coil(_ address: Int) -> Bool { state.withLock { $0.coils[address] } }

    func stop() { acceptor.stop() }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        while !acceptor.isStopping {
            guard let header = read(fd, 7) else { return }
            let length = Int(header[4]) << 8 | Int(header[5])
            guard let pdu = read(fd, length - 1) else { return }
            let (fault, reply) = state.withLock { state in
                state.requests += 1
                return (state.faults[state.requests], Self.answer(pdu, &state))
            }
            var frame = header
            frame[4] = UInt8((reply.count + 1) >> 8); frame[5] = UInt8((reply.count + 1) & 0xFF)
            switch fault {
            case .late(let seconds)?:
                Thread.sleep(forTimeInterval: seconds)
                write(fd, frame + reply)
                state.withLock { $0.lateRepliesSent += 1 }
            case .twice?:
                write(fd, frame + reply + frame + reply)
            case .closeWithoutReply?:
                return
            case .wrongUnit?:
                frame[6] &+= 8
                write(fd, frame + reply)
            case .wrongTransaction?:
                frame[1] &+= 100
                write(fd, frame + reply)
            case nil:
                write(fd, frame + reply)
            }
        }
    }

    /// Function code and data of the reply to one request.
    private static func answer(_ pdu: [UInt8], _ state: inout State) -> [UInt8] {
        let word = { (i: Int) in Int(pdu[i]) << 8 | Int(pdu[i + 1]) }
        let address = word(1)
        switch pdu[0] {
        case 0x03, 0x04:
            let count = word(3)
            return [pdu[0], UInt8(2 * count)] + (address..<address + count).flatMap { [UInt8(state.holding[$0] >> 8), UInt8(state.holding[$0] & 0xFF)] }
        case 0x01:
            let count = word(3)
            return [0x01, UInt8((count + 7) / 8)] + stride(from: 0, to: count, by: 8).map { start in
                (0..<min(8, count - start)).reduce(UInt8(0)) { $0 | (state.coils[address + start + $1] ? 1 << $1 : 0) }
            }
        case 0x05:
            state.coils[address] = word(3) == 0xFF00
            return Array(pdu)
        case 0x10:
            for i in 0..<word(3) { state.holding[address + i] = UInt16(word(6 + 2 * i)) }
            return Array(pdu[0..<5])
        default:
            return [pdu[0] | 0x80, 0x01]
        }
    }

    private func read(_ fd: Int32, _ count: Int) -> [UInt8]? { LoopbackAcceptor.receive(fd, count) }
    private func write(_ fd: Int32, _ bytes: [UInt8]) { LoopbackAcceptor.send(fd, bytes) }
}

/// Waits, up to a generous limit, for a condition another thread makes true.
func eventually(within seconds: Double = 20, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(20))
    }
    return true
}

@Suite struct ModbusResynchronisationTests {
    /// The client gives up long before the late answer comes, whatever the machine's load.
    static func endpoint(_ port: Int) -> ModbusTCPClient.Endpoint {
        ModbusTCPClient.Endpoint(host: "127.0.0.1", port: port, responseTimeout: 0.3)
    }

    @Test func afterALateReplyEveryLaterReadGetsItsOwnAnswer() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .late(seconds: 1.5)])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        await #expect { try await client.readRegisters(.holding, address: 1, count: 1) } throws: { ($0 as? LabError)?.code == .timeout }
        for address in UInt16(2)...6 {
            #expect(try await client.readRegisters(.holding, address: address, count: 1) == [1000 + address])
        }
        // And still after the late answer has certainly gone out.
        #expect(try await eventually { device.lateRepliesSent == 1 })
        for address in UInt16(7)...11 {
            #expect(try await client.readRegisters(.holding, address: address, count: 1) == [1000 + address])
        }
    }

    @Test func aReplySentTwiceDoesNotShiftTheAnswersThatFollow() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .twice, 3: .twice])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        for address in UInt16(1)...6 {
            #expect(try await client.readRegisters(.holding, address: address, count: 1) == [1000 + address])
        }
    }

    @Test func aReplyFromAnotherUnitIsRefusedAndNotTakenAsTheAnswer() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .wrongUnit])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        let error = await #expect(throws: LabError.self) { try await client.readRegisters(.holding, address: 1, count: 1) }
        #expect(error?.code == .transport)
        #expect(error?.message.contains("unit 9 answered, not unit 1") == true)
        #expect(error?.message.contains("device answered") == false)
        #expect(try await client.readRegisters(.holding, address: 2, count: 1) == [1002])
    }

    @Test func aReplyToAnotherTransactionIsNeverTakenAsTheAnswer() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .wrongTransaction])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        await #expect { try await client.readRegisters(.holding, address: 1, count: 1) } throws: { ($0 as? LabError)?.code == .timeout }
        #expect(try await client.readRegisters(.holding, address: 2, count: 1) == [1002])
    }

    @Test func theSafeStateIsReachedAfterALateReply() async throws {
        let spec = try DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml"))
        // The first request (reading the temperature) and its one retry are answered 1.5 s late.
        let device = try MisbehavingModbusDevice(faults: [1: .late(seconds: 1.5), 2: .late(seconds: 1.5)])
        defer { device.stop() }
        let reactor = ModbusInstrument(name: "reactor", spec: spec, client: ModbusTCPClient(Self.endpoint(device.port)))
        await #expect { try await reactor.read("temperature") } throws: { ($0 as? LabError)?.code == .timeout }
        try await reactor.goToSafeState()
        #expect(try await reactor.read("setpoint") == .real(25))
        #expect(device.coil(5) == false)
        // Still right once the late answers have gone out.
        #expect(try await eventually { device.lateRepliesSent == 2 })
        try await reactor.goToSafeState()
        #expect(try await reactor.read("setpoint") == .real(25))
    }
}

@Suite struct RepeatedRequestTests {
    static func endpoint(_ port: Int) -> ModbusTCPClient.Endpoint {
        ModbusTCPClient.Endpoint(host: "127.0.0.1", port: port, responseTimeout: 0.3)
    }

    @Test func aWriteWhoseLinkBrokeAfterItWasSentIsNeverSentAgain() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .closeWithoutReply])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        let error = await #expect(throws: LabError.self) { try await client.writeRegisters(address: 3, values: [7]) }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("may or may not have applied it") == true)
        #expect(device.requests == 1)
        // The link itself is re-opened for the next request.
        #expect(try await client.readRegisters(.holding, address: 4, count: 1) == [1004])
    }

    @Test func aWriteThatGotNoReplyIsNeverSentAgain() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .late(seconds: 1.5)])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        await #expect { try await client.writeBit(address: 2, false) } throws: { ($0 as? LabError)?.code == .timeout }
        #expect(device.requests == 1)
    }

    @Test func writesAnsweredAfterTheCallersWaitAreSentOnceAndTheirRepliesTaken() async throws {
        // A prompt read, then a write answered 20 ms late, twenty times: after a prompt reply the write
        // goes out on the caller's thread, whose wait the client's queue takes over (decision 0016).
        let device = try MisbehavingModbusDevice(faults: Dictionary(uniqueKeysWithValues: (1...20).map { (2 * $0, .late(seconds: 0.02)) }))
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        for i in UInt16(1)...20 {
            #expect(try await client.readRegisters(.holding, address: 50 + i, count: 1, retries: 0) == [1050 + i])
            try await client.writeRegisters(address: i, values: [i])
        }
        #expect(device.requests == 40)
        for i in UInt16(1)...20 {
            #expect(try await client.readRegisters(.holding, address: i, count: 1, retries: 0) == [i])
        }
    }

    @Test func aReadIsRepeatedAsOftenAsItsRetriesAllowAndNoMore() async throws {
        let device = try MisbehavingModbusDevice(faults: [1: .closeWithoutReply, 2: .closeWithoutReply, 3: .closeWithoutReply])
        defer { device.stop() }
        let client = ModbusTCPClient(Self.endpoint(device.port))
        await #expect { try await client.readRegisters(.holding, address: 1, count: 1, retries: 1) } throws: {
            ($0 as? LabError)?.code == .instrumentLost
        }
        #expect(device.requests == 2)
        await #expect { try await client.readRegisters(.holding, address: 1, count: 1, retries: 0) } throws: {
            ($0 as? LabError)?.code == .instrumentLost
        }
        #expect(device.requests == 3)
        #expect(try await client.readRegisters(.holding, address: 1, count: 1, retries: 0) == [1001])
    }

    @Test func aRegisterReadIsRepeatedOnceByDefaultAfterNoReply() async throws {
        let spec = try DriverSpec.load(path: Repository.path("drivers/thermo-reactor.yaml"))
        #expect(spec.channel("temperature")?.retries == 1)
        let device = try MisbehavingModbusDevice(faults: [1: .late(seconds: 1.5)])
        defer { device.stop() }
        let reactor = ModbusInstrument(name: "reactor", spec: spec, client: ModbusTCPClient(Self.endpoint(device.port)))
        _ = try await reactor.read("temperature")
        #expect(device.requests == 2)
    }

    @Test func aReadWithNoRetriesInItsDriverFileIsNotRepeated() async throws {
        let text = """
            driver: probe
            transport: modbus
            timeout: 300 ms
            channels:
              level: { input: 1, retries: 0 }
            """
        let spec = try DriverSpec.parse(text, path: "probe.yaml")
        #expect(spec.responseTimeout == 0.3)
        let device = try MisbehavingModbusDevice(faults: [1: .late(seconds: 1.5)])
        defer { device.stop() }
        let probe = ModbusInstrument(name: "probe", spec: spec, client: ModbusTCPClient(.init(host: "127.0.0.1", port: device.port,
                                                                                           responseTimeout: spec.responseTimeout)))
        await #expect { try await probe.read("level") } throws: { ($0 as? LabError)?.code == .timeout }
        #expect(device.requests == 1)
    }
}
