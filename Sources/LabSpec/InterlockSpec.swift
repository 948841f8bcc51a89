import Foundation
public import LabCore

/// One interlock (or suspender) of a lab: a condition on a channel that, while it holds, pauses the
/// runs on the instruments it stops and commands their safe states. Every interlock latches: what it
/// raised stays raised until a person acknowledges it after the condition has cleared.
public struct InterlockSpec: Sendable, Hashable {
    /// When the interlock is asserted. Thresholds are in the channel's unit (converted once, at load).
    public enum Condition: Sendable, Hashable {
        case above(Double)
        case below(Double)
        /// Asserted outside the band; the band's ends themselves are fine.
        case outside(ClosedRange<Double>)
        /// A digital input: asserted while the channel reads this value.
        case equals(Bool)
    }

    public var name: String
    public var instrument: String
    public var channel: String
    /// The channel's unit, in which the condition's thresholds and the readings are.
    public var unit: LabUnit
    public var condition: Condition
    /// The lab instruments whose runs pause and which go to their safe state (every one of the lab's
    /// when the config names none), sorted.
    public var stops: [String]
    /// How often the channel is read, in wall-clock seconds (never scaled by a simulation's speed).
    public var everySeconds: Double
    public var location: SourceLocation

    public init(name: String, instrument: String, channel: String, unit: LabUnit, condition: Condition,
                stops: [String], everySeconds: Double = 1, location: SourceLocation) {
        self.name = name; self.instrument = instrument; self.channel = channel; self.unit = unit
        self.condition = condition; self.stops = stops; self.everySeconds = everySeconds; self.location = location
    }

    public var ref: ChannelRef { ChannelRef(instrument: instrument, channel: channel) }

    /// Whether `value` asserts the interlock, and a sentence saying what was read against what:
    /// "reactor.temperature read 141.2 degC, above 140 degC". A NaN reading asserts it: a value
    /// that cannot be compared is not known to be safe.
    public func evaluate(_ value: Value) -> (asserted: Bool, detail: String) {
        let read = "\(ref) read \(format(value))"
        let x = value.asDouble
        switch condition {
        case .equals(let bad):
            return ((x != 0) == bad, read)
        case _ where x.isNaN:
            return (true, "\(read), not a number")
        case .above(let limit):
            return x > limit ? (true, "\(read), above \(format(limit))") : (false, "\(read), not above \(format(limit))")
        case .below(let limit):
            return x < limit ? (true, "\(read), below \(format(limit))") : (false, "\(read), not below \(format(limit))")
        case .outside(let band):
            let range = "[\(format(band.lowerBound)), \(format(band.upperBound))]"
            return band.contains(x) ? (false, "\(read), within \(range)") : (true, "\(read), outside \(range)")
        }
    }

    /// What the interlock watches for, as the config says it: "above 140 degC".
    public var conditionDescription: String {
        switch condition {
        case .above(let limit): "above \(format(limit))"
        case .below(let limit): "below \(format(limit))"
        case .outside(let band): "outside [\(format(band.lowerBound)), \(format(band.upperBound))]"
        case .equals(let bad): "is \(bad)"
        }
    }

    private func format(_ value: Value) -> String {
        switch value {
        case .bool(let b): "\(b)"
        case .real(let x): format(x)
        }
    }

    private func format(_ x: Double) -> String {
        let number = String(format: "%g", x)
        return unit == .one ? number : "\(number) \(unit.symbol)"
    }
}

extension InterlockSpec {
    static let conditionKeys = ["above", "below", "outside", "is"]

    /// Reads `interlocks:` of a lab config. Every problem becomes a diagnostic; an interlock with one
    /// is left out (the config then fails to load as a whole).
    static func parse(_ node: Node, instruments: [String: LabConfig.Binding], failedInstruments: Set<String>,
                      source: YAMLSource) -> [InterlockSpec] {
        guard let map = source.mapping(node, "interlocks") else { return [] }
        return map.pairs.compactMap { name, _, value in
            parse(name, value, instruments: instruments, failedInstruments: failedInstruments, source: source)
        }
    }

