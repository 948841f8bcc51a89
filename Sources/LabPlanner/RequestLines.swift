import Glibc

/// The request lines of a JSON-lines conversation, read from a file descriptor. A line longer than
/// `PlannerRequest.Limits.lineBytes` is read to its end and dropped rather than held, so that one
/// line cannot take the process's memory. Lines end at "\n" or "\r\n", and the last one may end
/// at the end of the input.
public struct RequestLines {
    public enum Line: Equatable {
        case text(String)
        /// A line past the limit, and how many bytes it had.
        case tooLong(bytes: Int)
    }

    let descriptor: Int32
    let limit: Int
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0, end = 0
    private var atEnd = false

    public init(descriptor: Int32) { self.init(descriptor: descriptor, limit: PlannerRequest.Limits.lineBytes) }

    init(descriptor: Int32, limit: Int) { (self.descriptor, self.limit) = (descriptor, limit) }

    /// The next line; nil once the input has ended.
    public mutating func next() -> Line? {
        var line: [UInt8] = [], length = 0
        while true {
            if start == end {
                guard !atEnd, refill() else {
                    return length == 0 ? nil : finished(line, length: length)
                }
            }
            let newline = chunk[start..<end].firstIndex(of: UInt8(ascii: "\n"))
            let stop = newline ?? end
            length += stop - start
            if length <= limit { line += chunk[start..<stop] } else { line = [] }
            start = newline.map { $0 + 1 } ?? end
            if newline != nil { return finished(line, length: length) }
        }
    }

    private func finished(_ line: [UInt8], length: Int) -> Line {
        guard length <= limit else { return .tooLong(bytes: length) }
        let text = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
        return .text(String(decoding: text, as: UTF8.self))
    }

    /// Reads more input; false at its end (or on a read error, which ends it too).
    private mutating func refill() -> Bool {
        while true {
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { atEnd = true; return false }
            (start, end) = (0, n)
            return true
        }
    }
}
