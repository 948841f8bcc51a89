import ArgumentParser
import Foundation
import LabAPI
import LabCore
import Yams

/// `serendip campaign …`: campaigns the daemon runs through its queue.
struct CampaignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "campaign", abstract: "Start, stop, resume and follow campaigns on the daemon.",
        subcommands: [Start.self, Stop.self, Resume.self, StatusCommand.self, List.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a campaign: the daemon checks it against its own lab and queues its experiments.",
            discussion: "The protocol is the file the campaign's `protocol:` key names, relative to the campaign file; both are sent.")

        @Argument(help: "The campaign file.")
        var file: String

        @Flag(help: "Every experiment waits for a person's approval (serendip approve RUN) before it starts.")
        var approval = false

        @OptionGroup var client: ClientOptions

        func run() throws {
            let params: CampaignStartParams
            do throws(ClientFailure) {
                let campaign = try WireFile.read(file)
                params = CampaignStartParams(campaign: campaign, protocolFile: try WireFile.read(try Self.protocolPath(of: campaign)), approval: approval)
            } catch { throw client.fail(error) }
            try client.show(try client.call("campaign.start", params), as: WireCampaign.self) {
                "started campaign \($0.campaign) (follow it with: serendip campaign status \($0.campaign))"
            }
        }

        /// The protocol file the campaign names. Only this key is read here: the daemon checks the rest.
        static func protocolPath(of campaign: WireFile) throws(ClientFailure) -> String {
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
            try client.show(try client.call("campaign.stop", CampaignRef(campaign: campaign)), as: WireCampaign.self, Summary.line)
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Continue a stopped campaign where it left off.")
        @Argument(help: "The campaign number.") var campaign: Int64
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.resume", CampaignRef(campaign: campaign)), as: WireCampaign.self, Summary.line)
        }
    }

    struct StatusCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a campaign's experiments, as `serendip demo` prints them.")
        @Argument(help: "The campaign number.") var campaign: Int64
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.get", CampaignRef(campaign: campaign)), as: WireCampaign.self, Summary.experiments)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the daemon's campaigns.")
        @OptionGroup var client: ClientOptions

        func run() throws {
            try client.show(try client.call("campaign.list"), as: [WireCampaign].self) { campaigns in
                guard !campaigns.isEmpty else { return "no campaigns" }
                return Show.table([["campaign", "name", "state", "best", "waiting"]] + campaigns.map {
                    [String($0.campaign), $0.name, $0.state, $0.best.map { String(format: "%.4g", $0) } ?? "-", String($0.waiting.count)]
                })
            }
        }
    }
}

/// A campaign's status as text.
enum Summary {
    static func line(_ s: WireCampaign) -> String {
        var text = "campaign \(s.campaign) (\(s.name)) is \(s.state)"
        if let note = s.note { text += ": \(note)" }
        if !s.experiments.isEmpty { text += "; \(s.experiments.count) experiment\(s.experiments.count == 1 ? "" : "s")" }
        if let best = s.best { text += ", best \(String(format: "%.4g", best))" }
        return text
    }

    /// The experiments in `serendip demo`'s columns: the parameters the campaign varies (those its
    /// experiments carry), then the objective and the best so far when it optimises one.
    static func experiments(_ s: WireCampaign) -> String {
        let experiments = s.experiments
        let searched = Set(experiments.flatMap(\.parameters.keys)).sorted()
        let table = ProgressTable(searched: searched, objective: s.objective)
        var lines = [line(s)]
        if !experiments.isEmpty {
            lines.append(table.header)
            lines += experiments.map(table.row)
        }
        if !s.waiting.isEmpty {
            lines.append("waiting in the queue: " + s.waiting.map { "run \($0)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
