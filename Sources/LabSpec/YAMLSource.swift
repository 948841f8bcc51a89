import Foundation
import Crypto
public import LabCore

/// A YAML file loaded with positions, and the diagnostics found while reading it.
/// Reading never stops at the first problem: each accessor records what is wrong and returns nil.
final class YAMLSource {
    let path: String
    let text: String
    var diagnostics: [Diagnostic] = []

    /// Files larger than this are refused before parsing: no protocol is this big.
    static let maximumBytes = 4 << 20

    /// Expressions already parsed, by text and the column their scalar starts at (a protocol repeats
    /// `10 s` and `$temperature` many times). Only successes are kept; failures are reported each time.
    private var parsedExpressions: [String: Expr] = [:]

    init(path: String, text: String) {
        self.path = path
        self.text = text
    }

    var sha256: String {
        // Hex by table: String(format:) per byte was a fifth of queueing a thousand runs.
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in SHA256.hash(data: Data(text.utf8)) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    func location(_ node: Node?) -> SourceLocation {
        let mark = node?.mark
        return SourceLocation(file: path, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    func error(_ node: Node?, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(location(node), message, hint: hint))
    }

    func error(at location: SourceLocation, _ message: String, hint: String? = nil) {
        diagnostics.append(Diagnostic(location, message, hint: hint))
    }

    /// Parses the text into a node tree; a syntax error becomes a diagnostic.
    func root() -> Node? {
        guard text.utf8.count <= Self.maximumBytes else {
            error(nil, "file is larger than \(Self.maximumBytes >> 20) MiB", hint: "split it into sub-protocols")
            return nil
        }
        do {
            guard let node = try YAMLComposer.compose(text) else {
                error(nil, "file is empty", hint: "a protocol starts with 'serendip: 1', a driver file with 'driver: NAME', a lab config with 'lab: NAME'")
                return nil
            }
            return node
        } catch {
            let at = SourceLocation(file: path, line: error.mark.line, column: error.mark.column)
            switch error.kind {
            case .unreadable:
                self.error(at: location(ofOffset: error.byteOffset), "cannot read the file: \(error.message)",
                           hint: "save it as UTF-8 text")
            case .tooDeep:
                self.error(at: at, error.message, hint: "use sub-protocols")
            case .syntax:
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                let hasTab = error.mark.line <= lines.count && lines[error.mark.line - 1].contains("\t")
                self.error(at: at, "YAML syntax: \(error.message)",
                           hint: hasTab ? "indent with spaces; YAML does not allow tabs" : nil)
            }
        }
        return nil
    }

    /// Line and column (in Unicode scalars) of a byte offset into the text.
    func location(ofOffset offset: Int) -> SourceLocation {
        let bytes = text.utf8.prefix(offset)
        let line = bytes.count(where: { $0 == UInt8(ascii: "\n") }) + 1
        let lineStart = bytes.lastIndex(of: UInt8(ascii: "\n")).map { bytes.index(after: $0) } ?? bytes.startIndex
        let column = String(decoding: bytes[lineStart...], as: UTF8.self).unicodeScalars.count + 1
        return SourceLocation(file: path, line: line, column: column)
    }

    // MARK: typed accessors

    func mapping(_ node: Node, _ what: String) -> MappingReader? {
        guard let mapping = node.mapping else {
            error(node, "\(what) must be a mapping (key: value)")
            return nil
        }
        return MappingReader(mapping, node: node, source: self, what: what)
    }

    func string(_ node: Node, _ what: String) -> String? {
        guard let scalar = node.scalar else {
            error(node, "\(what) must be a single value")
            return nil
        }
        return scalar.string
    }

    func number(_ node: Node, _ what: String) -> Double? {
        guard let text = string(node, what) else { return nil }
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            error(node, "\(what) must be a finite number, got '\(text)'")
            return nil
        }
        return value
    }

    func integer(_ node: Node, _ what: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(node, what) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            error(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
            return nil
        }
        return value
    }

    func bool(_ node: Node, _ what: String) -> Bool? {
        guard let text = string(node, what) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            error(node, "\(what) must be true or false, got '\(text)'")
            return nil
        }
    }

