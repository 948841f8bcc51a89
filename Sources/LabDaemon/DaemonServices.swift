import Foundation
import LabEngine
import LabScheduler
import LabServer
import LabTransport
import Logging
public import ServiceLifecycle
import Synchronization

extension Daemon {
    /// Serves the method table on the data directory's Unix socket until SIGINT or SIGTERM.
    public func run() async throws {
        let server = try SocketServer(path: layout.socket, dispatcher: dispatcher)
        logger.info("serving the socket API", metadata: ["socket": "\(layout.socket)"])
        try await run(api: APIService(server: server))
    }

    /// Serves until SIGINT or SIGTERM. The services start in order — the runs (scheduler and
    /// campaigns), then the API — and stop in reverse: the API stops taking requests, then no new
    /// run or proposal starts and every running run pauses at its next checkpoint (at once after a
    /// bounded wait) with its instruments in their safe state. A second signal halts every run: the
    /// safe states are commanded, `finally` is skipped. Returns once all is stopped.
    public func run(api: some Service) async throws {
        let reason = Mutex<String>("a shutdown request")
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: RunService(daemon: self, reason: { reason.withLock { $0 } })), .init(service: api)],
            logger: logger))
        let signals = StopSignals { [scheduler, logger] by, count in
            logger.notice(count == 1 ? "stopping: pausing running runs at their next checkpoint" : "halting running and paused runs",
                          metadata: ["by": "\(by)"])
            if count == 1 {
                reason.withLock { $0 = by }
                Task { await group.triggerGracefulShutdown() }
            } else {
                Task {
                    await scheduler.halt(by: by)
                    await scheduler.waitForStoppingRuns()
                }
            }
        }
        try await group.run()
        withExtendedLifetime(signals) {}
    }
}

/// The scheduler and campaigns as a service: on graceful shutdown every run is stopped safely.
private struct RunService: Service {
    let daemon: Daemon
    let reason: @Sendable () -> String

    func run() async throws {
        try? await gracefulShutdown()
        await daemon.shutDown(by: reason())
        // The safe states are commanded and the process is about to exit: no plugin may outlive
        // it holding its device, not even one stuck in a request. Here rather than in `shutDown`,
        // which also ends daemons inside a process that goes on (tests run many at once), and
        // this ends every plugin of the process.
        PluginLink.endEveryPlugin()
    }
}

/// The socket server as a service: it stops taking requests first when the daemon stops.
private struct APIService: Service {
    let server: SocketServer

    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
    }
}
