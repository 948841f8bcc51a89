import Foundation
import LabEngine
import LabScheduler
import Logging
public import ServiceLifecycle
import Synchronization

extension Daemon {
    /// Serves until SIGINT or SIGTERM. The services start in order — the runs (scheduler and
    /// campaigns), then the API — and stop in reverse: the API stops taking requests, then no new
    /// run or proposal starts and every running run is aborted (`finally`, then its instruments'
    /// safe states) and recorded as aborted by the signal. A second signal halts: what is left of
    /// `finally` is skipped, the safe states are still commanded. Returns once all is stopped.
    public func run(api: some Service) async throws {
        let reason = Mutex<String>("a shutdown request")
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: RunService(daemon: self, reason: { reason.withLock { $0 } })), .init(service: api)],
            logger: logger))
        let signals = StopSignals { [scheduler, logger] by, count in
            logger.notice(count == 1 ? "stopping: aborting running runs" : "halting: skipping finally", metadata: ["by": "\(by)"])
            if count == 1 {
                reason.withLock { $0 = by }
                Task { await group.triggerGracefulShutdown() }
            } else {
                Task { await scheduler.halt(by: by) }
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
        await daemon.shutDown(.abort, by: reason())
    }
}
