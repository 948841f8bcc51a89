import ArgumentParser

@main
struct Serendip: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Autonomous-lab orchestration: instruments, protocols, data and a planner in one daemon.",
        subcommands: [Serve.self, Demo.self, Validate.self, Simulate.self, PlannerCommand.self, Bench.self])
}
