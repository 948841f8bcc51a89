import Foundation
import Glibc
import LabCore
import LabServer
import Testing

/// What clients do to the API must never show in an experiment's timing or in the daemon's memory.
@Suite(.serialized) struct SocketLoadTests {
    /// Resident memory of this process, in bytes.
    static func residentBytes() -> Int {
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return (Int(statm.split(separator: " ")[1]) ?? 0) * sysconf(Int32(_SC_PAGESIZE))
    }

    /// Runs `body` on a thread of its own: blocking socket calls must not take a cooperative thread.
    static func onThread(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread { body(); done.resume() }.start()
        }
    }

    /// One client sends 10,000 requests and reads no reply, then leaves; others send unfinished
    /// lines of nearly 1 MiB and leave. Each gives up sending after `patience` seconds.
    static func abuse(_ path: String, requests: Int = 10_000, bigLines: Int, patience: Double = 2) async {
        async let flood: Void = onThread {
            guard let client = try? SocketClient(path, timeout: patience) else { return }
            let line = #"{"jsonrpc":"2.0","id":1,"method":"runs.get","params":{"run":1}}"# + "\n"
            client.send(String(repeating: line, count: requests))
        }
        async let unfinished: Void = onThread {
            let clients = (0..<bigLines).compactMap { _ in try? SocketClient(path, timeout: patience) }
            let almostAMebibyte = [UInt8](repeating: UInt8(ascii: " "), count: mebibyte - 10)
            for client in clients { client.send(Array("{".utf8) + almostAMebibyte) }
        }
        _ = await (flood, unfinished)
    }

    @Test func aFloodOfRequestsDoesNotDelayAHold() async throws {
        let served = try await ServedDatabase(measurements: 50)
        defer { served.server.stop() }
        let clock = ScaledClock(rate: 1)
        let holding = Task {
            // A hold of 200 ms, as the executor does it, over and over: how late does it end at worst?
            var worst = 0.0
            while !Task.isCancelled {
                let start = clock.now
                try? await clock.sleep(seconds: 0.2)
                worst = max(worst, clock.now - start - 0.2)
            }
            return worst
        }
        await Self.abuse(served.path, bigLines: 20)
        // Holds go on while the server works through whatever the clients left behind.
        try await Task.sleep(for: .seconds(3))
        holding.cancel()
        let worst = await holding.value
        #expect(worst < 1, "a 200 ms hold ended \(worst) s late")
        #expect(try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"server.info"}"#)["result"] != nil)
    }

    @Test func connectionsThatCloseGiveTheirMemoryBack() async throws {
        let served = try await ServedDatabase(measurements: 50)
        defer { served.server.stop() }
        _ = try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"runs.get","params":{"run":1}}"#)
        let before = Self.residentBytes()
        await Self.abuse(served.path, bigLines: 200)
        // Wait until the server has let go: memory back within bounds, or 20 s. Memory that other tests
        // running meanwhile freed is given back the next time a connection with a large line closes.
        let bound = 24 << 20
        let deadline = ContinuousClock.now + .seconds(20)
        while Self.residentBytes() - before > bound, ContinuousClock.now < deadline {
            await Self.abuse(served.path, requests: 0, bigLines: 1)
            try await Task.sleep(for: .milliseconds(500))
        }
        let grown = Self.residentBytes() - before
        #expect(grown <= bound, "resident memory grew by \(grown >> 20) MiB and stayed")
        #expect(try exchange(served.path, #"{"jsonrpc":"2.0","id":1,"method":"server.info"}"#)["result"] != nil)
    }
}
