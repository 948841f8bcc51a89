import Foundation
import LabCore
import LabDaemon
import LabDrivers
import LabEngine
import LabScheduler
import LabSpec
import LabStorage
import Logging
import Synchronization

/// How fast the daemon reacts to a lost instrument: a Modbus reactor and a serial pump outside the
/// daemon, one run polling both ten times a second; each round pulls one's cable, times the pause
/// and the other's safe state on the devices' own wire logs, plugs it back in, acknowledges, resumes.
struct FaultBench {
    struct Figures {
        var lostToPaused: [Double] = []
        var pausedToSafe: [Double] = []
    }

    static let protocolPath = "examples/fault-lab/watched.yaml"

    /// The first time something happened, on the wire logs' clock.
    final class Moment: Sendable {
        private let time = Mutex<Double?>(nil)
        func mark() { time.withLock { $0 = $0 ?? WireLog.now() } }
        func reset() { time.withLock { $0 = nil } }
        var value: Double? { time.withLock { $0 } }
    }

    let rounds: Int

    /// Alternates the two instruments: odd rounds lose the reactor (the pump must go safe), even rounds the pump.
    func measure() async throws -> (modbus: Figures, serial: Figures) {
        let reactor = try ModbusSimulator(spec: DriverSpec.load(path: "drivers/thermo-reactor.yaml"), model: InertModel())
        let pump = try SerialSimulator(spec: DriverSpec.load(path: "drivers/syringe-pump.yaml"), model: InertModel())
        defer { reactor.stop(); pump.stop() }
        let directory = try DaemonBench.temporaryDirectory()
        let config = directory + "/lab.yaml"
        let here = FileManager.default.currentDirectoryPath
        try """
            lab: fault-bench
            instruments:
              reactor: { driver: \(here)/drivers/thermo-reactor.yaml, modbus: { host: 127.0.0.1, port: \(reactor.port) } }
              pump: { driver: \(here)/drivers/syringe-pump.yaml, serial: \(pump.path) }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        var options = Daemon.Options(labPath: config, dataDirectory: directory + "/data", logger: .init(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        options.reconnectBackoff = 0.01...0.5
        let daemon = try await Daemon(options)
        let definition = try ProtocolParser.load(path: Self.protocolPath, drivers: daemon.lab.drivers)
        let run = try await daemon.scheduler.submit([Submission(protocolSource: definition.source, protocolName: definition.name,
                                                                parameters: [:], owner: "bench")])[0].id
        let paused = Moment()
        while await daemon.scheduler.runControl(run) == nil { try await Task.sleep(for: .milliseconds(5)) }
        let control = await daemon.scheduler.runControl(run)!
        control.onTransition { if case .paused = $0.to { paused.mark() } }
        var results = (modbus: Figures(), serial: Figures())
        for round in 0..<(2 * rounds) {
            let losesReactor = round % 2 == 0
            try await Task.sleep(for: .milliseconds(150 + Int.random(in: 0..<100)))
            paused.reset()
            let pulled = WireLog.now()
            if losesReactor { reactor.unplug() } else { pump.unplug() }
            while paused.value == nil { try await Task.sleep(for: .milliseconds(1)) }
            let safeValue = losesReactor ? 0.0 : 25.0
            var safe: Double?
            while safe == nil {
                safe = (losesReactor ? pump.wireLog.entries(for: "rate") : reactor.wireLog.entries(for: "setpoint"))
                    .first { $0.value == safeValue && $0.time > pulled }?.time
                if safe == nil { try await Task.sleep(for: .milliseconds(1)) }
            }
            // The alert is raised (the lost instrument blocked) before it comes back.
            while try await daemon.database.alerts().isEmpty { try await Task.sleep(for: .milliseconds(1)) }
            if losesReactor {
                results.modbus.lostToPaused.append(paused.value! - pulled)
                results.modbus.pausedToSafe.append(safe! - paused.value!)
                reactor.plugIn()
            } else {
                results.serial.lostToPaused.append(paused.value! - pulled)
                results.serial.pausedToSafe.append(safe! - paused.value!)
                pump.plugIn()
            }
            // Back: acknowledge and resume, so the next round starts from a running run.
            while true {
                let alerts = try await daemon.database.alerts()
                for alert in alerts where alert.isCleared { _ = try? await daemon.acknowledgeAlert(alert.id, by: "bench") }
                if alerts.isEmpty, (try? await daemon.scheduler.control(run, .resume(by: "bench"))) != nil { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            while control.lifecycle.state != .running { try await Task.sleep(for: .milliseconds(5)) }
        }
        await daemon.shutDown(by: "bench", checkpointWait: 0)
        return results
    }
}
