/// Checks a file's shape before YAML parsing, so hostile input is refused with a clear message
/// instead of exhausting the stack (the YAML composer recurses once per nesting level).
enum YAMLLimits {
    /// Deeper than this no real protocol goes; YAML is refused before it is composed.
    static let maximumNesting = 100

    /// The location of the first place nested deeper than the limit, if any. Counts flow brackets
    /// outside quotes, plus block indentation and compact `- ` indicators.
    static func firstTooDeep(_ text: String) -> (line: Int, column: Int)? {
        var line = 1, flow = 0
        var quote: UInt8?
        var atLineStart = true, blockDepth = 0, column = 0
        for byte in text.utf8 {
            // Columns count Unicode scalars, as libyaml's do: skip UTF-8 continuation bytes.
            if byte & 0xC0 != 0x80 { column += 1 }
            if byte == UInt8(ascii: "\n") {
                (line, column, atLineStart, blockDepth) = (line + 1, 0, true, 0)
                continue
            }
            if atLineStart {
                if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: ":") {
                    blockDepth += 1
                    if blockDepth / 2 + flow > maximumNesting { return (line, column) }
                    continue
                }
                atLineStart = false
            }
            if let q = quote {
                if byte == q { quote = nil }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "'"): quote = byte
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                flow += 1
                if flow + blockDepth / 2 > maximumNesting { return (line, column) }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): flow = max(0, flow - 1)
            default: break
            }
        }
        return nil
    }
}
