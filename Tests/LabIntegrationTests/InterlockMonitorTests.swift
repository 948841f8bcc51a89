import Foundation
import LabCore
@testable import LabDrivers
import LabSpec
import LabTransport
import Logging
import Synchronization
import Testing

/// The interlock monitor against a simulated device over real Modbus TCP: it reports a crossing, a
/// return, and a device that stopped answering.
@Suite struct InterlockMonitorTests {
    /// A device whose readings the test sets.
    final class Knobs: DeviceModel {
        let values = Mutex<[String: Double]>(["temperature": 25, "sash_closed": 1])
        func set(_ channel: String, _ value: Double) { values.withLock { $0[channel] = value } }
        func value(of channel: String) throws -> Double { values.withLock { $0[channel] ?? 0 } }
        func didWrite(_ channel: String, _ value: Double) {}
    }

    /// What the monitor reported, in order.
    final class Reports: Sendable {
        let list = Mutex<[(name: String, asserted: Bool, detail: String)]>([])
        func add(_ spec: InterlockSpec, _ asserted: Bool, _ detail: String) { list.withLock { $0.append((spec.name, asserted, detail)) } }
        var all: [(name: String, asserted: Bool, detail: String)] { list.withLock { $0 } }

        /// Waits (generously: a loaded machine is slow) for a report that matches.
        func waitFor(_ matches: @escaping ((name: String, asserted: Bool, detail: String)) -> Bool) async throws
            -> (name: String, asserted: Bool, detail: String) {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let report = all.last(where: matches) { return report }
                try await Task.sleep(for: .milliseconds(10))
            }
            Issue.record("no matching report; got \(all)")
            throw CancellationError()
        }
    }

    static let driver = """
        driver: test-reactor
        transport: modbus
        channels:
          temperature: { input: 0, type: float32, unit: degC }
          sash_closed: { discrete: 0 }
        """

    static func interlock(_ name: String, _ channel: String, _ condition: InterlockSpec.Condition, unit: LabUnit) -> InterlockSpec {
        InterlockSpec(name: name, instrument: "reactor", channel: channel, unit: unit, condition: condition, stops: ["reactor"],
                      everySeconds: 0.05, location: SourceLocation(file: "lab.yaml", line: 1, column: 1))
    }

    static let hot = interlock("reactor-hot", "temperature", .above(140), unit: LabUnit.named("degC")!)
    static let sash = interlock("hood-sash", "sash_closed", .equals(false), unit: .one)

    /// A monitor of `interlocks` on a simulated reactor, with the simulator and the reports.
    static func monitor(_ interlocks: [InterlockSpec]) throws -> (InterlockMonitor, ModbusSimulator, Knobs, Reports) {
        let spec = try DriverSpec.parse(driver, path: "reactor.yaml")
        let knobs = Knobs()
        let simulator = try ModbusSimulator(spec: spec, model: knobs)
        let client = ModbusTCPClient(.init(host: "127.0.0.1", port: simulator.port, unit: 1, responseTimeout: 0.5))
        let reactor = ModbusInstrument(name: "reactor", spec: spec, client: client)
        let monitor = InterlockMonitor(interlocks: interlocks, instruments: ["reactor": reactor], logger: Logger(label: "test"))
        return (monitor, simulator, knobs, Reports())
    }

    @Test func itReportsACrossingTheReturnAndADeviceThatStopsAnswering() async throws {
        let (monitor, simulator, knobs, reports) = try Self.monitor([Self.hot])
        await monitor.onChange(reports.add)
        await monitor.start()
        _ = try await reports.waitFor { $0.name == "reactor-hot" && !$0.asserted }
        knobs.set("temperature", 141.5)
        let tripped = try await reports.waitFor { $0.asserted }
        #expect(tripped.detail == "reactor.temperature read 141.5 degC, above 140 degC")
        #expect(await monitor.asserted() == ["reactor-hot": tripped.detail])
        knobs.set("temperature", 120)
        let count = reports.all.count
        let cleared = try await reports.waitFor { !$0.asserted && reports.all.count > count }
        #expect(cleared.detail == "reactor.temperature read 120 degC, not above 140 degC")
        #expect(await monitor.asserted().isEmpty)
        simulator.stop()
        let lost = try await reports.waitFor { $0.asserted && $0.detail.contains("could not be read") }
        #expect(lost.detail.hasPrefix("reactor.temperature could not be read: "))
        await monitor.stop()
        // Only changes are reported: clear, asserted, clear, asserted.
        #expect(reports.all.map(\.asserted) == [false, true, false, true])
    }

    @Test func oneCheckReportsEachInterlocksFirstStateAndADigitalInputAssertsOnItsValue() async throws {
        let (monitor, simulator, knobs, reports) = try Self.monitor([Self.hot, Self.sash])
        defer { simulator.stop() }
        await monitor.onChange(reports.add)
        knobs.set("sash_closed", 0)
        await monitor.check()
        #expect(Set(reports.all.map(\.name)) == ["reactor-hot", "hood-sash"])
        #expect(await monitor.asserted() == ["hood-sash": "reactor.sash_closed read false"])
        knobs.set("sash_closed", 1)
        await monitor.check()
        #expect(await monitor.asserted().isEmpty)
        await monitor.check()
        #expect(reports.all.count == 3)
    }

    @Test func noReportComesAfterStopReturns() async throws {
        let (monitor, simulator, knobs, reports) = try Self.monitor([Self.hot])
        defer { simulator.stop() }
        await monitor.onChange(reports.add)
        await monitor.start()
        _ = try await reports.waitFor { _ in true }
        await monitor.stop()
        let count = reports.all.count
        knobs.set("temperature", 200)
        try await Task.sleep(for: .milliseconds(300))
        #expect(reports.all.count == count)
    }

    @Test func readsOfALostInstrumentBackOffToAtMostFiveSeconds() {
        #expect(InterlockMonitor.wait(every: 0.5, failedReads: 0) == 0.5)
        #expect(InterlockMonitor.wait(every: 0.5, failedReads: 1) == 1)
        #expect(InterlockMonitor.wait(every: 0.5, failedReads: 3) == 4)
        #expect(InterlockMonitor.wait(every: 0.5, failedReads: 4) == 5)
        #expect(InterlockMonitor.wait(every: 0.5, failedReads: 10_000) == 5)
        #expect(InterlockMonitor.wait(every: 10, failedReads: 3) == 10)
    }
}
