import Foundation
public import LabCore
import Synchronization

/// A smooth toy chemistry behind the demo lab: a stirred reactor whose temperature follows its
/// setpoint with a first-order lag, where, while stirring, A → B (the product), A → D (a side
/// product that wins at low temperature) and B → C (degradation that wins at high temperature),
/// each with an Arrhenius rate. The yield of B has one clear optimum inside 25–120 °C × 1–30 min
/// (about 80 °C and 14 min, 42 %; see `isothermalOptimum`). A UV-vis reads B as absorbance with
/// Gaussian noise.
public final class ToyChemistry: Sendable {
    struct State {
        var time: Double
        var temperature = 25.0
        var setpoint = 25.0
        var stirring = false
        var a = 1.0, b = 0.0, c = 0.0, d = 0.0
        var lampOn = false
        var noise: SplitMix64
    }

    /// Thermal time constant of the reactor jacket, minutes.
    static let thermalLag = 1.5
    /// Absorbance per unit of product concentration; 41.2 × this = 100, so yield % = 41.2 × A.
    public static let absorptivity = 100 / 41.2
    /// The product's absorption band in a spectrum: centre and standard deviation, nm.
    public static let bandCentre = 450.0, bandWidth = 25.0
    public let noiseSD: Double
    let clock: any LabClock
    private let state: Mutex<State>

    public init(clock: any LabClock, seed: UInt64, noiseSD: Double = 0.004) {
        self.clock = clock
        self.noiseSD = noiseSD
        state = Mutex(State(time: clock.now, noise: SplitMix64(seed: seed)))
    }

    public var reactor: some DeviceModel { Reactor(chemistry: self) }
    public var spectrometer: some DeviceModel { Spectrometer(chemistry: self) }

    /// Fraction of A converted to B so far (the "true" yield, without measurement noise).
    public var productFraction: Double { withAdvancedState { $0.b } }

    /// Arrhenius rate, per minute, relative to its value at 80 °C.
    static func rate(_ atReference: Double, activation: Double, celsius: Double) -> Double {
        atReference * exp(activation / 8.314 * (1 / 353.15 - 1 / (celsius + 273.15)))
    }

    private func withAdvancedState<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        let now = clock.now
        return try state.withLock { (s) throws(E) -> T in
            Self.advance(&s, to: now)
            return try body(&s)
        }
    }

    /// Rates of A → B, A → D and B → C, per minute.
    static func rates(celsius: Double) -> (Double, Double, Double) {
        (rate(0.10, activation: 110e3, celsius: celsius), rate(0.06, activation: 0, celsius: celsius),
         rate(0.03, activation: 250e3, celsius: celsius))
    }

    /// Yield of B after `minutes` stirred at a constant temperature (the closed-form solution).
    public static func isothermalYield(celsius: Double, minutes: Double) -> Double {
        let (k1, k3, k2) = rates(celsius: celsius)
        let k = k1 + k3
        return k1 / (k2 - k) * (exp(-k * minutes) - exp(-k2 * minutes))
    }

    /// The best isothermal yield inside 25–120 °C × 1–30 min, found on a fine grid: what a perfect
    /// planner could reach, for the demo's summary.
    public static var isothermalOptimum: (celsius: Double, minutes: Double, yield: Double) {
        var best = (celsius: 25.0, minutes: 1.0, yield: 0.0)
        for i in 0...950 {
            for j in 0...290 {
                let (t, m) = (25 + Double(i) * 0.1, 1 + Double(j) * 0.1)
                let y = isothermalYield(celsius: t, minutes: m)
                if y > best.yield { best = (t, m, y) }
            }
        }
        return best
    }

    /// Integrates temperature and kinetics in steps of at most 0.6 s of simulated time.
    static func advance(_ s: inout State, to now: Double) {
        var remaining = (now - s.time) / 60
        s.time = now
        while remaining > 0 {
            let h = min(remaining, 0.01)
            remaining -= h
            s.temperature = s.setpoint + (s.temperature - s.setpoint) * exp(-h / thermalLag)
            guard s.stirring else { continue }
            let (k1, k3, k2) = rates(celsius: s.temperature)
            let (da, db) = ((k1 + k3) * s.a * h, (k1 * s.a - k2 * s.b) * h)
            s.c += k2 * s.b * h
            s.d += k3 * s.a * h
            s.a -= da
            s.b += db
        }
    }

    struct Reactor: DeviceModel {
        let chemistry: ToyChemistry

        func value(of channel: String) throws -> Double {
            chemistry.withAdvancedState { s in channel == "temperature" ? s.temperature : s.setpoint }
        }

        func didWrite(_ channel: String, _ value: Double) {
            chemistry.withAdvancedState { s in
                switch channel {
                case "setpoint": s.setpoint = value
                case "stirrer":
                    let start = value != 0
                    // Switching the stirrer on charges a fresh batch of A.
                    if start && !s.stirring { (s.a, s.b, s.c, s.d) = (1, 0, 0, 0) }
                    s.stirring = start
                default: break
                }
            }
        }
    }

    struct LampOff: Error, CustomStringConvertible {
        var description: String { "lamp off" }
    }

    struct Spectrometer: DeviceModel {
        let chemistry: ToyChemistry

        func value(of channel: String) throws -> Double {
            try chemistry.withAdvancedState { s in
                switch channel {
                case "lamp": return s.lampOn ? 1 : 0
                default:
                    guard s.lampOn else { throw LampOff() }
                    return ToyChemistry.absorptivity * s.b + chemistry.noiseSD * s.noise.nextGaussian()
                }
            }
        }

        /// A spectrum: one absorption band of B (centred at `bandCentre` nm) whose height is the
        /// absorbance, plus noise of the same spread on every point.
        func values(of channel: String, along positions: [Double]) throws -> [Double] {
            let (height, seed) = try chemistry.withAdvancedState { s in
                guard s.lampOn else { throw LampOff() }
                return (ToyChemistry.absorptivity * s.b, s.noise.next())
            }
            // Uniform noise with the Gaussian's spread: a spectrum of thousands of points a reading
            // must not cost more than storing it.
            var noise = SplitMix64(seed: seed)
            let spread = chemistry.noiseSD * 3.0.squareRoot() * 2
            let width = 2 * ToyChemistry.bandWidth * ToyChemistry.bandWidth
            return positions.map { x in
                let d = x - ToyChemistry.bandCentre
                return height * exp(-d * d / width) + spread * (noise.nextUnit() - 0.5)
            }
        }

        func didWrite(_ channel: String, _ value: Double) {
            if channel == "lamp" { chemistry.withAdvancedState { $0.lampOn = value != 0 } }
        }
    }
}
