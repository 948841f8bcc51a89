public import LabCore

/// How a driver file's simulator behaves (`simulation:`): for each channel the device reports on its
/// own, where its value comes from. Channels a client writes hold what was written; a channel without
/// a behaviour reports 0. Values are in the channel's unit, times in seconds since the simulator started.
public struct DriverSimulation: Sendable, Hashable {
    public var behaviours: [ChannelBehaviour]

    public func behaviour(of channel: String) -> ChannelBehaviour? { behaviours.first { $0.channel == channel } }
}

public struct ChannelBehaviour: Sendable, Hashable {
    public enum Source: Sendable, Hashable {
        /// `value: 12.5`: always this.
        case constant(Double)
        /// `follows: setpoint, lag: 2 min`: a first-order lag (time constant `lag`, 0 = at once) toward
        /// another channel's value, from `start`.
        case follows(channel: String, lag: Double, start: Double)
        /// `script: [[0 s, 0], [10 s, 5]]`: straight lines between the points, the last value held.
        case script([ScriptPoint])
        /// `integrates: rate`: `start` plus the time integral of another channel, `perSecond` converting
        /// one of its units times one second into this channel's unit (mL/min × s → mL is 1/60).
        case integrates(channel: String, perSecond: Double, start: Double)
    }

    public struct ScriptPoint: Sendable, Hashable {
        public var time: Double
        public var value: Double

        public init(time: Double, value: Double) { self.time = time; self.value = value }
    }

    public var channel: String
    public var source: Source
    /// Standard deviation of the Gaussian noise added to each reading, in the channel's unit.
    public var noise: Double = 0
    /// `while: running`: follow or integrate only while that channel is non-zero (true); otherwise
    /// a follower heads back to `start` and an integral stands still.
    public var gate: String? = nil
}

extension DriverSpec {
    /// `simulation: { temperature: { follows: setpoint, lag: 2 min, noise: 0.05 degC, start: 25 degC } }`.
    static func parseSimulation(_ node: Node, channels: [String: ChannelSpec], source: YAMLSource) -> DriverSimulation? {
        guard let map = source.mapping(node, "simulation") else { return nil }
        var behaviours: [ChannelBehaviour] = []
        for (name, keyNode, value) in map.pairs {
            guard let channel = channels[name] else {
                source.error(keyNode, "simulation names unknown channel '\(name)'", hint: suggestion(for: name, among: channels.keys))
                continue
            }
            guard !channel.writable else {
                source.error(keyNode, "'\(name)' is written by clients; its simulator holds what was written",
                             hint: "simulate the channels the device reports on its own, e.g. one that follows '\(name)'")
                continue
            }
            if let behaviour = parseBehaviour(channel, value, channels: channels, source: source) { behaviours.append(behaviour) }
        }
        return DriverSimulation(behaviours: behaviours)
    }

    private static let behaviourHint = "use one of { value: 12.5 }, { follows: setpoint, lag: 2 min, start: 25 degC }, "
        + "{ script: [[0 s, 0], [10 s, 5]] } or { integrates: rate }"

