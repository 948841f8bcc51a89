/// Numbers and strings in Modbus registers, encoded in Swift because Debian's libmodbus 3.1.6 float
/// setters are wrong. A value's big-endian bytes A B C D … are cut into 16-bit registers; the order
/// names say what goes on the wire. For two registers: ABCD → [AB, CD], CDAB → [CD, AB],
/// BADC → [BA, DC], DCBA → [DC, BA]. In general a C first means the registers travel low word
/// first, a B before an A that the two bytes in each register are swapped; a 64-bit value follows
/// the same rule over four registers, a 16-bit one only the byte swap, a string only the byte swap.
public enum ModbusFloat {
    public enum Order: String, Sendable, CaseIterable {
        case abcd = "ABCD", cdab = "CDAB", badc = "BADC", dcba = "DCBA"
        var lowWordFirst: Bool { self == .cdab || self == .dcba }
        var bytesSwapped: Bool { self == .badc || self == .dcba }
    }

    /// The numeric types a register channel can have.
    public enum Number: String, Sendable, CaseIterable {
        case int16, uint16, int32, uint32, float32, float64

        public var registerCount: Int {
            switch self {
            case .int16, .uint16: 1
            case .int32, .uint32, .float32: 2
            case .float64: 4
            }
        }

        public var isInteger: Bool { self != .float32 && self != .float64 }

        /// Every value the register can hold lies in this range.
        public var representable: ClosedRange<Double> {
            switch self {
            case .int16: -32768...32767
            case .uint16: 0...65535
            case .int32: -2147483648...2147483647
            case .uint32: 0...4294967295
            case .float32: -Double(Float.greatestFiniteMagnitude)...Double(Float.greatestFiniteMagnitude)
            case .float64: -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
            }
        }
    }

    public static func encode(_ value: Float, _ order: Order) -> [UInt16] { encode(Double(value), as: .float32, order) }

    public static func decode(_ registers: [UInt16], _ order: Order) -> Float {
        precondition(registers.count == 2, "a float32 spans two registers")
        return Float(decode(registers, as: .float32, order))
    }

    /// The registers holding `value`, which the caller has checked the type can hold (an integer
    /// type takes it rounded to the nearest integer).
    public static func encode(_ value: Double, as type: Number, _ order: Order) -> [UInt16] {
        // Saturated, so that a simulator's model value out of range cannot trap (a write was checked).
        let whole = value.isNaN ? 0 : min(max(value.rounded(), type.representable.lowerBound), type.representable.upperBound)
        let bits: UInt64 = switch type {
        case .int16: UInt64(UInt16(bitPattern: Int16(whole)))
        case .uint16: UInt64(UInt16(whole))
        case .int32: UInt64(UInt32(bitPattern: Int32(whole)))
        case .uint32: UInt64(UInt32(whole))
        case .float32: UInt64(Float(value).bitPattern)
        case .float64: value.bitPattern
        }
        let count = 2 * type.registerCount
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: bits >> (8 * (count - 1 - $0))) }
        return registers(bigEndian: bytes, order, words: true)
    }

    public static func decode(_ registers: [UInt16], as type: Number, _ order: Order) -> Double {
        precondition(registers.count == type.registerCount, "a \(type.rawValue) spans \(type.registerCount) register(s)")
        let bits = bytes(registers, order, words: true).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return switch type {
        case .int16: Double(Int16(truncatingIfNeeded: bits))
        case .uint16: Double(UInt16(truncatingIfNeeded: bits))
        case .int32: Double(Int32(truncatingIfNeeded: bits))
        case .uint32: Double(UInt32(truncatingIfNeeded: bits))
        case .float32: Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .float64: Double(bitPattern: bits)
        }
    }

    /// A string of ASCII (or UTF-8) in `count` registers, two characters each, padded with NULs.
    /// Nil when it does not fit.
    public static func encode(string: String, registers count: Int, _ order: Order) -> [UInt16]? {
        let utf8 = Array(string.utf8)
        guard utf8.count <= 2 * count else { return nil }
        return registers(bigEndian: utf8 + Array(repeating: 0, count: 2 * count - utf8.count), order, words: false)
    }

    /// The text in the registers, up to the first NUL, without trailing spaces (devices pad either way).
    public static func decodeString(_ registers: [UInt16], _ order: Order) -> String {
        var raw = Array(bytes(registers, order, words: false).prefix { $0 != 0 })
        while raw.last == UInt8(ascii: " ") { raw.removeLast() }
        return String(decoding: raw, as: UTF8.self)
    }

    private static func registers(bigEndian bytes: [UInt8], _ order: Order, words: Bool) -> [UInt16] {
        let registers = stride(from: 0, to: bytes.count, by: 2).map { (i: Int) -> UInt16 in
            let (high, low) = order.bytesSwapped ? (bytes[i + 1], bytes[i]) : (bytes[i], bytes[i + 1])
            return UInt16(high) << 8 | UInt16(low)
        }
        return words && order.lowWordFirst ? registers.reversed() : registers
    }

    private static func bytes(_ registers: [UInt16], _ order: Order, words: Bool) -> [UInt8] {
        let inOrder = words && order.lowWordFirst ? registers.reversed() : registers
        return inOrder.flatMap { (r: UInt16) -> [UInt8] in
            let high = UInt8(r >> 8), low = UInt8(r & 0xFF)
            return order.bytesSwapped ? [low, high] : [high, low]
        }
    }
}
