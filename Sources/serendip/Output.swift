import Glibc

/// Lines to standard output and error, written at once and never fatal: a reader that has gone (a
/// closed pipe, `| head`, a terminal closed) must not crash a command that is commanding safe
/// states. SIGPIPE is ignored, so such a write just fails, and says so to a caller that needs to know
/// (the planner's conversation ends).
enum Output {
    private static let pipesIgnored: Void = { signal(SIGPIPE, SIG_IGN) }()

    /// Writes a line to standard output; false if it could not be written (the reader has gone).
    @discardableResult static func line(_ text: String) -> Bool { write(text + "\n", to: STDOUT_FILENO) }
    static func error(_ text: String) { write(text + "\n", to: STDERR_FILENO) }

    @discardableResult private static func write(_ text: String, to fd: Int32) -> Bool {
        _ = pipesIgnored
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            bytes = bytes.dropFirst(n)
        }
        return true
    }
}
