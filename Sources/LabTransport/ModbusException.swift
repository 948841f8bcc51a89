/// What a Modbus exception reply means, in words a person can act on. One table for the TCP and
/// the RTU client, so a refusal reads the same whichever line the device is on.
public enum ModbusException {
    public static func message(_ code: UInt8) -> String {
        let (name, advice): (String, String) = switch code {
        case 1: ("illegal function", "the device does not support this request; check the table (holding, input, coil, discrete) in the driver file")
        case 2: ("illegal data address", "the device has no such register; check the address in the driver file (0-based) and the register count of its type")
        case 3: ("illegal data value", "the device refused the value or the register count; check the type, scale and limits in the driver file")
        case 4: ("server device failure", "the device failed while handling the request; check the device itself")
        case 5: ("acknowledge", "the device accepted the request but needs longer to carry it out; read it again later")
        case 6: ("server device busy", "the device is busy with a long command; try again later")
        case 7: ("negative acknowledge", "the device cannot carry out this request now; check its mode or its manual")
        case 8: ("memory parity error", "the device found its own memory corrupt; it needs service")
        case 10: ("gateway path unavailable", "the gateway has no route to this unit; check the gateway's configuration")
        case 11: ("gateway target device failed to respond", "the gateway got no answer from the unit; check the unit id, wiring and power of the device behind it")
        default: ("unknown exception", "the device gave a code the Modbus standard does not define; see its manual")
        }
        return "device answered exception \(code) (\(name)): \(advice)"
    }
}
