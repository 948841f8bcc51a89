import Foundation
import LabCore

/// One request line of the JSON-lines protocol (docs/planner.md), checked at one gate: every field
/// is known, has its type and lies within its limits before the session acts on it, and every error
/// names the field and says what to send instead.
struct PlannerRequest {
    let op: String
    private let fields: [String: Any]

    /// Limits checked before anything is allocated: each bounds the memory or the time one request
    /// can cost.
    enum Limits {
        static let dimensions = 1_000
        static let initialPoints = 10_000
        /// n_init × inputs: the numbers of the initial design, drawn again at each ask.
        static let designNumbers = 1_000_000
        static let batch = 1_000
        /// As a campaign file's budget (CampaignSpec.maximumRuns).
        static let budget = 100_000
        /// One request line, in bytes: the widest init (1,000 pairs of full-precision bounds) is
        /// about 50 KB.
        static let lineBytes = 1 << 20
    }

    /// The fields each op takes.
    static let fieldsByOp: KeyValuePairs<String, [String]> = [
        "init": ["bounds", "dim", "budget", "n_init", "seed", "minimize", "noise", "transform", "expect_best"],
        "ask": ["n"],
        "tell": ["x", "y", "noise"],
        "done": [],
    ]

    init(line: String) throws {
        guard !line.allSatisfy(\.isWhitespace) else {
            throw Self.error(#"empty line: send one JSON request per line, such as {"op":"ask"}"#)
        }
        let object: Any
        do {
            object = try Self.parse(line)
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            if let detail, detail.contains("not representable") {
                throw Self.error("a number beyond what a double holds (about ±1.8e308): send results in other units or as their "
                                 + "logarithm (y at most 1e100), or null for a run without a result")
            }
            throw Self.error(#"not JSON\#(detail.map { " (\($0))" } ?? ""): send one JSON object per line, such as {"op":"ask"}"#)
        }
        guard let fields = object as? [String: Any] else { throw Self.error(#"a request is a JSON object, such as {"op":"ask"}"#) }
        // What Foundation's parser lets through without a word: a repeated key, of whose values it
        // keeps one ({"op":"ask","op":"done"} would end the session), and a comma before } or ].
        if let problem = Self.laxity(line) { throw Self.error(problem) }
        let ops = Self.fieldsByOp.map(\.key)
        guard let op = fields["op"] as? String, let known = Self.fieldsByOp.first(where: { $0.key == op })?.value else {
            let what = fields["op"].map { "unknown op \(Self.show($0))" } ?? "a request needs an op"
            throw Self.error("\(what); use \(ops.dropLast().joined(separator: ", ")) or \(ops.last!)")
        }
        if let unknown = fields.keys.sorted().first(where: { $0 != "op" && !known.contains($0) }) {
            throw Self.error("\(op) has no field '\(Self.shortened(unknown))'" + (known.isEmpty ? #"; send {"op":"\#(op)"}"# : "; its fields are \(known.joined(separator: ", "))"))
        }
        self.op = op
        self.fields = fields
    }

    func has(_ name: String) -> Bool { fields[name] != nil }

    /// A whole number within `range`, or `default` when the field is absent.
    func integer(_ name: String, in range: ClosedRange<Int>, default value: Int? = nil) throws -> Int? {
        guard let raw = fields[name] else { return value }
        guard !Self.isBoolean(raw), let number = raw as? Int, range.contains(number) else {
            throw Self.error("\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound); got \(Self.show(raw))")
        }
        return number
    }

    func boolean(_ name: String, default value: Bool) throws -> Bool {
        guard let raw = fields[name] else { return value }
        guard Self.isBoolean(raw), let flag = raw as? Bool else { throw Self.error("\(name) must be true or false; got \(Self.show(raw))") }
        return flag
    }

    func string(_ name: String, oneOf choices: [String]) throws -> String? {
        guard let raw = fields[name] else { return nil }
        guard let text = raw as? String, choices.contains(text) else {
            throw Self.error("\(name) must be \(choices.dropLast().joined(separator: ", ")) or \(choices.last!); got \(Self.show(raw))")
        }
        return text
    }

    /// A finite number of size at most `largest`; nil when the field is absent, or null where
    /// `null` says what null means.
    func number(_ name: String, largest: Double, null: String? = nil) throws -> Double? {
        guard let raw = fields[name], !(null != nil && raw is NSNull) else { return nil }
        return try Self.number(raw, name: name, largest: largest, null: null)
    }

    /// A list of finite numbers of size at most `largest`.
    func numbers(_ name: String, largest: Double = .greatestFiniteMagnitude) throws -> [Double]? {
        guard let raw = fields[name] else { return nil }
        guard let list = raw as? [Any] else { throw Self.error("\(name) must be a list of numbers; got \(Self.show(raw))") }
        return try list.enumerated().map { try Self.number($0.element, name: "\(name)[\($0.offset)]", largest: largest) }
    }

    /// A list of lists of numbers (init's bounds).
    func numberLists(_ name: String) throws -> [[Double]]? {
        guard let raw = fields[name] else { return nil }
        guard let list = raw as? [Any] else { throw Self.error("\(name) must be a list of [low, high] pairs; got \(Self.show(raw))") }
        return try list.enumerated().map { row in
            guard let pair = row.element as? [Any] else {
                throw Self.error("\(name)[\(row.offset)] must be a [low, high] pair; got \(Self.show(row.element))")
            }
            return try pair.enumerated().map { try Self.number($0.element, name: "\(name)[\(row.offset)][\($0.offset)]", largest: .greatestFiniteMagnitude) }
        }
    }

    static func number(_ raw: Any, name: String, largest: Double, null: String? = nil) throws -> Double {
        let orNull = null.map { ", or null \($0)" } ?? "", expected = "a number" + orNull
        if let token = raw as? String, token.hasPrefix(nonFiniteMark) {
            let literal = token.dropFirst()
            guard !literal.allSatisfy(numberCharacters.contains) else {  // a JSON number, too large for a double
                throw error("\(name) is \(literal), beyond what a double holds (about ±1.8e308): send it in larger units, "
                            + "or its logarithm" + orNull)
            }
            throw error("\(name) must be finite: send \(expected); got \(literal), which is not a number in JSON")
        }
        guard !isBoolean(raw), let number = (raw as? NSNumber)?.doubleValue else {
            let quoted = (raw as? String).flatMap(Double.init) != nil ? " (send it without quotes)" : ""
            throw error("\(name) must be \(expected); got \(show(raw))\(quoted)")
        }
        guard abs(number) <= largest else {
            throw error("\(name) is \(number), beyond ±\(largest): send it in larger units, or its logarithm")
        }
        return number
    }

    static func error(_ message: String) -> LabError { LabError(.protocolViolation, message) }

    /// Foundation reads true and false as numbers that also convert to 1 and 0; its booleans
    /// alone have the type code of a C char.
    static func isBoolean(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return number.objCType.pointee == CChar(UInt8(ascii: "c"))
    }

    /// Text as long as an error message should repeat it.
    static func shortened(_ text: String) -> String { text.count > 60 ? text.prefix(57) + "..." : text }

    /// A value as JSON, for error messages.
    static func show(_ value: Any) -> String {
        if let token = value as? String, token.hasPrefix(nonFiniteMark) { return String(token.dropFirst()) }
        if isBoolean(value) { return (value as? Bool) == true ? "true" : "false" }
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else { return "\(value)" }
        return shortened(String(decoding: data, as: UTF8.self))
    }

    /// Marks a bare NaN or Infinity (which Python's json module writes, and JSON does not allow), or
    /// a number beyond a double (1e400, which Foundation refuses to parse), turned into a string so
    /// that the field's check can say what it needs instead of "not JSON".
    static let nonFiniteMark = "\u{1}"
    /// The characters of a JSON number.
    static let numberCharacters = "0123456789+-.eE"

    static func parse(_ line: String) throws -> Any {
        do {
            return try JSONSerialization.jsonObject(with: Data(line.utf8), options: .fragmentsAllowed)
        } catch {
            let marked = markNonFinite(line)
            guard marked != line, let object = try? JSONSerialization.jsonObject(with: Data(marked.utf8), options: .fragmentsAllowed) else { throw error }
            return object
        }
    }

    /// What is wrong with a line Foundation parsed although it is not strict JSON, if anything: the
    /// first key its outermost object names twice, or a comma that ends an object or a list.
    static func laxity(_ line: String) -> String? {
        var depth = 0, inString = false, escaped = false
        var token = "", lastString: String?, keys: Set<String> = []
        var previous: Character?  // the last character outside strings that is not white space
        for c in line {
            if inString {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false; lastString = token; continue }
                token.append(c)
                continue
            }
            switch c {
            case "\"": (inString, token) = (true, "")
            case ":" where depth == 1:
                // The key as the parser reads it, escapes decoded.
                if let raw = lastString, let key = try? JSONSerialization.jsonObject(with: Data("\"\(raw)\"".utf8), options: .fragmentsAllowed) as? String,
                   !keys.insert(key).inserted { return "'\(shortened(key))' is given twice: send each field once" }
            case "{", "[": depth += 1
            case "}", "]":
                if previous == "," { return "not JSON: a comma just before '\(c)'; remove it" }
                depth -= 1
            default: break
            }
            if !c.isWhitespace { previous = c }
            if !c.isWhitespace, c != "\"" { lastString = nil }
        }
        return nil
    }

    /// The line with each bare NaN, Infinity and -Infinity, and each number beyond a double, outside
    /// strings quoted and marked.
    static func markNonFinite(_ line: String) -> String {
        var result = "", inString = false, escaped = false
        var rest = Substring(line)
        while let c = rest.first {
            if inString {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
            } else if c == "\"" {
                inString = true
            } else if let token = ["-Infinity", "Infinity", "NaN"].first(where: { rest.hasPrefix($0) }) {
                result += "\"\\u0001\(token)\""
                rest = rest.dropFirst(token.count)
                continue
            } else if c == "-" || c.isASCII && c.isNumber {
                let number = rest.prefix(while: numberCharacters.contains)
                result += Double(number)?.isInfinite == true ? "\"\\u0001\(number)\"" : String(number)
                rest = rest.dropFirst(number.count)
                continue
            }
            result.append(c)
            rest = rest.dropFirst()
        }
        return result
    }
}
