/// How a serial line frames and paces its bytes: what both ends must agree on. A driver file gives
/// its device's settings (`serial: { baud: 9600, data_bits: 7, parity: E }`); a lab config may
/// override them for one instrument, because many devices let the user change them.
public struct SerialLineSettings: Sendable, Hashable {
    public enum Parity: String, Sendable, Hashable, CaseIterable { case none = "N", even = "E", odd = "O" }
    public enum FlowControl: String, Sendable, Hashable, CaseIterable { case none, rtscts, xonxoff }

    public var baud: Int
    public var dataBits: Int
    public var parity: Parity
    public var stopBits: Int
    public var flowControl: FlowControl

    public init(baud: Int = 9600, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1, flowControl: FlowControl = .none) {
        self.baud = baud; self.dataBits = dataBits; self.parity = parity; self.stopBits = stopBits; self.flowControl = flowControl
    }

    /// The keys of the settings, as driver files, lab configs and address queries spell them.
    public static let keys = ["baud", "data_bits", "parity", "stop_bits", "flow_control"]

    /// The rates Linux termios can set (its B* constants). Any other rate is refused when the file is
    /// read, rather than opened at some other speed.
    public static let supportedBauds = [50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
                                        38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000,
                                        1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000]

    /// Sets `key` from its text; what is wrong with it otherwise, with the values it may take.
    public mutating func set(_ key: String, _ text: String) -> (problem: String, hint: String)? {
        switch key {
        case "baud":
            // Any bad value gets the list of rates: a range like "1 to 9223372036854775807" helps nobody.
            guard let rate = Int(text), Self.supportedBauds.contains(rate) else {
                return ("baud \(text) is not a rate a serial line can be set to",
                        "use one of " + Self.supportedBauds.map(String.init).joined(separator: ", "))
            }
            baud = rate
        case "data_bits":
            guard let bits = Int(text), (5...8).contains(bits) else { return ("data_bits \(text) is not 5, 6, 7 or 8", "most devices use 8; some 7 with parity E") }
            dataBits = bits
        case "parity":
            guard let value = Parity(rawValue: text) else { return ("unknown parity '\(text)'", "use N (none), E (even) or O (odd)") }
            parity = value
        case "stop_bits":
            guard let bits = Int(text), (1...2).contains(bits) else { return ("stop_bits \(text) is not 1 or 2", "use 1 or 2") }
            stopBits = bits
        case "flow_control":
            guard let value = FlowControl(rawValue: text) else {
                return ("unknown flow_control '\(text)'", "use none, rtscts (hardware handshake) or xonxoff (software)")
            }
            flowControl = value
        default:
            return ("unknown setting '\(key)'", "use " + Self.keys.joined(separator: ", "))
        }
        return nil
    }

    /// `baud=9600&data_bits=8&parity=N&stop_bits=1&flow_control=none`, the query of an address.
    public var query: String {
        "baud=\(baud)&data_bits=\(dataBits)&parity=\(parity.rawValue)&stop_bits=\(stopBits)&flow_control=\(flowControl.rawValue)"
    }
}

/// Where a serial port is: a device path, or a USB adapter named by its serial number, which stays
/// the same when a replugged adapter gets another /dev/ttyUSB* name. The adapter is looked up in
/// the machine's port listing each time the line is opened.
public enum SerialPort: Sendable, Hashable, CustomStringConvertible {
    case path(String)
    case usb(USBAdapter)

    /// What follows `serial://` in an address: `/dev/ttyUSB0` or `usb/FT4XYZ12`.
    public var description: String {
        switch self {
        case .path(let path): path
        case .usb(let adapter): "usb/\(adapter.serial)"
        }
    }
}

/// A USB serial adapter as `serendip ports` lists it: its serial number, and optionally the vendor
/// and product ids (four hex digits) to narrow the match.
public struct USBAdapter: Sendable, Hashable {
    public var serial: String
    public var vendorID: String?
    public var productID: String?

    public init(serial: String, vendorID: String? = nil, productID: String? = nil) {
        self.serial = serial
        self.vendorID = vendorID.flatMap(Self.usbID)
        self.productID = productID.flatMap(Self.usbID)
    }

    /// `0403`, `0x0403` and `403` are one id; nil if it is no 16-bit hex number. Listings print four
    /// lower-case digits, so ids compare in that form.
    public static func usbID(_ text: String) -> String? {
        var digits = text.lowercased()
        if digits.hasPrefix("0x") { digits.removeFirst(2) }
        guard !digits.isEmpty, digits.count <= 4, UInt16(digits, radix: 16) != nil else { return nil }
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}
