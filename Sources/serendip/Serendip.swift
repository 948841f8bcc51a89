import ArgumentParser

@main
struct Serendip: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Autonomous-lab orchestration: instruments, protocols, data and a planner in one daemon.",
        subcommands: [Serve.self, Demo.self, Validate.self, Simulate.self, Sim.self, PlannerCommand.self, Bench.self,
                      Submit.self, QueueCommand.self, Status.self, Cancel.self, Hold.self, Release.self,
                      Approve.self, Reject.self, Pause.self, Resume.self, Abort.self, Halt.self, Alerts.self, Ack.self, CampaignCommand.self, Runs.self, ShowRun.self, Export.self, Audit.self, Usage.self, Plot.self, BackupCommand.self, Traffic.self, Ports.self, DriverCommand.self])
}
