import Dispatch
import Foundation
import Glibc
import LabCore
import LabTransport
import Synchronization
import Testing

/// A misbehaving RTU device on a real pseudo-terminal: each request (counted from 0) is answered
/// as `behaviour` says. Requests are handled one at a time, as a device on a bus does.
final class ScriptedRTUDevice: Sendable {
    enum Action: Sendable {
        /// Holding registers with these values, after `delay` seconds.
        case registers([UInt16], delay: Double = 0)
        /// An exception reply with this code.
        case exception(UInt8)
        /// These bytes as they are (no CRC added): garbage, or a frame with a broken CRC.
        case raw([UInt8])
        /// The echo a write gets.
        case echo
        case silent
    }

    let terminal: PseudoTerminal
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let seen = Mutex<[[UInt8]]>([])

    var path: String { terminal.path }
    var requests: [[UInt8]] { seen.withLock { $0 } }

    init(_ behaviour: @escaping @Sendable (_ index: Int, _ request: [UInt8]) -> Action) throws {
        terminal = try PseudoTerminal.open()
        let fd = terminal.primary
        Thread { [self] in
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 256)
            while !stopping.load(ordering: .acquiring) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 20) > 0 else { continue }
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { usleep(5000); continue }
                pending += chunk[..<n]
                while pending.count >= 8 {
                    let length = pending[1] == 0x10 ? 9 + Int(pending.count > 6 ? pending[6] : 0) : 8
                    guard pending.count >= length else { break }
                    let request = Array(pending[..<length])
                    pending.removeFirst(length)
                    let index = seen.withLock { $0.append(request); return $0.count - 1 }
                    let reply: [UInt8]
                    switch behaviour(index, request) {
                    case .registers(let values, let delay):
                        if delay > 0 { usleep(UInt32(delay * 1e6)) }
                        reply = ModbusCRC.framed([request[0], 0x03, UInt8(2 * values.count)] + values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
                    case .exception(let code): reply = ModbusCRC.framed([request[0], request[1] | 0x80, code])
                    case .raw(let bytes): reply = bytes
                    case .echo: reply = ModbusCRC.framed(Array(request[0..<6]))
                    case .silent: reply = []
                    }
                    _ = reply.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                }
            }
            finished.signal()
        }.start()
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
        terminal.close()
    }

    deinit { stop() }
}

@Suite struct ModbusRTUFaultTests {
    /// Timeouts are generous where a reply is expected, so that a busy machine cannot make one late.
    static func client(_ device: ScriptedRTUDevice, response: Double = 2) -> ModbusRTUClient {
        ModbusRTUClient(bus: ModbusRTUBus(ModbusRTULine(path: device.path, baud: 19200)), unit: 7,
                        timing: .init(response: response, byte: 0.1))
    }

