public import LabCore

/// Parses the expression language of protocol files:
/// `or` < `and` < `not` < comparison < `in unit` < `+ -` < `* /` < unary minus < primary.
/// A primary is a number with an optional unit (`0.5 degC`, `2 degC/min`), a quoted string,
/// `true`/`false`, `$parameter`, a measured series name, `function(series)`, `abs(expr)`, or a
/// parenthesised expression.
public struct ExpressionParser {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var diagnostic: Diagnostic
        public var description: String { diagnostic.description }
    }

    /// Deeper nesting than this is refused so that hostile input cannot exhaust the stack.
    static let maximumDepth = 64

    private enum Token: Equatable {
        case number(Double), identifier(String), parameter(String), symbol(String), string(String), end
    }

    private let tokens: [(token: Token, column: Int)]
    private let start: SourceLocation
    private var index = 0
    private var depth = 0

    public static func parse(_ text: String, at location: SourceLocation) throws(Failure) -> Expr {
        var parser = try ExpressionParser(text, at: location)
        let expr = try parser.parseOr()
        guard parser.current == .end else { throw parser.failure("unexpected '\(parser.currentText)' after expression") }
        return expr
    }

    private init(_ text: String, at location: SourceLocation) throws(Failure) {
        start = location
        var result: [(Token, Int)] = []
        let bytes = Array(text.utf8)
        // Token columns count Unicode scalars (as editors and libyaml do), not bytes.
        var scalarsBefore = [Int](repeating: 0, count: bytes.count + 1)
        for (i, byte) in bytes.enumerated() { scalarsBefore[i + 1] = scalarsBefore[i] + (byte & 0xC0 == 0x80 ? 0 : 1) }
        func fail(_ message: String, _ offset: Int) -> Failure {
            var at = location
            at.column += scalarsBefore[offset]
            return Failure(diagnostic: Diagnostic(at, message))
        }
        func string(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        // Letters, `_`, and any non-ASCII byte (so names in other scripts still read as names).
        func isNameStart(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A || b == 0x5F || b >= 0x80 }
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x20 || c == 0x09 { i += 1; continue }
            let begin = i
            if isDigit(c) || (c == UInt8(ascii: ".") && i + 1 < bytes.count && isDigit(bytes[i + 1])) {
                while i < bytes.count, isDigit(bytes[i]) || bytes[i] == UInt8(ascii: ".") { i += 1 }
                if i < bytes.count, bytes[i] | 0x20 == UInt8(ascii: "e") {
                    var j = i + 1
                    if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
                    if j < bytes.count, isDigit(bytes[j]) {
                        i = j
                        while i < bytes.count, isDigit(bytes[i]) { i += 1 }
                    }
                }
                let literal = string(begin..<i)
                guard let value = Double(literal), value.isFinite else { throw fail("'\(literal)' is not a number", begin) }
                result.append((.number(value), scalarsBefore[begin]))
            } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                i += 1
                while i < bytes.count, bytes[i] != c { i += 1 }
                guard i < bytes.count else { throw fail("string is not closed; add \(Character(Unicode.Scalar(c)))", begin) }
                result.append((.string(string((begin + 1)..<i)), scalarsBefore[begin]))
                i += 1
            } else if c == UInt8(ascii: "$") || isNameStart(c) {
                i += 1
                while i < bytes.count, isNameStart(bytes[i]) || isDigit(bytes[i]) { i += 1 }
                if c == UInt8(ascii: "$") {
                    guard i > begin + 1 else { throw fail("'$' must be followed by a parameter name", begin) }
                    result.append((.parameter(string((begin + 1)..<i)), scalarsBefore[begin]))
                } else {
                    result.append((.identifier(string(begin..<i)), scalarsBefore[begin]))
                }
            } else {
                let two = i + 1 < bytes.count ? string(i..<(i + 2)) : ""
                if ["<=", ">=", "==", "!="].contains(two) {
                    result.append((.symbol(two), scalarsBefore[begin])); i += 2
                } else if "+-*/()<>%".utf8.contains(c) {
                    result.append((.symbol(string(i..<(i + 1))), scalarsBefore[begin])); i += 1
                } else {
                    let scalar = String(text.unicodeScalars.dropFirst(scalarsBefore[begin]).prefix(1))
                    throw fail("unexpected character '\(scalar)' in expression", begin)
                }
            }
        }
        result.append((.end, scalarsBefore[bytes.count]))
        tokens = result
    }

    private var current: Token { tokens[index].token }

    private var currentText: String {
        switch current {
        case .number(let x): "\(x)"
        case .identifier(let s), .symbol(let s): s
        case .parameter(let s): "$\(s)"
        case .string(let s): "\"\(s)\""
        case .end: "end of expression"
        }
    }

    private func failure(_ message: String, hint: String? = nil) -> Failure {
        var at = start
        at.column += tokens[index].column
        return Failure(diagnostic: Diagnostic(at, message, hint: hint))
    }

    private mutating func advance() { if index < tokens.count - 1 { index += 1 } }

    private mutating func accept(_ symbol: String) -> Bool {
        guard current == .symbol(symbol) || current == .identifier(symbol) else { return false }
        advance()
        return true
    }

    private mutating func parseOr() throws(Failure) -> Expr {
        var lhs = try parseAnd()
        while accept("or") { lhs = .binary(.or, lhs, try parseAnd()) }
        return lhs
    }

    private mutating func parseAnd() throws(Failure) -> Expr {
        var lhs = try parseNot()
        while accept("and") { lhs = .binary(.and, lhs, try parseNot()) }
        return lhs
    }

    private mutating func parseNot() throws(Failure) -> Expr {
        if accept("not") { return .not(try nested { (p: inout ExpressionParser) throws(Failure) in try p.parseNot() }) }
        return try parseComparison()
    }

    private mutating func parseComparison() throws(Failure) -> Expr {
        let lhs = try parseConversion()
        for op in [BinaryOperator.lessEqual, .greaterEqual, .equal, .notEqual, .less, .greater] where accept(op.rawValue) {
            return .binary(op, lhs, try parseConversion())
        }
        return lhs
    }

    private mutating func parseConversion() throws(Failure) -> Expr {
        var expr = try parseSum()
        while accept("in") {
            guard let unit = unitSymbol() else { throw failure("expected a unit after 'in'") }
            expr = .convert(expr, unit)
        }
        return expr
    }

    /// A unit symbol at the current token (`K`, `%`, `mL/min`), consumed if it is one.
    private mutating func unitSymbol() -> LabUnit? {
        if accept("%") { return LabUnit.named("%") }
        guard case .identifier(let symbol) = current, let unit = LabUnit.named(symbol) else { return nil }
        advance()
        if current == .symbol("/"), case .identifier(let denominator) = tokens[index + 1].token,
           tokens[min(index + 2, tokens.count - 1)].token != .symbol("("),
           let rate = LabUnit.named("\(symbol)/\(denominator)") {
            advance(); advance()
            return rate
        }
        return unit
    }

    private mutating func nested<T>(_ body: (inout ExpressionParser) throws(Failure) -> T) throws(Failure) -> T {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else { throw failure("expression nested too deeply") }
        return try body(&self)
    }

    private mutating func parseSum() throws(Failure) -> Expr {
        var lhs = try parseProduct()
        while true {
            if accept("+") { lhs = .binary(.add, lhs, try parseProduct()) }
            else if accept("-") { lhs = .binary(.subtract, lhs, try parseProduct()) }
            else { return lhs }
        }
    }

    private mutating func parseProduct() throws(Failure) -> Expr {
        var lhs = try parseUnary()
        while true {
            if accept("*") { lhs = .binary(.multiply, lhs, try parseUnary()) }
            else if accept("/") { lhs = .binary(.divide, lhs, try parseUnary()) }
            else { return lhs }
        }
    }

    private mutating func parseUnary() throws(Failure) -> Expr {
        try nested { (p: inout ExpressionParser) throws(Failure) -> Expr in
            if p.accept("-") { return .negate(try p.parseUnary()) }
            return try p.parsePrimary()
        }
    }

    private mutating func parsePrimary() throws(Failure) -> Expr {
        switch current {
        case .number(let value):
            advance()
            if let unit = unitSymbol() { return .number(Quantity(value, unit)) }
            if case .identifier(let symbol) = current, !["and", "or", "in", "not"].contains(symbol),
               tokens[index + 1].token != .symbol("(") {
                throw failure("unknown unit '\(symbol)'", hint: suggestion(for: symbol, among: LabUnit.symbols))
            }
            return .number(Quantity(value))
        case .string(let text):
            advance()
            return .text(text)
        case .parameter(let name):
            advance()
            return .parameter(name)
        case .identifier(let name):
            advance()
            if name == "true" || name == "false" { return .boolean(name == "true") }
            if ["nan", "inf", "infinity"].contains(name.lowercased()) {
                index -= 1
                throw failure("'\(name)' is not allowed: NaN and infinities never reach an instrument")
            }
            guard accept("(") else { return .series(name) }
            let functions = SeriesFunction.allCases.map(\.rawValue) + ["abs"]
            guard functions.contains(name) else {
                index -= 2
                throw failure("unknown function '\(name)'", hint: suggestion(for: name, among: functions))
            }
            let argumentStart = index
            let argument = try nested { (p: inout ExpressionParser) throws(Failure) in try p.parseOr() }
            guard accept(")") else { throw failure("expected ')' to close \(name)(") }
            if name == "abs" { return .absolute(argument) }
            guard case .series = argument else {
                index = argumentStart
                throw failure("\(name)() takes the name of a measured series, such as \(name)(absorbance)")
            }
            return .call(SeriesFunction(rawValue: name)!, argument)
        case .symbol("("):
            advance()
            let inner = try nested { (p: inout ExpressionParser) throws(Failure) in try p.parseOr() }
            guard accept(")") else { throw failure("expected ')'") }
            return inner
        default:
            throw failure("expected a number, $parameter or measurement name, found \(currentText)")
        }
    }
}
