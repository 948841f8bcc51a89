/// Where in a user's file something is: what a person needs to find and fix it.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible, Codable {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file; self.line = line; self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// Every error Serendip reports: a stable code, a message a person can act on, optionally the
/// place in a user's file and the underlying cause.
public struct LabError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        case invalidFile, unitMismatch, unknownReference, outOfLimits, notANumber, accessDenied
        case transport, timeout, protocolViolation, instrumentLost, aborted, storage, planner, internalError
        /// A device holds something other than what was just written to it: the run pauses.
        case readBackMismatch
        /// No such run, entry or campaign; a request that does not apply to the state something is in.
        case notFound, conflict
    }

    public var code: Code
    public var message: String
    public var location: SourceLocation?
    public var cause: String?

    public init(_ code: Code, _ message: String, at location: SourceLocation? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.cause = cause.map { String(describing: $0) }
    }

    public var description: String {
        var text = location.map { "\($0): \(message)" } ?? message
        if let cause { text += " (cause: \(cause))" }
        return text
    }
}
