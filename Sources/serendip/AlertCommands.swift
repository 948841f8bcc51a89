import ArgumentParser
import Foundation
import LabAPI

/// `serendip alerts`: the latched alerts (or all), newest first.
struct Alerts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the alerts that are not yet acknowledged (--all: every alert).",
        discussion: "An alert is 'active' while its condition holds (an instrument lost, an interlock asserted), then 'cleared': "
            + "it may be acknowledged (serendip ack). Until then the runs it paused cannot be resumed and nothing starts on its instruments.")

    @Flag(help: "Also the acknowledged alerts.") var all = false
    @OptionGroup var client: ClientOptions

    func run() throws {
        try client.show(try client.call("alerts.list", AlertListParams(all: all ? true : nil)), as: [WireAlert].self) { alerts in
            guard !alerts.isEmpty else { return all ? "no alerts" : "no alerts waiting for acknowledgement" }
            return alerts.map(Self.describe).joined(separator: "\n")
        }
    }

    static func describe(_ a: WireAlert) -> String {
        var line = "alert \(a.alert)  \(a.state.padding(toLength: 12, withPad: " ", startingAt: 0)) \(a.kind) \(a.subject): \(a.message)"
        line += "  (raised \(a.raisedAt)"
        if !a.runs.isEmpty { line += "; runs \(a.runs.map(String.init).joined(separator: ", "))" }
        if !a.pausedRuns.isEmpty { line += ", paused: \(a.pausedRuns.map(String.init).joined(separator: ", "))" }
        if let by = a.acknowledgedBy, let at = a.acknowledgedAt { line += "; acknowledged by \(by) at \(at)" }
        return line + ")"
    }
}

/// `serendip ack ALERT`: a person's acknowledgement, once the alert's condition has cleared.
struct Ack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Acknowledge an alert whose condition has cleared: the runs it paused may then be resumed.")

    @Argument(help: ArgumentHelp("The alert number (serendip alerts lists them).", valueName: "alert")) var number: Int64
    @OptionGroup var client: ClientOptions

    func run() throws {
        try client.show(try client.call("alerts.ack", AlertRef(alert: number)), as: WireAlert.self) {
            "alert \($0.alert) acknowledged by \($0.acknowledgedBy ?? "?")"
                + ($0.pausedRuns.isEmpty ? "" : "; paused run(s) \($0.pausedRuns.map(String.init).joined(separator: ", ")) may be resumed "
                   + "once no other alert holds them (serendip resume RUN)")
        }
    }
}
