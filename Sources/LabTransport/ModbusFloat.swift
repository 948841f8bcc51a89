/// 32-bit floats in two Modbus registers, in Swift because Debian's libmodbus 3.1.6 float setters
/// are wrong. With the float's big-endian bytes A B C D, the word orders put on the wire:
/// ABCD → [AB, CD], CDAB → [CD, AB], BADC → [BA, DC], DCBA → [DC, BA].
public enum ModbusFloat {
    public enum Order: String, Sendable, CaseIterable { case abcd = "ABCD", cdab = "CDAB", badc = "BADC", dcba = "DCBA" }

    public static func encode(_ value: Float, _ order: Order) -> [UInt16] {
        let bits = value.bitPattern
        let a = UInt16(bits >> 24 & 0xFF), b = UInt16(bits >> 16 & 0xFF)
        let c = UInt16(bits >> 8 & 0xFF), d = UInt16(bits & 0xFF)
        switch order {
        case .abcd: return [a << 8 | b, c << 8 | d]
        case .cdab: return [c << 8 | d, a << 8 | b]
        case .badc: return [b << 8 | a, d << 8 | c]
        case .dcba: return [d << 8 | c, b << 8 | a]
        }
    }

    public static func decode(_ registers: [UInt16], _ order: Order) -> Float {
        precondition(registers.count == 2, "a float32 spans two registers")
        let (r0, r1) = (UInt32(registers[0]), UInt32(registers[1]))
        let hi = { (r: UInt32) in r >> 8 }, lo = { (r: UInt32) in r & 0xFF }
        let (a, b, c, d): (UInt32, UInt32, UInt32, UInt32) = switch order {
        case .abcd: (hi(r0), lo(r0), hi(r1), lo(r1))
        case .cdab: (hi(r1), lo(r1), hi(r0), lo(r0))
        case .badc: (lo(r0), hi(r0), lo(r1), hi(r1))
        case .dcba: (lo(r1), hi(r1), lo(r0), hi(r0))
        }
        return Float(bitPattern: a << 24 | b << 16 | c << 8 | d)
    }
}
