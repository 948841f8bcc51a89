import Synchronization

/// The dosing balance of examples/plugins/balance.py for `serendip simulate`, which cannot run the
/// plugin on its virtual clock: with the valve open, the balance holds its target at once.
final class DosingBalanceModel: DeviceModel {
    private let state = Mutex((target: 0.0, dosing: false, mass: 0.0))

    func value(of channel: String) throws -> Double {
        state.withLock { s in
            if s.dosing { s.mass = max(s.mass, s.target) }
            return s.mass
        }
    }

    func didWrite(_ channel: String, _ value: Double) {
        state.withLock { s in
            if channel == "target" { s.target = value }
            if channel == "dosing" { s.dosing = value != 0 }
        }
    }
}