    func unit(_ node: Node, _ what: String) -> LabUnit? {
        guard let symbol = string(node, what) else { return nil }
        guard let unit = LabUnit.named(symbol) else {
            error(node, "unknown unit '\(symbol)'", hint: suggestion(for: symbol, among: LabUnit.known.keys))
            return nil
        }
        return unit
    }

    func range(_ node: Node, _ what: String) -> ClosedRange<Double>? {
        guard let items = node.sequence, items.count == 2 else {
            error(node, "\(what) must be a pair [low, high]")
            return nil
        }
        guard let low = number(items[0], what), let high = number(items[1], what) else { return nil }
        guard low <= high else {
            error(node, "\(what): low \(low) is above high \(high)")
            return nil
        }
        return low...high
    }

    func expression(_ node: Node, _ what: String) -> Expr? {
        guard let text = string(node, what) else { return nil }
        if text.allSatisfy(\.isWhitespace) {
            error(node, "\(what) has no value", hint: "a '#' starts a comment in YAML; quote a value that contains one")
            return nil
        }
        var start = location(node)
        if node.scalar?.style == .singleQuoted || node.scalar?.style == .doubleQuoted { start.column += 1 }
        if let cached = parsedExpressions[text] { return cached }
        do {
            let expr = try ExpressionParser.parse(text, at: start)
            parsedExpressions[text] = expr
            return expr
        } catch {
            diagnostics.append(error.diagnostic)
            return nil
        }
    }

    func channelRef(_ node: Node, _ what: String) -> ChannelRef? {
        guard let text = string(node, what) else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            error(node, "\(what) must name instrument.channel, got '\(text)'")
            return nil
        }
        return ChannelRef(instrument: String(parts[0]), channel: String(parts[1]))
    }
}

/// Reads one mapping, remembering which keys were used so that unknown and duplicate keys are
/// reported (a typo in a key must not silently drop a setting). Keys are read once, up front.
final class MappingReader {
    let node: Node
    let source: YAMLSource
    let what: String
    private let mapping: Node.Mapping
    /// Each key's text with its position in the mapping, in file order.
    private let keys: [(text: String, position: Int)]
    private let index: [String: Int]
    private var used: Set<String> = []

    init(_ mapping: Node.Mapping, node: Node, source: YAMLSource, what: String) {
        self.node = node; self.source = source; self.what = what; self.mapping = mapping
        var keys: [(String, Int)] = [], index: [String: Int] = [:]
        keys.reserveCapacity(mapping.count)
        for (position, pair) in zip(mapping.indices, mapping) {
            guard let scalar = pair.key.scalar else {
                source.error(pair.key, "a key in \(what) must be a plain name, not a list or mapping")
                continue
            }
            keys.append((scalar.string, position))
            if index.updateValue(position, forKey: scalar.string) != nil {
                source.error(pair.key, "duplicate key '\(scalar.string)' in \(what)")
            }
        }
        self.keys = keys
        self.index = index
    }

    var pairs: [(key: String, keyNode: Node, value: Node)] {
        keys.map { ($0.text, mapping[$0.position].key, mapping[$0.position].value) }
    }

    /// The node of a key itself, to point at `key:` rather than at what follows it.
    func keyNode(_ key: String) -> Node? {
        index[key].map { mapping[$0].key }
    }

    /// The keys in file order.
    var keyNames: [String] { keys.map(\.text) }

    func optional(_ key: String) -> Node? {
        used.insert(key)
        return index[key].map { mapping[$0].value }
    }

    func required(_ key: String, hint: String? = nil) -> Node? {
        guard let value = optional(key) else {
            source.error(node, "\(what) is missing '\(key)'", hint: hint)
            return nil
        }
        return value
    }

    /// Reports every key that was never asked for; true if there was one.
    @discardableResult
    func rejectUnknownKeys() -> Bool {
        let unknown = keys.filter { !used.contains($0.text) }
        for (key, position) in unknown {
            source.error(mapping[position].key, "unknown key '\(key)' in \(what)", hint: suggestion(for: key, among: used))
        }
        return !unknown.isEmpty
    }
}
