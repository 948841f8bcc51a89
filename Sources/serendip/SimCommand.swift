import ArgumentParser
import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabSpec

/// `serendip sim`: a lab's simulators as a process of their own, for other tools (mbpoll, pymodbus,
/// a vendor's software, another `serendip`) to talk to over the real transports.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the simulators of a lab's instruments until SIGINT or SIGTERM, printing where each one answers.",
        discussion: """
            Serves each instrument with 'simulate: true' (every instrument with --all) from its driver file: \
            Modbus TCP on 127.0.0.1, Modbus RTU and serial devices on pseudo-terminals. Prints one line per \
            instrument, 'NAME ADDRESS', the address as modbus-tcp://127.0.0.1:PORT?unit=1, \
            modbus-rtu:///dev/pts/N?baud=...&unit=1 or serial:///PATH?baud=...; with --write-lab, also a lab \
            config that connects to them. Plugin instruments are not served (a plugin simulates itself). \
            Simulated time runs at the lab's simulation speed. Exits 0 on SIGINT or SIGTERM.
            """)

    @Argument(help: ArgumentHelp("The lab config whose instruments to simulate.", valueName: "LAB.yaml"))
    var lab: String

    @Flag(help: "Simulate every instrument of the lab, also those it connects to hardware.")
    var all = false

    @Flag(help: "Print the addresses as one JSON object (sorted keys) instead of text.")
    var json = false

    @Option(name: .customLong("write-lab"), help: ArgumentHelp("Write a lab config that connects to these simulators.", valueName: "OUT.yaml"))
    var writeLab: String?

    @Option(help: ArgumentHelp("Serve Modbus TCP simulators on consecutive ports from this one, by instrument name (default: free ports).",
                               valueName: "port"))
    var portBase: Int?

    func validate() throws {
        guard FileManager.default.fileExists(atPath: lab) else { throw ValidationError("no lab config at \(lab)") }
        if let portBase, !(1...65535).contains(portBase) { throw ValidationError("--port-base must be a port from 1 to 65535") }
    }

    func run() async throws {
        // Before anything is served: a signal must find its handler, not end the process mid-setup.
        let (signals, arrived) = AsyncStream.makeStream(of: String.self)
        let stop = StopSignals { sender, _ in arrived.yield(sender) }
        var config = try LabConfig.load(path: lab)
        if all { for name in config.instruments.keys { config.instruments[name]!.connection = .simulated } }
        let served = config.instruments.values.filter { $0.connection == .simulated && $0.driver.transport != .plugin }
        guard !served.isEmpty else {
            throw LabError(.invalidFile, "\(lab): no instrument to serve: none has 'simulate: true' (or all are plugins); "
                               + "add 'simulate: true' to an instrument, or pass --all")
        }
        let simulators = try SimulatedLab(config: config, clock: ScaledClock(rate: config.simulation.speed), portBase: portBase)
        defer { simulators.stop() }
        let addresses = Dictionary(uniqueKeysWithValues: served.compactMap { binding in
            simulators.connection(for: binding.name).map { (binding.name, (binding, $0)) }
        })
        if let writeLab {
            try Self.labConfig(named: config.name, addresses).write(toFile: writeLab, atomically: true, encoding: .utf8)
        }
        if json {
            let object = addresses.mapValues { ["address": $0.1.address, "driver": $0.0.driver.name] }
            let data = try JSONSerialization.data(withJSONObject: ["instruments": object], options: [.sortedKeys, .withoutEscapingSlashes])
            Output.line(String(decoding: data, as: UTF8.self))
        } else {
            let width = addresses.keys.map(\.count).max() ?? 0
            for (name, (_, connection)) in addresses.sorted(by: { $0.key < $1.key }) {
                Output.line(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + connection.address)
            }
        }
        for name in config.instruments.keys.sorted() where config.instruments[name]!.connection == .simulated && addresses[name] == nil {
            Output.error("\(name): not served: a plugin instrument is simulated by its plugin")
        }
        Output.error("serving \(addresses.count) simulated instrument(s); SIGINT or SIGTERM stops")
        for await sender in signals {
            Output.error("stopping on \(sender)")
            break
        }
        withExtendedLifetime(stop) {}    // the handler is unsubscribed when `stop` goes
    }

    /// A lab config that connects to the running simulators: the same instruments and drivers (by
    /// absolute path), each at its simulator's address.
    static func labConfig(named name: String, _ addresses: [String: (LabConfig.Binding, LabConfig.Connection)]) -> String {
        var lines = ["# Written by `serendip sim`: the simulators of lab '\(name)', while that process runs.",
                     "lab: \(quoted(name + "-sim"))", "instruments:"]
        for (instrument, (binding, connection)) in addresses.sorted(by: { $0.key < $1.key }) {
            var fields = ["driver: \(quoted(binding.driver.source.path))"]
            switch connection {
            case .modbusTCP(let host, let port, let unit): fields.append("modbus: { host: \(host), port: \(port), unit: \(unit) }")
            case .modbusRTU(let address): fields.append("modbus-rtu: \(quoted(address.description))")
            case .serial(let address): fields.append("serial: \(quoted(address.description))")
            case .simulated, .plugin: continue
            }
            if let station = binding.station { fields.append("station: \(quoted(station))") }
            lines.append("  \(quoted(instrument)): { \(fields.joined(separator: ", ")) }")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
    private static func quoted(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: try! encoder.encode(text), as: UTF8.self)
    }
}