    private static func parse(_ name: String, _ node: Node, instruments: [String: LabConfig.Binding],
                              failedInstruments: Set<String>, source: YAMLSource) -> InterlockSpec? {
        let what = "interlock '\(name)'"
        guard let map = source.mapping(node, what) else { return nil }
        var ok = true
        var channel: ChannelSpec?, instrument: String?
        if let node = map.required("channel", hint: "the channel it watches, as in 'channel: reactor.temperature'"),
           let ref = source.channelRef(node, "channel") {
            instrument = ref.instrument
            if let binding = instruments[ref.instrument] {
                channel = binding.driver.channel(ref.channel)
                if channel == nil {
                    source.error(node, "instrument '\(ref.instrument)' (driver '\(binding.driver.name)') has no channel '\(ref.channel)'",
                                 hint: suggestion(for: ref.channel, among: binding.driver.channels.keys))
                } else if channel?.readable == false {
                    source.error(node, "'\(ref)' cannot be read, so it cannot be watched", hint: "watch a channel the driver file lets you read")
                    channel = nil
                } else if channel?.array != nil || channel?.isText == true {
                    source.error(node, "'\(ref)' is \(channel?.isText == true ? "a string" : "an array") channel; an interlock watches a single number")
                    channel = nil
                }
            } else if !failedInstruments.contains(ref.instrument) {
                source.error(node, "the lab has no instrument '\(ref.instrument)'",
                             hint: suggestion(for: ref.instrument, among: instruments.keys) ?? "name one under 'instruments:'")
            }
        }
        if channel == nil { ok = false }

        let given = conditionKeys.filter { map.optional($0) != nil }
        var condition: Condition?
        if given.isEmpty {
            source.error(node, "\(what) has no condition",
                         hint: "add one of 'above: 140 degC', 'below: 5 degC', 'outside: [0.8 bar, 3 bar]' or, for a digital input, 'is: false'")
            ok = false
        } else if given.count > 1 {
            source.error(map.keyNode(given[1]), "\(what) has both '\(given[0])' and '\(given[1])'; give one condition",
                         hint: given.contains("outside") || given.contains("is") ? "make two interlocks" : "for a band use 'outside: [low, high]'")
            ok = false
        } else if let channel, let key = given.first, let value = map.optional(key) {
            condition = parseCondition(key, value, channel: channel, ref: "\(instrument ?? "").\(channel.name)", source: source)
            if condition == nil { ok = false }
        }

        var stops = instruments.keys.sorted()
        if let node = map.optional("stops") {
            let items = node.sequence ?? (node.scalar != nil ? [node] : nil)
            if items == nil {
                source.error(node, "stops must be a list of instruments, as in 'stops: [reactor, pump]'")
                ok = false
            } else if let items, items.isEmpty {
                source.error(node, "\(what) stops nothing", hint: "name the instruments it stops, or leave 'stops:' out to stop every instrument")
                ok = false
            } else if let items {
                stops = []
                for item in items {
                    guard let name = source.string(item, "an instrument in stops") else { ok = false; continue }
                    if instruments[name] == nil && !failedInstruments.contains(name) {
                        source.error(item, "the lab has no instrument '\(name)'",
                                     hint: suggestion(for: name, among: instruments.keys) ?? "name one under 'instruments:'")
                        ok = false
                    }
                    if !stops.contains(name) { stops.append(name) }
                }
                stops.sort()
            }
        }

        var every = 1.0
        if let node = map.optional("every") {
            if let seconds = duration(node, source: source) { every = seconds } else { ok = false }
        }
        if map.rejectUnknownKeys() { ok = false }
        guard ok, let channel, let instrument, let condition else { return nil }
        return InterlockSpec(name: name, instrument: instrument, channel: channel.name, unit: channel.unit, condition: condition,
                             stops: stops, everySeconds: every, location: source.location(node))
    }

    private static func parseCondition(_ key: String, _ node: Node, channel: ChannelSpec, ref: String,
                                       source: YAMLSource) -> Condition? {
        let isBool = channel.type == .bool
        if key == "is" {
            guard isBool else {
                source.error(node, "'is:' is for a digital (bool) channel; '\(ref)' is a \(channel.type.rawValue) in \(channel.unit)",
                             hint: "use 'above:', 'below:' or 'outside: [low, high]'")
                return nil
            }
            return source.bool(node, "is").map(Condition.equals)
        }
        guard !isBool else {
            source.error(node, "'\(key):' compares numbers; '\(ref)' is a digital (bool) channel",
                         hint: "use 'is: true' or 'is: false': the value that asserts the interlock")
            return nil
        }
        if key == "outside" {
            guard let items = node.sequence, items.count == 2 else {
                source.error(node, "outside must be a band [low, high], as in 'outside: [0.8 bar, 3 bar]'")
                return nil
            }
            guard let low = threshold(items[0], channel: channel, ref: ref, source: source),
                  let high = threshold(items[1], channel: channel, ref: ref, source: source) else { return nil }
            guard low < high else {
                source.error(node, "the band's low end \(low) \(channel.unit) is not below its high end \(high) \(channel.unit)",
                             hint: "write it as [low, high]")
                return nil
            }
            return .outside(low...high)
        }
        guard let limit = threshold(node, channel: channel, ref: ref, source: source) else { return nil }
        return key == "above" ? .above(limit) : .below(limit)
    }

    /// A threshold in the channel's unit. A bare number is taken only on a dimensionless channel: on a
    /// safety limit, a guessed unit is worse than an error.
    private static func threshold(_ node: Node, channel: ChannelSpec, ref: String, source: YAMLSource) -> Double? {
        guard let expr = source.expression(node, "threshold") else { return nil }
        do {
            let q = try ExprEnvironment().quantity(expr)
            if q.unit == .one && channel.unit != .one {
                source.error(node, "a threshold on '\(ref)' needs its unit", hint: "write it as in '\(q.value) \(channel.unit)'")
                return nil
            }
            return try q.converted(to: channel.unit).value
        } catch {
            source.error(node, "\(error.message) ('\(ref)' is in \(channel.unit))")
            return nil
        }
    }

    private static func duration(_ node: Node, source: YAMLSource) -> Double? {
        guard let expr = source.expression(node, "every") else { return nil }
        guard let q = try? ExprEnvironment().quantity(expr), let seconds = q.seconds else {
            source.error(node, "every must be a duration", hint: "as in 'every: 0.5 s'")
            return nil
        }
        guard seconds > 0 else {
            source.error(node, "every must be a positive duration", hint: "as in 'every: 0.5 s'")
            return nil
        }
        return seconds
    }
}
