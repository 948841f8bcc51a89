/// Checks a file's shape before YAML parsing, so hostile input is refused with a clear message
/// instead of exhausting the stack (the YAML composer recurses once per nesting level).
enum YAMLLimits {
    /// Deeper than this no real protocol goes; YAML is refused before it is composed.
    static let maximumNesting = 100

    /// The location of the first place nested deeper than the limit, if any. Counts flow brackets
    /// outside quotes, plus block indentation and compact `- ` indicators.
    static func firstTooDeep(_ text: String) -> (line: Int, column: Int)? {
        var line = 1, flow = 0
        var quote: Character?
        var atLineStart = true, blockDepth = 0, column = 0
        for character in text {
            column += 1
            if character == "\n" {
                (line, column, atLineStart, blockDepth) = (line + 1, 0, true, 0)
                if quote == "'" || quote == "\"" { continue }
                continue
            }
            if atLineStart {
                if character == " " || character == "-" || character == "?" || character == ":" {
                    blockDepth += 1
                    if blockDepth / 2 + flow > maximumNesting { return (line, column) }
                    continue
                }
                atLineStart = false
            }
            if let q = quote {
                if character == q { quote = nil }
                continue
            }
            switch character {
            case "\"", "'": quote = character
            case "#": atLineStart = false
            case "[", "{":
                flow += 1
                if flow + blockDepth / 2 > maximumNesting { return (line, column) }
            case "]", "}": flow = max(0, flow - 1)
            default: break
            }
        }
        return nil
    }
}
