import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Synchronization
import Testing

/// An ASCII device on a real pseudo-terminal that answers `Q<n>` with `A<n>`, or, drawn from a
/// seeded generator, with garbage: random bytes and no terminator, binary bytes ending a line, a
/// line of megabytes without a terminator, or its answer after the client gave up on it.
final class GarbageSerialDevice: Sendable {
    enum Garbage: CaseIterable, Sendable { case noise, binaryLine, hugeLine, late }

    let terminal: PseudoTerminal
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let sent = Mutex<[Garbage: Int]>([:])

    var path: String { terminal.path }
    var garbage: [Garbage: Int] { sent.withLock { $0 } }

    init(seed: UInt64, rate: Double, late: Double) throws {
        terminal = try PseudoTerminal.open()
        let fd = terminal.primary
        // Non-blocking, so a write nobody reads cannot keep the device from stopping.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        Thread { [self] in
            var random = SplitMix64(seed: seed)
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 256)
            while !stopping.load(ordering: .acquiring) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 20) > 0 else { continue }
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { usleep(5000); continue }
                pending += chunk[..<n]
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let query = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeFirst(newline + 1)
                    let answer = Array("A\(query.dropFirst())\n".utf8)
                    let noise = { (count: Int) in (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }.filter { $0 != UInt8(ascii: "\n") } }
                    let kind = Double(random.next() >> 11) / Double(1 << 53) < rate ? Garbage.allCases.randomElement(using: &random) : nil
                    if let kind { sent.withLock { $0[kind, default: 0] += 1 } }
                    switch kind {
                    case .noise?: write(fd, noise(Int.random(in: 1...300, using: &random)))
                    case .binaryLine?: write(fd, noise(Int.random(in: 1...300, using: &random)) + [0xFF, 0xFE, UInt8(ascii: "\n")])
                    case .hugeLine?: write(fd, [UInt8](repeating: UInt8(ascii: "7"), count: 3 << 20))
                    case .late?:
                        usleep(UInt32(late * 1e6))
                        write(fd, answer)
                    case nil: write(fd, answer)
                    }
                }
            }
            finished.signal()
        }.start()
    }

    /// Writes all of it, as long as the reader takes it (a pty holds only a few kilobytes), or until stopped.
    private func write(_ fd: Int32, _ bytes: [UInt8]) {
        var rest = bytes[...]
        while !rest.isEmpty && !stopping.load(ordering: .acquiring) {
            let n = rest.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n > 0 { rest = rest.dropFirst(n) } else if errno == EAGAIN || errno == EINTR { usleep(200) } else { return }
        }
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
        terminal.close()
    }

    deinit { stop() }
}

@Suite struct SerialGarbageTests {
    @Test func garbageOnTheLineNeverCrashesAndNeverAnswersAnotherQuery() async throws {
        let device = try GarbageSerialDevice(seed: 13, rate: 0.15, late: 0.3)
        defer { device.stop() }
        let line = SerialLine(path: device.path, timeout: 0.2)
        var answered = 0
        var wrong: [String] = []
        for n in 0..<200 {
            guard let reply = try? await line.query("Q\(n)") else { continue }
            // Binary bytes that happen to be text are the device's answer to this query; another
            // query's answer never is.
            if reply.hasPrefix("A"), reply != "A\(n)" { wrong.append("Q\(n) got '\(reply.prefix(40))'") }
            if reply == "A\(n)" { answered += 1 }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
        #expect(Set(device.garbage.keys) == Set(GarbageSerialDevice.Garbage.allCases), "\(device.garbage)")
        #expect(answered >= 200 - 2 * device.garbage.values.reduce(0, +) - 10, "\(answered) answered; garbage \(device.garbage)")
    }

    @Test func aDeviceThatStreamsWithoutATerminatorIsCutOffAtTheLineLimitNotAtTheTimeout() async throws {
        let flood = try PseudoTerminal.open()
        let stop = StopFlag(), finished = DispatchSemaphore(value: 0)
        // The writer stops before the descriptor closes: its number may be another test's next.
        defer { stop.set(); finished.wait(); flood.close() }
        _ = fcntl(flood.primary, F_SETFL, fcntl(flood.primary, F_GETFL) | O_NONBLOCK)
        Thread {
            let bytes = [UInt8](repeating: UInt8(ascii: "7"), count: 64 << 10)
            while !stop.isSet {
                if bytes.withUnsafeBytes({ Glibc.write(flood.primary, $0.baseAddress, $0.count) }) <= 0 { usleep(200) }
            }
            finished.signal()
        }.start()
        // Without a limit the line would grow, and be searched for its terminator, until the
        // timeout; with one it is refused (not timed out) long before, however busy the machine.
        let line = SerialLine(path: flood.path, timeout: 60)
        let error = await #expect(throws: LabError.self) { try await line.query("Q0") }
        #expect(error?.code == .protocolViolation, "\(String(describing: error))")
    }
}

/// A spectrum of long numbers: a reply of megabytes that is one legitimate line.
struct LongSpectrum: DeviceModel {
    func value(of channel: String) throws -> Double { 0 }
    func didWrite(_ channel: String, _ value: Double) {}
    func values(of channel: String, along positions: [Double]) throws -> [Double] { positions.map { 1.0 / 3.0 + $0 * 1e-7 } }
}

extension SerialGarbageTests {
    @Test func anArrayReplyLongerThanTheDefaultLineLimitIsReadWhole() async throws {
        let spec = try DriverSpec.parse("""
            driver: long-spectrum
            vendor: test
            transport: serial
            serial: { timeout: 30 s }
            channels:
              spectrum: { query: "SPEC?", type: array, length: 100000, unit: AU }
            """, path: "long-spectrum.yaml")
        let simulator = try SerialSimulator(spec: spec, model: LongSpectrum())
        defer { simulator.stop() }
        let instrument = SerialInstrument(name: "spectro", spec: spec, line: SerialLine(path: simulator.path, timeout: 30))
        let values = try await instrument.readArray("spectrum")
        #expect(values.count == 100_000 && values.last == 1.0 / 3.0 + 99_999 * 1e-7)
    }

    @Test func aSimulatedDeviceWhoseDriverStopsReadingMidReplyStillStops() async throws {
        let spec = try DriverSpec.parse("""
            driver: long-spectrum
            vendor: test
            transport: serial
            channels:
              spectrum: { query: "SPEC?", type: array, length: 100000, unit: AU }
            """, path: "long-spectrum.yaml")
        let simulator = try SerialSimulator(spec: spec, model: LongSpectrum())
        let line = SerialLine(path: simulator.path, timeout: 30)
        await #expect(throws: LabError.self) { try await line.query("SPEC?", maxReplyBytes: 1000) }
        let stopped = DispatchSemaphore(value: 0)
        Thread { simulator.stop(); stopped.signal() }.start()
        #expect(stopped.wait(timeout: .now() + 20) == .success)
    }
}

final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}
