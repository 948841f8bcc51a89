import Foundation
public import LabCore

/// One problem in a user's file, with where it is and, where one fits, what to do about it.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public var hint: String?

    public init(_ location: SourceLocation, _ message: String, hint: String? = nil) {
        self.location = location; self.message = message; self.hint = hint
    }

    public var description: String {
        "\(location): \(message)" + (hint.map { " — \($0)" } ?? "")
    }

    /// `file:line:column: message`, then the offending line and a caret under the column.
    public func rendered(source: String) -> String {
        var text = description
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        if location.line >= 1, location.line <= lines.count {
            let line = lines[location.line - 1].replacingOccurrences(of: "\r", with: "")
            text += "\n    \(line)\n    " + String(repeating: " ", count: max(0, location.column - 1)) + "^"
        }
        return text
    }
}

/// Files that did not validate: every problem found, not just the first.
public struct ValidationError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [Diagnostic]
    /// The text of each file a diagnostic points into, by path, for rendering the offending line.
    public var sources: [String: String]

    public init(_ diagnostics: [Diagnostic], sources: [String: String]) {
        self.diagnostics = diagnostics.sorted {
            ($0.location.file, $0.location.line, $0.location.column) < ($1.location.file, $1.location.line, $1.location.column)
        }
        self.sources = sources
    }

    public init(_ diagnostics: [Diagnostic], source: String) {
        self.init(diagnostics, sources: Dictionary(diagnostics.map { ($0.location.file, source) }, uniquingKeysWith: { a, _ in a }))
    }

    public var description: String {
        diagnostics.map { $0.rendered(source: sources[$0.location.file] ?? "") }.joined(separator: "\n")
    }
}

/// "did you mean …?" for a misspelt name.
func suggestion(for name: String, among candidates: some Sequence<String>) -> String? {
    let best = candidates.map { ($0, editDistance(name, $0)) }.min { $0.1 < $1.1 }
    guard let (candidate, distance) = best, distance <= max(2, name.count / 3) else { return nil }
    return "did you mean '\(candidate)'?"
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.lowercased()), b = Array(b.lowercased())
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
