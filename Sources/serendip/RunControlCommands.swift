import ArgumentParser
import LabAPI

/// A person's requests to a running or paused run; each prints the run's state after.
protocol RunRequest: ParsableCommand {
    static var method: String { get }
    var number: Int64 { get }
    var client: ClientOptions { get }
    associatedtype Params: Encodable
    /// What the request sends: the run, and the command's own flags.
    var params: Params { get }
}

extension RunRequest {
    func run() throws {
        try client.show(try client.call(Self.method, params), as: WireRunControl.self) {
            "run \($0.run) is \($0.state)" + ($0.note.map { ": \($0)" } ?? "")
        }
    }
}

struct Pause: RunRequest {
    static let configuration = CommandConfiguration(
        abstract: "Pause a run at its next checkpoint; with --now, at once (it goes on from its last checkpoint when resumed).",
        discussion: "A paused run keeps its instruments, sent to their safe state, until it is resumed, aborted or halted. "
            + "A step marked 'repeatable: false' since the last checkpoint turns --now into a pause at the next checkpoint "
            + "(or an abort, where the protocol says 'on_pause: abort').")
    static let method = "runs.pause"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @Flag(name: .customLong("now"), help: "Pause at once, and rewind to the last checkpoint on resume.") var immediately = false
    @OptionGroup var client: ClientOptions
    var params: PauseParams { PauseParams(run: number, now: immediately ? true : nil) }
}

struct Resume: RunRequest {
    static let configuration = CommandConfiguration(
        abstract: "Resume a paused run from its last checkpoint.",
        discussion: "The values the protocol had set by that checkpoint are written again first. A run paused by a lost "
            + "instrument or an interlock resumes only once the instrument is back or the condition has cleared, and its alert is acknowledged (serendip ack).")
    static let method = "runs.resume"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @Flag(help: "Go back to the last checkpoint even though a fault came after a step marked 'repeatable: false': that step is done again.")
    var repeatStep = false
    @OptionGroup var client: ClientOptions
    var params: ResumeParams { ResumeParams(run: number, repeatStep: repeatStep ? true : nil) }
}

struct Abort: RunRequest {
    static let configuration = CommandConfiguration(abstract: "Abort a running or paused run: its 'finally' steps, then every instrument's safe state.")
    static let method = "runs.abort"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
    var params: RunRef { RunRef(run: number) }
}

struct Halt: RunRequest {
    static let configuration = CommandConfiguration(abstract: "Halt a run at once: 'finally' is skipped, every instrument is still sent to its safe state.")
    static let method = "runs.halt"
    @Argument(help: ArgumentHelp("The run number.", valueName: "run")) var number: Int64
    @OptionGroup var client: ClientOptions
    var params: RunRef { RunRef(run: number) }
}
