import Foundation
import LabAPI
import LabCore
import LabSpec

/// A file a client sends: its absolute path (how diagnostics name it, where `include`s resolve) and its text.
extension WireFile {
    /// `name` as a path, or a bare name as protocols/NAME.yaml under the current directory.
    static func protocolFile(_ name: String) throws(ClientFailure) -> WireFile {
        let manager = FileManager.default
        var candidates = [name]
        if !name.contains("/") { candidates.append("protocols/\(name)" + (name.hasSuffix(".yaml") ? "" : ".yaml")) }
        guard let found = candidates.first(where: { manager.fileExists(atPath: $0) }) else {
            throw ClientFailure("no protocol file \(candidates.joined(separator: " nor ")) in \(manager.currentDirectoryPath)", status: 2)
        }
        return try read(found)
    }

    static func read(_ path: String) throws(ClientFailure) -> WireFile {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        do { return WireFile(path: absolute, text: try String(contentsOfFile: absolute, encoding: .utf8)) } catch {
            throw ClientFailure("could not read \(path): \(error.localizedDescription)", status: 2)
        }
    }
}

/// `--param name=value` values typed by the protocol's own parameters, the way `serendip simulate`
/// types them, so that a wrong name or value is reported before anything is sent.
enum ParameterArguments {
    static func split(_ raw: [String]) throws(ClientFailure) -> [String: String] {
        var pairs: [String: String] = [:]
        for item in raw {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw ClientFailure("--param \(item): write it as name=value, e.g. --param 'temperature=80 degC'", status: 1)
            }
            let name = String(item[..<equals]).trimmingCharacters(in: .whitespaces)
            guard pairs[name] == nil else { throw ClientFailure("--param \(name) is given twice", status: 1) }
            pairs[name] = String(item[item.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
        }
        return pairs
    }

    static func typed(_ raw: [String: String], for file: WireFile) throws(ClientFailure) -> [String: ExprValue] {
        let definition: ProtocolDefinition
        do { definition = try ProtocolParser.parse(file.text, path: file.path) } catch {
            // The parameters cannot be typed against a protocol that does not parse: say why, as validate does.
            throw ClientFailure(error.description, status: 1)
        }
        var values: [String: ExprValue] = [:]
        for (name, text) in raw {
            guard let spec = definition.parameter(named: name) else {
                let known = definition.parameters.map(\.name).joined(separator: ", ")
                throw ClientFailure("--param \(name): \(definition.name) has no parameter '\(name)' (it has: \(known.isEmpty ? "none" : known))", status: 1)
            }
            do {
                let value: ExprValue
                switch spec.kind {
                case .choice: value = .text(text)
                case .boolean:
                    guard let b = Bool(text.lowercased()) else { throw LabError(.invalidFile, "takes true or false") }
                    value = .bool(b)
                case .real, .integer:
                    let expr = try ExpressionParser.parse(text, at: SourceLocation(file: "--param \(name)", line: 1, column: 1))
                    value = try ExprEnvironment().evaluate(expr)
                }
                // Checked for its range, its unit's dimension, its choices; a bare number is sent in the parameter's unit.
                values[name] = try spec.checked(value)
            } catch {
                throw ClientFailure("--param \(name)=\(text): \(error)", status: 1)
            }
        }
        // Every parameter without a default needs a value: said here, before anything is sent.
        do { _ = try definition.resolveParameters(values) } catch {
            throw ClientFailure("\(error); give it with --param NAME=VALUE", status: 1)
        }
        return values
    }
}

/// `--not-before`: ISO 8601 with a time zone, "HH:MM" (local, today or tomorrow if already past),
/// or "+30m" / "+2h" / "+90s" / "+1d" from now.
enum StartTime {
    static func parse(_ text: String, now: Date = Date(), calendar: Calendar = .current) -> Date? {
        if text.hasPrefix("+"), let unit = text.last, let amount = Double(text.dropFirst().dropLast()), amount >= 0 {
            let seconds: Double? = switch unit {
            case "s": 1
            case "m": 60
            case "h": 3600
            case "d": 86400
            default: nil
            }
            return seconds.map { now.addingTimeInterval(amount * $0) }
        }
        let clock = text.split(separator: ":", omittingEmptySubsequences: false)
        if clock.count == 2, clock[0].count <= 2, clock[1].count == 2, let hour = Int(clock[0]), let minute = Int(clock[1]),
           (0..<24).contains(hour), (0..<60).contains(minute) {
            guard let today = calendar.date(bySettingHour: hour, minute: minute, second: 0, of: now) else { return nil }
            return today > now ? today : calendar.date(byAdding: .day, value: 1, to: today)
        }
        return Show.date(text)
    }

    static func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }
}
