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
        let chars = Array(text.unicodeScalars)
        var i = 0
        func fail(_ message: String, _ column: Int) -> Failure {
            var at = location
            at.column += column
            return Failure(diagnostic: Diagnostic(at, message))
        }
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" { i += 1; continue }
            let begin = i
            if c.isASCIIDigit || (c == "." && i + 1 < chars.count && chars[i + 1].isASCIIDigit) {
                while i < chars.count, chars[i].isASCIIDigit || chars[i] == "." { i += 1 }
                if i < chars.count, chars[i] == "e" || chars[i] == "E" {
                    var j = i + 1
                    if j < chars.count, chars[j] == "+" || chars[j] == "-" { j += 1 }
                    if j < chars.count, chars[j].isASCIIDigit {
                        i = j
                        while i < chars.count, chars[i].isASCIIDigit { i += 1 }
                    }
                }
                let literal = String(String.UnicodeScalarView(chars[begin..<i]))
                guard let value = Double(literal), value.isFinite else { throw fail("'\(literal)' is not a number", begin) }
                result.append((.number(value), begin))
            } else if c == "\"" || c == "'" {
                i += 1
                while i < chars.count, chars[i] != c { i += 1 }
                guard i < chars.count else { throw fail("string is not closed; add \(c)", begin) }
                result.append((.string(String(String.UnicodeScalarView(chars[(begin + 1)..<i]))), begin))
                i += 1
            } else if c == "$" || c.isIdentifierStart {
                i += 1
                while i < chars.count, chars[i].isIdentifierPart { i += 1 }
                let name = String(String.UnicodeScalarView(chars[(c == "$" ? begin + 1 : begin)..<i]))
                if c == "$" {
                    guard !name.isEmpty else { throw fail("'$' must be followed by a parameter name", begin) }
                    result.append((.parameter(name), begin))
                } else {
                    result.append((.identifier(name), begin))
                }
            } else {
                let two = i + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[i + 1]])) : ""
                if ["<=", ">=", "==", "!="].contains(two) {
                    result.append((.symbol(two), begin)); i += 2
                } else if "+-*/()<>%".unicodeScalars.contains(c) {
                    result.append((.symbol(String(c)), begin)); i += 1
                } else {
                    throw fail("unexpected character '\(c)' in expression", begin)
                }
            }
        }
        result.append((.end, chars.count))
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

private extension Unicode.Scalar {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
    var isIdentifierStart: Bool { properties.isAlphabetic || self == "_" }
    var isIdentifierPart: Bool { isIdentifierStart || isASCIIDigit }
}
