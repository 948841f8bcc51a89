import ArgumentParser
import Dispatch
import Foundation
import Glibc
import LabCore
import LabDrivers
import LabSpec
import Synchronization

/// `serendip driver ...`: tools for the vendor writing a driver file.
struct DriverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "driver", abstract: "Tools for writing a driver file.", subcommands: [DriverTest.self])
}

/// `serendip driver test DRIVER.yaml --address ADDR`: does the device do what its driver file says?
struct DriverTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Check a device (or the driver's simulator) against its driver file: identity, every read, every write inside the limits, the guard, the watchdog and the safe state.",
        discussion: "Nothing outside a channel's limits is ever sent, and the safe state is commanded at the end, also after a failure or Ctrl-C. Exits 1 if any check failed, 130 if interrupted.")

    @Argument(help: "The driver file.") var driver: String
    @Option(help: "Where the device is: modbus-tcp://host:502?unit=1, modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3 or serial:///dev/ttyUSB0?baud=9600.")
    var address: String?
    @Flag(help: "Test against the driver's own simulator instead of a device.") var simulate = false
    @Flag(help: "Print the report as JSON (sorted keys) instead of a table.") var json = false
    @Flag(help: "Write to float channels that read exactly 0 too: 0 reads the same in every word order, so their word_order is unchecked.")
    var trustWordOrder = false

    func validate() throws {
        guard simulate != (address != nil) else {
            throw ValidationError(simulate ? "give --address or --simulate, not both" : "give the device's --address, or --simulate to test against the driver's simulator")
        }
    }

    func run() async throws {
        let spec = try DriverSpec.load(path: driver)
        var stopSimulator: @Sendable () -> Void = {}
        let conformance: DriverConformance
        if let address {
            var check = try DriverConformance.connect(spec, at: LabConfig.Connection.parse(address: address, for: spec))
            check.trustsWordOrder = trustWordOrder
            conformance = check
        } else {
            (conformance, stopSimulator) = try DriverConformance.simulated(spec)
        }
        defer { stopSimulator() }
        // Ctrl-C (or a TERM) ends the checks early; the run still commands the safe state. The
        // handlers are in place before the first request goes out.
        let interruption = Interruption()
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { interruption.interrupt() }
            source.resume()
            return source
        }
        let task = Task { await conformance.run() }
        interruption.watch(task)
        let report = await task.value
        signals.forEach { $0.cancel() }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            Output.line(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            Output.line(Self.table(report, interrupted: task.isCancelled))
        }
        // Interrupted, it has not checked everything: that is no pass.
        if task.isCancelled { throw ExitCode(130) }
        if !report.passed { throw ExitCode(1) }
    }

    static func table(_ report: ConformanceReport, interrupted: Bool = false) -> String {
        // A device's reply may hold line ends or control bytes: shown escaped, one check a line.
        let printable = { (text: String) in
            String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? $0.escaped(asASCII: true) : String($0) }.joined())
        }
        let rows = report.checks.map { check in
            [check.channel ?? "-", check.check, check.result.rawValue,
             printable(check.detail) + (check.milliseconds.map { " (\($0) ms)" } ?? "")]
        }
        let widths = (0..<3).map { column in rows.map { $0[column].count }.max() ?? 0 }
        let lines = rows.map { row in
            (0..<3).map { row[$0].padding(toLength: widths[$0] + 2, withPad: " ", startingAt: 0) }.joined() + row[3]
        }
        let failed = report.checks.filter { $0.result == .fail }.count
        let verdict = interrupted ? "INTERRUPTED: not every check ran\(failed > 0 ? "; \(failed) check(s) failed" : "")"
            : failed == 0 ? "PASS" : "FAIL: \(failed) check(s) failed"
        return (["\(report.driver) at \(report.address)"] + lines + [verdict]).joined(separator: "\n")
    }
}

/// Cancels the checks on a signal, also one that came before they started.
private final class Interruption: Sendable {
    private let state = Mutex<(task: Task<ConformanceReport, Never>?, interrupted: Bool)>((nil, false))

    func interrupt() {
        state.withLock { $0.interrupted = true; $0.task?.cancel() }
    }

    func watch(_ task: Task<ConformanceReport, Never>) {
        state.withLock { $0.task = task; if $0.interrupted { task.cancel() } }
    }
}
