import ArgumentParser
import Foundation
import Yams

/// `serendip campaign …`: campaigns the daemon runs through its queue.
struct CampaignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "campaign", abstract: "Start, stop, resume and follow campaigns on the daemon.",
        subcommands: [Start.self, Stop.self, Resume.self, StatusCommand.self, List.self])

    struct Number: Encodable { var campaign: Int64 }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a campaign: the daemon checks it against its own lab and queues its experiments.",
            discussion: "The protocol is the file the campaign's `protocol:` key names, relative to the campaign file; both are sent.")

        @Argument(help: "The campaign file.")
        var file: String

        @Flag(help: "Every experiment waits for a person's approval (serendip approve RUN) before it starts.")
        var approval = false

        @OptionGroup var client: ClientOptions

        struct Params: Encodable {
            var campaign: SentFile
            var `protocol`: SentFile
            var approval: Bool
        }

        func run() throws {
            let params: Params
            do throws(ClientFailure) {
                let campaign = try SentFile.read(file)
                params = Params(campaign: campaign, protocol: try SentFile.read(try Self.protocolPath(of: campaign)), approval: approval)
            } catch { throw client.fail(error) }
            try client.show(try client.call("campaign.start", params), as: CampaignStarted.self) {
                "started campaign \($0.campaign) (follow it with: serendip campaign status \($0.campaign))"
            }
        }

        /// The protocol file the campaign names. Only this key is read here: the daemon checks the rest.
        static func protocolPath(of campaign: SentFile) throws(ClientFailure) -> String {
            let root = try? Yams.load(yaml: campaign.text) as? [String: Any]
            guard let name = root?["protocol"] as? String, !name.isEmpty else {
                throw ClientFailure("\(campaign.path): no `protocol:` key naming the campaign's protocol file", status: 1)
            }
            return name.hasPrefix("/") ? name
                : URL(fileURLWithPath: campaign.path).deletingLastPathComponent().appendingPathComponent(name).standardizedFileURL.path
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop proposing experiments; what is queued for it is cancelled by the daemon's rules.")
        @Argument(help: "The campaign number.") var campaign: Int64
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.stop", Number(campaign: campaign)), as: CampaignStatusView.self, Summary.line)
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Continue a stopped campaign where it left off.")
        @Argument(help: "The campaign number.") var campaign: Int64
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.resume", Number(campaign: campaign)), as: CampaignStatusView.self, Summary.line)
        }
    }

    struct StatusCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a campaign's experiments, as `serendip demo` prints them.")
        @Argument(help: "The campaign number.") var campaign: Int64
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.get", Number(campaign: campaign)), as: CampaignStatusView.self, Summary.experiments)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the daemon's campaigns.")
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.list"), as: [CampaignStatusView].self) { campaigns in
                guard !campaigns.isEmpty else { return "no campaigns" }
                return Show.table([["campaign", "name", "state", "best", "waiting"]] + campaigns.map {
                    [String($0.campaign), $0.name, $0.state, $0.best.map { String(format: "%.4g", $0) } ?? "-", String($0.waiting?.count ?? 0)]
                })
            }
        }
    }
}

/// A campaign's status as text.
enum Summary {
    static func line(_ s: CampaignStatusView) -> String {
        var text = "campaign \(s.campaign) (\(s.name)) is \(s.state)"
        if let note = s.note { text += ": \(note)" }
        if let count = s.experiments?.count { text += "; \(count) experiments" }
        if let best = s.best { text += ", best \(String(format: "%.4g", best))" }
        return text
    }

    /// The experiments in `serendip demo`'s columns: the parameters the campaign varies (those its
    /// experiments carry), then the objective and the best so far when it optimises one.
    static func experiments(_ s: CampaignStatusView) -> String {
        let experiments = s.experiments ?? []
        let searched = Set(experiments.flatMap(\.parameters.keys)).sorted()
        let optimises = experiments.contains { $0.objective != nil || $0.best != nil } || s.best != nil
        let table = ProgressTable(searched: searched, objective: optimises ? "objective" : nil)
        var lines = [line(s)]
        if !experiments.isEmpty {
            lines.append(table.header)
            lines += experiments.map {
                table.row(index: $0.index, parameters: $0.parameters, objective: $0.objective, best: $0.best,
                          outcome: $0.outcome, chosenBy: $0.chosenBy, error: $0.error)
            }
        }
        if let waiting = s.waiting, !waiting.isEmpty {
            lines.append("waiting in the queue: " + waiting.map { "run \($0)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
