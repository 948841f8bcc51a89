import Foundation
import Glibc
import LabCore
import LabTransport
import Synchronization
import Testing

/// A Modbus TCP device whose every answer can be told apart: a read of two holding registers at
/// address a answers [a, n], n counting the requests it got. Faults are drawn from a seeded
/// generator, one per request: a reply after the client gave up, a reply to another transaction
/// (alone, or before the right one), the right reply twice, a frame cut short (followed by
/// silence, or by the device closing the connection), or a reply a millisecond late: within the
/// client's timeout but past what a caller's thread waits, so the client's queue takes it over.
final class CountingModbusDevice: Sendable {
    enum Fault: CaseIterable, Sendable { case late, wrongTransactionOnly, wrongTransactionFirst, twice, truncatedThenSilent, truncatedThenClosed, slow }

    private let acceptor: LoopbackAcceptor
    var port: Int { acceptor.port }
    private let state: Mutex<(random: SplitMix64, requests: Int, faults: [Fault: Int])>
    private let late: Double
    /// The chance of each fault, per request.
    private let rates: [(Fault, Double)]

    init(seed: UInt64, late: Double, rates: [(Fault, Double)]) throws {
        state = Mutex((SplitMix64(seed: seed), 0, [:]))
        self.late = late
        self.rates = rates
        acceptor = try LoopbackAcceptor(backlog: 16)
        acceptor.start { [self] in serve($0) }
    }

    var faults: [Fault: Int] { state.withLock { $0.faults } }

    func stop() { acceptor.stop() }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        while !acceptor.isStopping {
            guard let header = receive(fd, 7) else { return }
            guard let pdu = receive(fd, Int(header[4]) << 8 | Int(header[5]) - 1), pdu[0] == 0x03 else { return }
            let address = UInt16(pdu[1]) << 8 | UInt16(pdu[2])
            let (n, fault) = state.withLock { state -> (UInt16, Fault?) in
                state.requests += 1
                let draw = Double(state.random.next() >> 11) / Double(1 << 53)
                var sum = 0.0
                let fault = rates.first { sum += $0.1; return draw < sum }?.0
                if let fault { state.faults[fault, default: 0] += 1 }
                return (UInt16(truncatingIfNeeded: state.requests), fault)
            }
            let reply = Self.frame(header, [0x03, 4, UInt8(address >> 8), UInt8(address & 0xFF), UInt8(n >> 8), UInt8(n & 0xFF)])
            var other = header
            other[1] &+= 1
            // Another transaction's answer carries a value this read must never return.
            let strayAddress = address ^ 0x8000
            let stray = Self.frame(other, [0x03, 4, UInt8(strayAddress >> 8), UInt8(strayAddress & 0xFF), UInt8(n >> 8), UInt8(n & 0xFF)])
            switch fault {
            case .late?:
                usleep(UInt32(late * 1e6))
                send(fd, reply)
            case .slow?:
                usleep(1_000)
                send(fd, reply)
            case .wrongTransactionOnly?: send(fd, stray)
            case .wrongTransactionFirst?: send(fd, stray + reply)
            case .twice?: send(fd, reply + reply)
            case .truncatedThenSilent?: send(fd, Array(reply.prefix(9)))
            case .truncatedThenClosed?:
                send(fd, Array(reply.prefix(9)))
                return
            case nil: send(fd, reply)
            }
        }
    }

    private static func frame(_ header: [UInt8], _ pdu: [UInt8]) -> [UInt8] {
        var frame = header
        frame[4] = 0; frame[5] = UInt8(pdu.count + 1)
        return frame + pdu
    }

    private func receive(_ fd: Int32, _ count: Int) -> [UInt8]? { LoopbackAcceptor.receive(fd, count) }
    private func send(_ fd: Int32, _ bytes: [UInt8]) { LoopbackAcceptor.send(fd, bytes) }
}

@Suite struct ModbusTCPFaultMixTests {
    /// 10,000 reads by default (about 10 s here); SERENDIP_MODBUS_FAULT_READS sets the count (`make soak`: 100,000),
    /// SERENDIP_MODBUS_FAULT_SEED the seed a failure printed.
    static let reads = ProcessInfo.processInfo.environment["SERENDIP_MODBUS_FAULT_READS"].flatMap(Int.init) ?? 10_000
    static let seed = ProcessInfo.processInfo.environment["SERENDIP_MODBUS_FAULT_SEED"].flatMap(UInt64.init) ?? 13

    @Test func noReadAmidLateStrayAndTruncatedRepliesReturnsTheAnswerToAnotherRequest() async throws {
        // A timed-out request costs the response timeout: 1.2 % of requests time out, about 12 s per 10,000 at 0.1 s.
        let device = try CountingModbusDevice(seed: Self.seed, late: 0.25, rates: [
            (.late, 0.004), (.wrongTransactionOnly, 0.004), (.truncatedThenSilent, 0.004), (.truncatedThenClosed, 0.005),
            (.wrongTransactionFirst, 0.01), (.twice, 0.01), (.slow, 0.02),
        ])
        defer { device.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: device.port, responseTimeout: 0.1))
        var answered = 0, lastCount = 0
        var wrong: [String] = []
        for i in 0..<Self.reads {
            let address = UInt16(i % 500)
            // One repeat allowed: a repeated read is a new request with its own count.
            guard let registers = try? await client.readRegisters(.holding, address: address, count: 2, retries: 1) else { continue }
            answered += 1
            let count = Int(registers[1])
            // The device's count wraps at 65,536; counts only go up between two answers otherwise.
            let later = count > lastCount || lastCount - count > 30_000
            if registers[0] != address || !later {
                wrong.append("read \(i) at \(address) got \(registers)")
            }
            lastCount = count
        }
        #expect(wrong.isEmpty, "seed \(Self.seed): \(wrong.prefix(5))")
        let faults = device.faults
        #expect(Set(faults.keys) == Set(CountingModbusDevice.Fault.allCases), "\(faults)")
        // Every fault costs at most one read (two with its repeat); the rest are answered.
        #expect(answered >= Self.reads * 95 / 100, "\(answered) of \(Self.reads) answered; faults \(faults)")
    }

    @Test func concurrentReadersOnOneConnectionEachGetTheirOwnAnswerWhenRepliesOutlastTheCallersWait() async throws {
        // A third of the replies come after the caller's thread has handed its wait to the client's
        // queue. The readers pause at random between reads, so that one often asks just as another's
        // wait changes hands, and must not take the connection meanwhile.
        let device = try CountingModbusDevice(seed: Self.seed, late: 0.25, rates: [(.slow, 0.3), (.wrongTransactionFirst, 0.05), (.twice, 0.05)])
        defer { device.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: device.port, responseTimeout: 1))
        let wrong = try await withThrowingTaskGroup(of: [String].self) { group in
            for reader in 0..<4 {
                group.addTask {
                    var random = SplitMix64(seed: UInt64(reader) + Self.seed)
                    var wrong: [String] = []
                    for i in 0..<400 {
                        let address = UInt16(reader * 1000 + i)
                        let registers = try await client.readRegisters(.holding, address: address, count: 2)
                        if registers[0] != address { wrong.append("reader \(reader) read \(address), got \(registers)") }
                        try await Task.sleep(for: .microseconds(random.next() % 1_500))
                    }
                    return wrong
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect(device.faults[.slow, default: 0] > 300, "\(device.faults)")
    }
}