    @Test func aReadThatGetsNoReplyTimesOutAndIsSentAgainAsOftenAsItsRetriesAllow() async throws {
        let device = try ScriptedRTUDevice { _, _ in .silent }
        defer { device.stop() }
        let error = await #expect(throws: LabError.self) {
            try await Self.client(device, response: 0.5).readRegisters(.holding, address: 0, count: 1, retries: 2)
        }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("no reply within 0.5 s") == true)
        #expect(device.requests.count == 3)
    }

    /// RTU has no transaction id: a reply that comes after the timeout looks exactly like the next
    /// request's. The line is left to fall silent first, so it is never taken for it.
    @Test func aReplyAfterTheTimeoutIsNeverTakenAsTheAnswerToTheNextRead() async throws {
        // Request i is answered with 1000 + i; even ones late (1.5 s, the timeout being 1 s), odd
        // ones at once. A device handles one request at a time, so the late answer comes first.
        let device = try ScriptedRTUDevice { index, _ in .registers([UInt16(1000 + index)], delay: index % 2 == 0 ? 1.5 : 0) }
        defer { device.stop() }
        let client = Self.client(device, response: 1)
        var timeouts = 0
        for cycle in 0..<3 {
            // Whatever a busy machine does to the timing, a read returns its own request's answer or nothing.
            do {
                let first = try await client.readRegisters(.holding, address: 0, count: 1, retries: 0)
                #expect(first == [UInt16(1000 + 2 * cycle)])
            } catch {
                #expect((error as? LabError)?.code == .timeout, "\(error)")
                timeouts += 1
            }
            let value = try await client.readRegisters(.holding, address: 0, count: 1, retries: 0)
            #expect(value == [UInt16(1000 + 2 * cycle + 1)], "cycle \(cycle): took \(value) for request \(2 * cycle + 1)")
        }
        #expect(timeouts > 0, "no reply came late: the test did not test")
    }

    @Test(arguments: [
        ("CRC error", [UInt8(7), 0x03, 0x02, 0x00, 0x2A, 0x00, 0x00]),
        ("garbage", [UInt8(0x55), 0xAA, 0x13, 0x37, 0x00, 0xFF, 0x42, 0x99, 0x01]),
    ])
    func aGarbledReplyFailsTheReadAndTheLineServesTheNextOne(kind: String, reply: [UInt8]) async throws {
        let device = try ScriptedRTUDevice { index, _ in index == 0 ? .raw(reply) : .registers([42]) }
        defer { device.stop() }
        let client = Self.client(device)
        let error = await #expect(throws: LabError.self) { try await client.readRegisters(.holding, address: 0, count: 1, retries: 0) }
        // Garbage that does not even look like a frame ends in silence: a timeout, also not a value.
        #expect(error?.code == .transport || error?.code == .timeout, "\(kind): \(String(describing: error))")
        if kind == "CRC error" { #expect(error?.message.contains("garbled (CRC error)") == true) }
        #expect(try await client.readRegisters(.holding, address: 0, count: 1, retries: 0) == [42])
    }

    @Test func aGarbledReplyIsReadAgainWhenTheChannelAllowsARetry() async throws {
        let device = try ScriptedRTUDevice { index, _ in
            index == 0 ? .raw([7, 0x03, 0x02, 0x00, 0x2A, 0xBE, 0xEF]) : .registers([42])
        }
        defer { device.stop() }
        #expect(try await Self.client(device).readRegisters(.holding, address: 0, count: 1, retries: 1) == [42])
        #expect(device.requests.count == 2)
    }

    @Test(arguments: [UInt8(1), 2, 3, 4, 5, 6, 8, 10, 11])
    func everyExceptionCodeIsPutInWordsAndNotRetried(code: UInt8) async throws {
        let device = try ScriptedRTUDevice { _, _ in .exception(code) }
        defer { device.stop() }
        let error = await #expect(throws: LabError.self) {
            try await Self.client(device).readRegisters(.holding, address: 0, count: 1, retries: 2)
        }
        #expect(error?.code == .protocolViolation)
        #expect(error?.message.hasSuffix(ModbusException.message(code)) == true)
        #expect(error?.message.contains("unknown exception") == false)
        #expect(device.requests.count == 1)
    }

    @Test func aWriteThatGetsNoReplyIsNeverSentAgain() async throws {
        let device = try ScriptedRTUDevice { _, request in request[1] == 0x10 ? .silent : .registers([5]) }
        defer { device.stop() }
        let client = Self.client(device, response: 1)
        let error = await #expect(throws: LabError.self) { try await client.writeRegisters(address: 3, values: [5]) }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("not repeated") == true)
        // The next request goes out only after the line fell silent: by then a repeat would have shown.
        #expect(try await client.readRegisters(.holding, address: 3, count: 1, retries: 0) == [5])
        #expect(device.requests.map { $0[1] } == [0x10, 0x03])
    }

    @Test func aPortThatCannotBeOpenedIsALostInstrument() async throws {
        let client = ModbusRTUClient(bus: ModbusRTUBus(ModbusRTULine(path: "/nonexistent/ttyUSB9")), unit: 1)
        let error = await #expect(throws: LabError.self) { try await client.readRegisters(.input, address: 0, count: 1, retries: 0) }
        #expect(error?.code == .instrumentLost)
        #expect(error?.message.contains("cannot open /nonexistent/ttyUSB9") == true)
        // A write that never left says so, rather than that the device may have applied it.
        let write = await #expect(throws: LabError.self) { try await client.writeRegisters(address: 0, values: [1]) }
        #expect(write?.message.contains("nothing was sent") == true && write?.message.contains("may or may not") == false, "\(write?.message ?? "")")
    }

    /// The TCP client says the same words for the same exception.
    @Test func theTCPClientPutsAnExceptionInTheSameWords() async throws {
        let server = try ModbusServer(sizes: .init(holding: 4)) { _, _ in }
        defer { server.stop() }
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: server.port))
        let error = await #expect(throws: LabError.self) { try await client.readRegisters(.holding, address: 100, count: 1) }
        #expect(error?.message.hasSuffix(ModbusException.message(2)) == true)
        #expect(error?.message.contains("illegal data address") == true)
    }
}
