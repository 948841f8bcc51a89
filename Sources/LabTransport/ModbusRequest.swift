/// One Modbus request as a PDU (function code and data), what its reply must look like, and how
/// often a read may be repeated (`nil`: never, as for every write). Shared by TCP and RTU, which
/// differ only in how a PDU is framed.
struct ModbusRequest: Sendable {
    enum Reply: Sendable { case counted(Int), echo([UInt8]) }
    var pdu: [UInt8]
    var reply: Reply
    var retries: Int?

    init(read table: ModbusTable, address: UInt16, count: Int, retries: Int) {
        let function: UInt8 = switch table { case .coil: 0x01; case .discreteInput: 0x02; case .holding: 0x03; case .input: 0x04 }
        pdu = [function] + address.bigEndianBytes + UInt16(count).bigEndianBytes
        reply = .counted(function <= 0x02 ? (count + 7) / 8 : 2 * count)
        self.retries = retries
    }

    init(writing values: [UInt16], at address: UInt16) {
        let header = address.bigEndianBytes + UInt16(values.count).bigEndianBytes
        pdu = [0x10] + header + [UInt8(2 * values.count)] + values.flatMap(\.bigEndianBytes)
        reply = .echo(header)
    }

    init(writing bit: Bool, at address: UInt16) {
        let body = address.bigEndianBytes + (bit ? [0xFF, 0x00] : [0x00, 0x00])
        pdu = [0x05] + body
        reply = .echo(body)
    }

    init(_ write: ModbusSession.Write) {
        switch write.target {
        case .registers(let address, let values): self.init(writing: values, at: address)
        case .coil(let address, let bit): self.init(writing: bit, at: address)
        }
    }

    enum Verdict { case data([UInt8]), exception(UInt8), mismatch(String) }

    /// What a reply's PDU says: the data after its function code, if it answers this request.
    func judge(_ reply: ArraySlice<UInt8>) -> Verdict {
        let function = pdu[0]
        guard let answered = reply.first else { return .mismatch("an empty reply") }
        if answered == function | 0x80, reply.count == 2 { return .exception(reply[reply.startIndex + 1]) }
        let data = Array(reply.dropFirst())
        let fits = switch self.reply {
        case .counted(let bytes): data.count == 1 + bytes && Int(data[0]) == bytes
        case .echo(let echo): data == echo
        }
        guard answered == function, fits else { return .mismatch("function \(answered) with \(data.count) byte(s) for function \(function)") }
        return .data(data)
    }

    static func registers(_ data: [UInt8]) -> [UInt16] {
        (0..<(data.count - 1) / 2).map { UInt16(data[1 + 2 * $0]) << 8 | UInt16(data[2 + 2 * $0]) }
    }

    static func bits(_ data: [UInt8], count: Int) -> [Bool] {
        (0..<count).map { (i: Int) -> Bool in (data[1 + i / 8] >> UInt8(i % 8)) & 1 != 0 }
    }

    /// Names the request in an error: `read 10 register(s) at 100`.
    var what: String {
        let address = Int(pdu[1]) << 8 | Int(pdu[2]), count = Int(pdu[3]) << 8 | Int(pdu[4])
        return switch pdu[0] {
        case 0x01, 0x02: "read \(count) bit(s) at \(address)"
        case 0x03, 0x04: "read \(count) register(s) at \(address)"
        case 0x05: "write coil \(address)"
        default: "write \(count) register(s) at \(address)"
        }
    }
}

extension UInt16 {
    /// As Modbus sends every 16-bit field.
    var bigEndianBytes: [UInt8] { [UInt8(self >> 8), UInt8(self & 0xFF)] }
}
