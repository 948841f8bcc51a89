import ArgumentParser
import Foundation
import LabCore
import LabStorage

/// `serendip traffic RUN`: the raw requests and replies on the wires of a run's instruments, for
/// those the lab config records (`record_traffic: true`).
struct Traffic: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the raw traffic (every request and reply) of a run's instruments whose lab config says record_traffic: true.")

    @Argument(help: ArgumentHelp("The run number (serendip runs lists them).", valueName: "run")) var number: Int64
    @OptionGroup var data: DataDirectory
    @Flag(help: "Print the result as JSON (sorted keys) instead of text.") var json = false

    struct Frame: Encodable {
        var instrument: String
        var direction: String
        var bytesHex: String
        var wallTime: String
        enum CodingKeys: String, CodingKey { case instrument, direction, bytesHex = "bytes_hex", wallTime = "wall_time" }
    }

    func run() throws {
        let frames: [TrafficRecord]?
        do {
            let database = try data.openDatabase()
            frames = try database.run(number) == nil ? nil : try database.traffic(run: number)
        } catch { throw data.fail(error) }
        guard let frames else { throw data.noRun(number) }
        if json {
            return try data.printJSON(frames.map { Frame(instrument: $0.instrument, direction: $0.direction.rawValue,
                                                         bytesHex: Self.hex($0.bytes), wallTime: $0.wallTime) })
        }
        guard !frames.isEmpty else {
            return say("run \(number) has no recorded traffic (record_traffic: true on an instrument in the lab config records it)")
        }
        let width = frames.map(\.instrument.count).max() ?? 0
        for f in frames {
            let arrow = f.direction == .sent ? "→" : "←"
            say("\(f.wallTime)  \(f.instrument.padding(toLength: width, withPad: " ", startingAt: 0))  \(arrow)  \(Self.hex(f.bytes))\(Self.text(f.bytes))")
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined(separator: " ") }

    /// A line of printable text (an ASCII protocol) is shown as text too.
    static func text(_ bytes: [UInt8]) -> String {
        let body = bytes.reversed().drop { $0 == 10 || $0 == 13 }.reversed()
        guard !body.isEmpty, body.allSatisfy({ (32...126).contains($0) }) else { return "" }
        return "  \"\(String(decoding: body, as: UTF8.self))\""
    }
}
