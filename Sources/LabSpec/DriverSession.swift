import Foundation
public import LabCore

/// What a driver file says about talking to the device as a whole, beyond its channels: what to
/// send when it connects (`init:`), how fast it may be asked (`min_interval:`), how it says no
/// (`errors:`) and whether it follows SCPI conventions (`scpi: true`).
extension DriverSpec {
    /// One step of `init:`, sent in order right after every (re)connect, before anything else.
    public struct InitStep: Sendable, Hashable, CustomStringConvertible {
        public enum Action: Sendable, Hashable {
            /// A serial command; with `expect`, the reply must be exactly that, otherwise it must not
            /// be an error reply (under `scpi: true` nothing is awaited and `SYST:ERR?` judges).
            case command(send: String, expect: String?)
            /// A raw 16-bit value written to a holding register.
            case holding(UInt16, UInt16)
            case coil(UInt16, Bool)
        }
        public var action: Action
        /// 1-based, as a person counts the list.
        public var number: Int
        public var location: SourceLocation

        public init(action: Action, number: Int, location: SourceLocation) {
            self.action = action; self.number = number; self.location = location
        }

        /// `init step 2 'REM' (drivers/x.yaml:9:5)`: enough to find the line to fix.
        public var description: String {
            let what = switch action {
            case .command(let send, _): "'\(send)'"
            case .holding(let address, let value): "holding \(address) = \(value)"
            case .coil(let address, let value): "coil \(address) = \(value)"
            }
            return "init step \(number) \(what) (\(location))"
        }
    }

    /// How an ASCII device says it refused a command: a reply starting with one of the prefixes,
    /// or one matching a regular expression. The default is a reply starting with `ERR`.
    public enum ErrorReplies: Sendable, Hashable {
        case prefixes([String])
        case pattern(String)

        public static let standard = ErrorReplies.prefixes(["ERR"])

        public func isRefusal(_ reply: String) -> Bool {
            switch self {
            case .prefixes(let prefixes): return prefixes.contains { reply.hasPrefix($0) }
            case .pattern(let pattern):
                // Checked when the file was read; compiled per reply because NSRegularExpression is not Sendable.
                guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
                return regex.firstMatch(in: reply, range: NSRange(reply.startIndex..., in: reply)) != nil
            }
        }
    }

