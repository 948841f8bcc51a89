import Foundation
public import LabCore
import Synchronization

/// A toy beaker on a balance, fed by a syringe pump and watched by a pH meter: 20 mL of 0.1 M acid
/// titrated with 0.1 M base (equivalence at 20 mL dispensed). Behind the example protocols.
public final class ToyBench: Sendable {
    struct State {
        var dispensed = 0.0          // mL
        var tareOffset = 0.0         // g
        var noise: SplitMix64
    }

    static let beakerMass = 52.3     // g, glass and acid
    private let state: Mutex<State>

    public init(seed: UInt64) { state = Mutex(State(noise: SplitMix64(seed: seed ^ 0xBEEF))) }

    public var pump: some DeviceModel { Pump(bench: self) }
    public var balance: some DeviceModel { Balance(bench: self) }
    public var phMeter: some DeviceModel { PHMeter(bench: self) }

    /// pH after `v` mL of 0.1 M NaOH into 20 mL of 0.1 M HCl (strong acid, strong base).
    public static func ph(afterDispensing v: Double) -> Double {
        let acid = 0.1 * 20, base = 0.1 * v, volume = 20 + v   // mmol, mmol, mL
        let excess = (acid - base) / volume                     // mol/L of H+ (or OH- if negative)
        if abs(excess) < 1e-7 { return 7 }
        return excess > 0 ? -log10(excess) : 14 + log10(-excess)
    }

    struct Pump: DeviceModel {
        let bench: ToyBench
        func value(of channel: String) throws -> Double { bench.state.withLock { $0.dispensed } }
        func didWrite(_ channel: String, _ value: Double) {
            if channel == "dispense" { bench.state.withLock { $0.dispensed += value } }
        }
    }

    struct Balance: DeviceModel {
        let bench: ToyBench
        func value(of channel: String) throws -> Double {
            bench.state.withLock { s in ToyBench.beakerMass + s.dispensed * 1.004 - s.tareOffset + 0.0005 * s.noise.nextGaussian() }
        }
        func didWrite(_ channel: String, _ value: Double) {
            if channel == "tare", value != 0 { bench.state.withLock { $0.tareOffset = ToyBench.beakerMass + $0.dispensed * 1.004 } }
        }
    }

    struct PHMeter: DeviceModel {
        let bench: ToyBench
        func value(of channel: String) throws -> Double {
            bench.state.withLock { s in ToyBench.ph(afterDispensing: s.dispensed) + 0.01 * s.noise.nextGaussian() }
        }
        func didWrite(_ channel: String, _ value: Double) {}
    }
}
