import Foundation
public import LabCore
public import LabSpec
import Synchronization

/// A device that behaves as its driver file's `simulation:` block says: written channels hold what
/// was written, followers lag toward their channel, integrals add up, scripts play from the moment
/// the model was made. Time comes from the lab clock, noise from a seeded generator: the same seed
/// and the same requests at the same simulated times give the same readings.
public final class DeclaredModel: DeviceModel {
    struct State {
        /// Last written value of each writable channel.
        var written: [String: Double] = [:]
        /// Where each follower and integral stood at `time`.
        var levels: [String: Double]
        var time: Double
        var noise: SplitMix64
    }

    private let spec: DriverSpec
    private let behaviours: [ChannelBehaviour]
    private let clock: any LabClock
    private let started: Double
    private let state: Mutex<State>

    /// `seed` is the lab's `simulation.seed`; `stream` tells two instruments of one driver apart.
    public init(spec: DriverSpec, clock: any LabClock, seed: UInt64, stream: String = "") {
        self.spec = spec
        self.behaviours = spec.simulation?.behaviours ?? []
        self.clock = clock
        let now = clock.now
        started = now
        var levels: [String: Double] = [:]
        for behaviour in behaviours {
            switch behaviour.source {
            case .follows(_, _, let start), .integrates(_, _, let start): levels[behaviour.channel] = start
            case .constant, .script: break
            }
        }
        state = Mutex(State(levels: levels, time: now, noise: SplitMix64(seed: seed, stream: Self.hash(stream))))
    }

    public func value(of channel: String) throws -> Double {
        let now = clock.now
        return state.withLock { s in
            advance(&s, to: now)
            let value = level(channel, in: s, at: now)
            guard let sigma = behaviours.first(where: { $0.channel == channel })?.noise, sigma > 0 else { return value }
            return value + sigma * s.noise.nextGaussian()
        }
    }

    public func didWrite(_ channel: String, _ value: Double) {
        let now = clock.now
        state.withLock { s in
            advance(&s, to: now)
            s.written[channel] = value
        }
    }

    /// A channel's value without noise: what was written, where its behaviour has it, or 0. A
    /// follower without lag is its input at once (`depth` stops two such followers of each other).
    private func level(_ channel: String, in s: State, at now: Double, depth: Int = 0) -> Double {
        if let written = s.written[channel] { return written }
        let behaviour = behaviours.first { $0.channel == channel }
        switch behaviour?.source {
        case .constant(let value)?: return value
        case .script(let points)?: return Self.play(points, at: now - started)
        case .follows(let input, 0, let start)? where depth < 8:
            let on = behaviour?.gate.map { level($0, in: s, at: now, depth: depth + 1) != 0 } ?? true
            return on ? level(input, in: s, at: now, depth: depth + 1) : start
        default: return s.levels[channel] ?? 0
        }
    }

    /// Moves every follower and integral from `s.time` to `now`. Every write advances first, so
    /// between two events a written input is constant and the step is exact: a follower's
    /// exponential, an integral of a follower's exponential or of a script's straight line (within
    /// one segment). Whatever else an input does between two reads is taken at its start.
    private func advance(_ s: inout State, to now: Double) {
        let dt = now - s.time
        guard dt > 0 else { return }
        let before = s
        for behaviour in behaviours {
            let current = before.levels[behaviour.channel] ?? 0
            switch behaviour.source {
            case .follows(_, let lag, _):
                let target = target(of: behaviour, in: before)
                s.levels[behaviour.channel] = lag == 0 ? target : target + (current - target) * exp(-dt / lag)
            case .integrates(let input, let perSecond, _) where isOn(behaviour, in: before):
                s.levels[behaviour.channel] = current + mean(of: input, in: before, over: dt) * perSecond * dt
            case .integrates, .constant, .script:
                break
            }
        }
        s.time = now
    }

    private func isOn(_ behaviour: ChannelBehaviour, in s: State) -> Bool {
        behaviour.gate.map { level($0, in: s, at: s.time) != 0 } ?? true
    }

    /// Where a follower is heading: its input while its gate is on, its start otherwise.
    private func target(of behaviour: ChannelBehaviour, in s: State) -> Double {
        guard case .follows(let input, _, let start) = behaviour.source else { return 0 }
        return isOn(behaviour, in: s) ? level(input, in: s, at: s.time) : start
    }

    /// The mean of a channel over the `dt` seconds after `s.time`.
    private func mean(of channel: String, in s: State, over dt: Double) -> Double {
        guard s.written[channel] == nil, let behaviour = behaviours.first(where: { $0.channel == channel }) else {
            return level(channel, in: s, at: s.time)
        }
        switch behaviour.source {
        case .follows(_, let lag, _) where lag > 0:
            let target = target(of: behaviour, in: s), current = s.levels[channel] ?? 0
            return target + (current - target) * lag / dt * (1 - exp(-dt / lag))
        case .script(let points):
            return (Self.play(points, at: s.time - started) + Self.play(points, at: s.time + dt - started)) / 2
        default:
            return level(channel, in: s, at: s.time)
        }
    }

    /// The script's value `t` seconds after the start: straight lines between points, the ends held.
    static func play(_ points: [ChannelBehaviour.ScriptPoint], at t: Double) -> Double {
        guard let first = points.first, t > first.time else { return points.first?.value ?? 0 }
        for (a, b) in zip(points, points.dropFirst()) where t <= b.time {
            return b.time == a.time ? b.value : a.value + (b.value - a.value) * (t - a.time) / (b.time - a.time)
        }
        return points.last!.value
    }

    /// FNV-1a: stable across runs and machines (Swift's `hashValue` is seeded per process).
    private static func hash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}
