import Foundation
import LabCore

/// How values and times read in the text output.
enum Show {
    static func value(_ v: ExprValue, format: String = "%g") -> String {
        switch v {
        case .quantity(let q): String(format: format, q.value) + (q.unit == .one ? "" : " \(q.unit.symbol)")
        case .bool(let b): b ? "true" : "false"
        case .text(let t): t
        }
    }

    static func parameters(_ values: [String: ExprValue]?) -> String {
        let text = (values ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(value($0.value))" }.joined(separator: ", ")
        return text.isEmpty ? "-" : text
    }

    static func date(_ iso: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: iso) { return date }
        formatter.formatOptions.insert(.withFractionalSeconds)
        return formatter.date(from: iso)
    }

    /// Local time: "14:05" today, "Dec 1 14:05" on another day; the ISO text if it does not parse.
    static func time(_ iso: String?, now: Date = Date()) -> String {
        guard let iso else { return "-" }
        guard let date = date(iso) else { return iso }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let calendar = Calendar.current
        formatter.dateFormat = calendar.isDate(date, inSameDayAs: now) ? "HH:mm"
            : calendar.isDate(date, equalTo: now, toGranularity: .year) ? "MMM d HH:mm" : "yyyy-MM-dd HH:mm"
        return formatter.string(from: date)
    }

    static func duration(_ seconds: Double) -> String {
        seconds < 120 ? String(format: "%.0f s", seconds)
            : seconds < 7200 ? String(format: "%.0f min", seconds / 60) : String(format: "%.1f h", seconds / 3600)
    }

    /// Columns padded to their widest cell, two spaces apart.
    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