    /// The reply a SCPI device gives `SYST:ERR?` when its error queue is empty: `0,"No error"` or
    /// `+0,"No error"` (some answer `0` alone).
    public static func scpiNoError(_ reply: String) -> Bool {
        let code = reply.split(separator: ",", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return code == "0" || code == "+0" || code == "-0"
    }
}

extension DriverSpec {
    /// `init:`: a list of serial commands (`"REM"` or `{ send: "REM", expect: "OK" }`) or Modbus
    /// writes (`{ holding: 300, value: 1 }`, `{ coil: 4, value: true }`).
    static func parseInit(_ node: Node, source: YAMLSource, transport: Transport?) -> [InitStep] {
        guard let items = node.sequence else {
            source.error(node, "init must be a list of steps", hint: transport?.isModbus == true
                         ? "init: [{ holding: 300, value: 1 }]" : "init: [\"REM\", { send: \"UNIT C\", expect: \"OK\" }]")
            return []
        }
        if transport == .plugin {
            source.error(node, "a plugin initialises its device itself", hint: "remove 'init:'; docs/plugins.md")
            return []
        }
        var steps: [InitStep] = []
        for (index, item) in items.enumerated() {
            let location = source.location(item)
            if transport?.isModbus == true {
                guard let map = source.mapping(item, "a Modbus init step") else { continue }
                let holding = map.optional("holding").flatMap { source.integer($0, "holding", in: 0...65535) }
                let coil = map.optional("coil").flatMap { source.integer($0, "coil", in: 0...65535) }
                let valueNode = map.required("value", hint: "the raw register value, such as 'value: 1'")
                map.rejectUnknownKeys()
                if holding != nil, coil != nil {
                    source.error(item, "an init step writes one holding register or one coil, not both")
                } else if let holding, let valueNode, let raw = source.integer(valueNode, "value", in: -32768...65535) {
                    steps.append(InitStep(action: .holding(UInt16(holding), UInt16(truncatingIfNeeded: raw)), number: index + 1, location: location))
                } else if let coil, let valueNode, let bit = source.bool(valueNode, "value") {
                    steps.append(InitStep(action: .coil(UInt16(coil), bit), number: index + 1, location: location))
                } else if holding == nil, coil == nil, map.keyNode("holding") == nil, map.keyNode("coil") == nil {
                    source.error(item, "a Modbus init step needs 'holding' or 'coil'", hint: "{ holding: 300, value: 1 }")
                }
            } else if item.scalar != nil {
                if let send = source.string(item, "init command") {
                    if send.isEmpty { source.error(item, "an init command is empty", hint: "give the command, such as \"REM\"") }
                    else { steps.append(InitStep(action: .command(send: send, expect: nil), number: index + 1, location: location)) }
                }
            } else if let map = source.mapping(item, "an init step") {
                if let key = ["holding", "coil"].first(where: { map.keyNode($0) != nil }) {
                    source.error(map.keyNode(key), "'\(key):' is a Modbus init step; this driver's init steps are commands",
                                 hint: "init: [\"REM\", { send: \"UNIT C\", expect: \"OK\" }]")
                }
                let send = map.required("send", hint: "the command, such as send: \"REM\"").flatMap { source.string($0, "send") }
                let expect = map.optional("expect").flatMap { source.string($0, "expect") }
                map.rejectUnknownKeys()
                if let send, send.isEmpty { source.error(map.keyNode("send"), "an init command is empty", hint: "give the command, such as send: \"REM\"") }
                else if let send { steps.append(InitStep(action: .command(send: send, expect: expect), number: index + 1, location: location)) }
            }
        }
        return steps
    }

    /// `errors: { prefix: ["ERR", "?"] }` or `errors: { match: "^E[0-9]+" }` (an ICU regular expression).
    static func parseErrorReplies(_ node: Node, source: YAMLSource, transport: Transport?) -> ErrorReplies? {
        if transport != .serial {
            source.error(node, "errors: is for a serial driver: a Modbus device refuses with an exception code")
            return nil
        }
        guard let map = source.mapping(node, "errors") else { return nil }
        defer { map.rejectUnknownKeys() }
        var replies: ErrorReplies?
        if let prefix = map.optional("prefix") {
            let items = prefix.sequence ?? [prefix]
            let texts = items.compactMap { source.string($0, "error prefix") }
            if items.isEmpty { source.error(prefix, "prefix lists no error reply", hint: "errors: { prefix: [\"ERR\", \"?\"] }, or remove 'errors:' for the default ERR") }
            else if texts.contains(where: \.isEmpty) { source.error(prefix, "an empty prefix would make every reply an error") }
            else if !texts.isEmpty, texts.count == items.count { replies = .prefixes(texts) }
        }
        if let match = map.optional("match"), let pattern = source.string(match, "match") {
            if replies != nil { source.error(map.keyNode("match"), "errors has either 'prefix' or 'match', not both") }
            do { _ = try NSRegularExpression(pattern: pattern) } catch {
                source.error(match, "'\(pattern)' is not a regular expression", hint: "e.g. match: \"^E[0-9]+\"")
                return nil
            }
            if ErrorReplies.pattern(pattern).isRefusal("") {
                source.error(match, "'\(pattern)' matches an empty reply, so every reply would be an error", hint: "anchor it: \"^E[0-9]+\"")
                return nil
            }
            replies = .pattern(pattern)
        }
        if map.keyNode("prefix") == nil, map.keyNode("match") == nil {
            source.error(node, "errors needs 'prefix' or 'match'", hint: "errors: { prefix: [\"ERR\", \"?\"] }")
        }
        return replies
    }
}
