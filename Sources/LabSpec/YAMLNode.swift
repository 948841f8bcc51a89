import CYaml

/// A YAML node and where it starts in its file. Every scalar stays text: the compiler reads each
/// value itself, so no implicit-type resolution is done (it cost more than the rest of validation).
final class Node {
    struct Mark { let line: Int; let column: Int }
    enum Style { case plain, singleQuoted, doubleQuoted, literal, folded }
    struct Scalar { let string: String; let style: Style }
    typealias Mapping = [(key: Node, value: Node)]

    enum Content {
        case scalar(Scalar)
        case mapping(Mapping)
        case sequence([Node])
    }

    let content: Content
    let mark: Mark

    init(_ content: Content, mark: Mark) {
        self.content = content
        self.mark = mark
    }

    var scalar: Scalar? { if case .scalar(let s) = content { s } else { nil } }
    var mapping: Mapping? { if case .mapping(let m) = content { m } else { nil } }
    var sequence: [Node]? { if case .sequence(let s) = content { s } else { nil } }
}

/// Why a file could not be composed into nodes.
struct YAMLProblem: Error {
    enum Kind { case syntax, unreadable, tooDeep }
    let kind: Kind
    let message: String
    /// Where the problem is; for unreadable bytes, the byte offset instead.
    let mark: Node.Mark
    let byteOffset: Int
}

/// Builds a node tree straight from libyaml's events, with an explicit stack (no recursion, so
/// nesting is limited by `maximumNesting`, not by the thread's stack). Aliases share their anchor's
/// node instead of copying it, so an alias bomb costs no memory here; the compiler's step caps
/// bound what it then expands.
enum YAMLComposer {
    /// Deeper than this no real protocol goes.
    static let maximumNesting = 100

    /// The single document in `text`, or nil for a file with no document at all.
    static func compose(_ text: String) throws(YAMLProblem) -> Node? {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { bytes.append(0) }  // libyaml wants a valid pointer; a NUL alone is an empty stream
        let count = text.utf8.count
        return try bytes.withUnsafeBufferPointer { buffer throws(YAMLProblem) in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else {
                throw YAMLProblem(kind: .syntax, message: "out of memory", mark: .init(line: 1, column: 1), byteOffset: 0)
            }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_input_string(&parser, buffer.baseAddress, count)
            var composer = Composer()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { throw problem(of: parser) }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { return composer.root }
                try composer.handle(event)
            }
        }
    }

    private static func problem(of parser: yaml_parser_t) -> YAMLProblem {
        let message = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        if parser.error == YAML_READER_ERROR {
            return YAMLProblem(kind: .unreadable, message: message, mark: .init(line: 1, column: 1),
                               byteOffset: parser.problem_offset)
        }
        return YAMLProblem(kind: .syntax, message: message, mark: mark(parser.problem_mark), byteOffset: 0)
    }

    static func mark(_ mark: yaml_mark_t) -> Node.Mark {
        Node.Mark(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private struct Composer {
        /// A collection still being read. A class, so appending never copies what was read so far.
        final class Open {
            let isMapping: Bool
            let mark: Node.Mark
            let anchor: String?
            var items: [Node] = []
            var pairs: Node.Mapping = []
            var pendingKey: Node?
            init(isMapping: Bool, mark: Node.Mark, anchor: String?) {
                (self.isMapping, self.mark, self.anchor) = (isMapping, mark, anchor)
            }
            var node: Node { Node(isMapping ? .mapping(pairs) : .sequence(items), mark: mark) }
        }
        var stack: [Open] = []
        var anchors: [String: Node] = [:]
        var root: Node?
        var documents = 0

        mutating func handle(_ event: yaml_event_t) throws(YAMLProblem) {
            let at = YAMLComposer.mark(event.start_mark)
            switch event.type {
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 {
                    throw YAMLProblem(kind: .syntax, message: "a file holds one document; found a second '---'",
                                      mark: at, byteOffset: 0)
                }
            case YAML_SCALAR_EVENT:
                let data = event.data.scalar
                let string = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
                let node = Node(.scalar(.init(string: string, style: style(data.style))), mark: at)
                remember(node, anchor: data.anchor)
                add(node)
            case YAML_ALIAS_EVENT:
                let name = text(event.data.alias.anchor) ?? ""
                guard let node = anchors[name] else {
                    throw YAMLProblem(kind: .syntax, message: "found undefined alias '\(name)'", mark: at, byteOffset: 0)
                }
                add(node)
            case YAML_SEQUENCE_START_EVENT:
                try open(Open(isMapping: false, mark: at, anchor: text(event.data.sequence_start.anchor)))
            case YAML_MAPPING_START_EVENT:
                try open(Open(isMapping: true, mark: at, anchor: text(event.data.mapping_start.anchor)))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let closed = stack.removeLast(), node = closed.node
                if let anchor = closed.anchor { anchors[anchor] = node }
                add(node)
            default:
                break
            }
        }

        private mutating func open(_ collection: Open) throws(YAMLProblem) {
            guard stack.count < YAMLComposer.maximumNesting else {
                throw YAMLProblem(kind: .tooDeep, message: "nested more than \(YAMLComposer.maximumNesting) levels deep",
                                  mark: collection.mark, byteOffset: 0)
            }
            stack.append(collection)
        }

        private mutating func remember(_ node: Node, anchor: UnsafeMutablePointer<yaml_char_t>?) {
            if let name = text(anchor) { anchors[name] = node }
        }

        /// Puts a finished node into the collection that is open, or makes it the document's root.
        private mutating func add(_ node: Node) {
            guard let top = stack.last else {
                root = node
                return
            }
            if !top.isMapping {
                top.items.append(node)
            } else if let key = top.pendingKey {
                top.pairs.append((key, node))
                top.pendingKey = nil
            } else {
                top.pendingKey = node
            }
        }

        private func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: $0) }
        }

        private func style(_ style: yaml_scalar_style_t) -> Node.Style {
            switch style {
            case YAML_SINGLE_QUOTED_SCALAR_STYLE: .singleQuoted
            case YAML_DOUBLE_QUOTED_SCALAR_STYLE: .doubleQuoted
            case YAML_LITERAL_SCALAR_STYLE: .literal
            case YAML_FOLDED_SCALAR_STYLE: .folded
            default: .plain
            }
        }
    }
}