    private static func parseBehaviour(_ channel: ChannelSpec, _ node: Node, channels: [String: ChannelSpec],
                                       source: YAMLSource) -> ChannelBehaviour? {
        guard let map = source.mapping(node, "simulation of '\(channel.name)'") else { return nil }
        // Every key a behaviour may have, read up front: a misspelt one is then matched against all of them.
        for key in ["value", "follows", "script", "integrates", "lag", "start", "while", "noise"] { _ = map.optional(key) }
        let kinds = ["value", "follows", "script", "integrates"].filter { map.keyNode($0) != nil }
        // Another channel of this file that is not this one.
        let other = { (key: String) -> String? in
            guard let node = map.optional(key), let name = source.string(node, key) else { return nil }
            guard let input = channels[name] else {
                source.error(node, "\(key) names unknown channel '\(name)'", hint: suggestion(for: name, among: channels.keys))
                return nil
            }
            guard input.name != channel.name else {
                source.error(node, "'\(channel.name)' cannot \(key == "while" ? "wait for" : key) itself")
                return nil
            }
            return name
        }
        let start = map.optional("start").flatMap { constantValue($0, for: channel, source: source)?.asDouble } ?? 0
        var behaviour: ChannelBehaviour.Source?
        switch kinds.first {
        case "value":
            behaviour = map.optional("value").flatMap { constantValue($0, for: channel, source: source)?.asDouble }.map { .constant($0) }
        case "follows":
            let lag = map.optional("lag").map { duration($0, "lag", source: source, allowingZero: true) } ?? 0
            if let input = other("follows"), let lag {
                if let unit = channels[input]?.unit, unit.dimension != channel.unit.dimension {
                    source.error(map.optional("follows"), "'\(channel.name)' is in \(channel.unit.symbol) but '\(input)' is in \(unit.symbol)",
                                 hint: "follow a channel of the same kind of quantity")
                } else {
                    behaviour = .follows(channel: input, lag: lag, start: start)
                }
            }
        case "script":
            behaviour = map.optional("script").flatMap { parseScript($0, channel, source: source) }.map { .script($0) }
        case "integrates":
            if let input = other("integrates"), let rate = channels[input]?.unit {
                if rate.dimension * .time != channel.unit.dimension || channel.unit.offset != 0 {
                    source.error(map.optional("integrates"),
                                 "'\(channel.name)' in \(channel.unit.symbol) is not the integral over time of '\(input)' in \(rate.symbol)",
                                 hint: "integrate a rate, such as a volume in mL of a flow in mL/min")
                } else {
                    behaviour = .integrates(channel: input, perSecond: rate.scale / channel.unit.scale, start: start)
                }
            }
        default:
            break
        }
        if kinds.count > 1 {
            source.error(map.keyNode(kinds[1]), "the simulation of '\(channel.name)' has both '\(kinds[0])' and '\(kinds[1])'", hint: behaviourHint)
        }
        var noise = 0.0
        if let node = map.optional("noise") {
            if channel.type == .bool { source.error(node, "'\(channel.name)' is on/off: it has no noise") }
            else if let sigma = difference(node, "noise", in: channel.unit, source: source) { noise = sigma }
        }
        let gate = other("while")
        if gate != nil, !["follows", "integrates"].contains(kinds.first) {
            source.error(map.keyNode("while"), "'while' is for a behaviour that follows or integrates")
        }
        if map.keyNode("start") != nil, !["follows", "integrates"].contains(kinds.first) {
            source.error(map.keyNode("start"), "'start' is for a behaviour that follows or integrates")
        }
        if map.keyNode("lag") != nil, kinds.first != "follows" {
            source.error(map.keyNode("lag"), "'lag' is for a behaviour that follows another channel")
        }
        // A misspelt key (`folows:`) is the likelier story than a missing behaviour: say that first.
        if !map.rejectUnknownKeys(), kinds.isEmpty {
            source.error(node, "the simulation of '\(channel.name)' says nothing about its value", hint: behaviourHint)
        }
        guard let behaviour else { return nil }
        return ChannelBehaviour(channel: channel.name, source: behaviour, noise: noise, gate: gate)
    }

    /// `[[0 s, 0], [10 s, 5 mL/min]]`: times from 0 up, never backwards; values in the channel's unit.
    private static func parseScript(_ node: Node, _ channel: ChannelSpec, source: YAMLSource) -> [ChannelBehaviour.ScriptPoint]? {
        let example = "e.g. 'script: [[0 s, 0], [10 s, 5], [20 s, 5]]'"
        guard let items = node.sequence, !items.isEmpty else {
            source.error(node, "a script is a list of [time, value] points", hint: example)
            return nil
        }
        var points: [ChannelBehaviour.ScriptPoint] = []
        for item in items {
            guard let pair = item.sequence, pair.count == 2 else {
                source.error(item, "a script point is [time, value]", hint: example)
                return nil
            }
            guard let time = duration(pair[0], "script time", source: source, allowingZero: true),
                  let value = constantValue(pair[1], for: channel, source: source)?.asDouble else { return nil }
            if let last = points.last, time < last.time {
                source.error(pair[0], "script time \(time) s comes before the point at \(last.time) s", hint: "list the points in time order")
                return nil
            }
            points.append(.init(time: time, value: value))
        }
        return points
    }

    /// A non-negative difference in `unit` (a bare number is in `unit`): `0.05 degC` on a channel in K is 0.05.
    private static func difference(_ node: Node, _ what: String, in unit: LabUnit, source: YAMLSource) -> Double? {
        guard let expr = source.expression(node, what) else { return nil }
        guard var q = try? ExprEnvironment().quantity(expr) else {
            source.error(node, "\(what) must be a number in \(unit.symbol)")
            return nil
        }
        if q.unit == .one { q.unit = unit }
        guard let value = try? q.convertedDifference(to: unit).value, value >= 0, value.isFinite else {
            source.error(node, "\(what) must be a non-negative amount of \(unit.symbol), not \(expr)")
            return nil
        }
        return value
    }
}
