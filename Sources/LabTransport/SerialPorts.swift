import CSerialPort
public import LabCore

/// A serial port as the system lists it, with the USB identity of its adapter when it has one: the
/// serial number is what stays the same when a replugged adapter gets another /dev/ttyUSB* name.
public struct SerialPortInfo: Sendable, Hashable, Codable {
    public var path: String
    public var description: String
    /// `usb`, `bluetooth` or `native`.
    public var transport: String
    public var usbVendorID: String?
    public var usbProductID: String?
    public var usbSerial: String?
    public var manufacturer: String?
    public var product: String?

    public init(path: String, description: String = "", transport: String = "native", usbVendorID: String? = nil,
                usbProductID: String? = nil, usbSerial: String? = nil, manufacturer: String? = nil, product: String? = nil) {
        self.path = path; self.description = description; self.transport = transport; self.usbVendorID = usbVendorID
        self.usbProductID = usbProductID; self.usbSerial = usbSerial; self.manufacturer = manufacturer; self.product = product
    }

    /// The lab config's `usb:` binding for this port, when its adapter has a serial number.
    public var usbBinding: String? {
        guard let serial = usbSerial else { return nil }
        // Quoted unless it is letters and digits, so that YAML reads it as the text it is.
        let plain = serial.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } && serial.contains { $0.isLetter }
        return "usb: { serial: \(plain ? serial : "\"\(serial)\"") }"
    }

    enum CodingKeys: String, CodingKey {
        case path, description, transport, manufacturer, product
        case usbVendorID = "usb_vendor_id", usbProductID = "usb_product_id", usbSerial = "usb_serial"
    }
}

public enum SerialPorts {
    /// The ports libserialport finds (pseudo-terminals are not among them), by path.
    public static func list() -> [SerialPortInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        guard sp_list_ports(&list) == SP_OK, let list else { return [] }
        defer { sp_free_port_list(list) }
        var ports: [SerialPortInfo] = []
        var index = 0
        while let port = list[index] {
            index += 1
            func text(_ value: UnsafeMutablePointer<CChar>?) -> String? { value.map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
            var info = SerialPortInfo(path: text(sp_get_port_name(port)) ?? "?", description: text(sp_get_port_description(port)) ?? "",
                                      transport: "native")
            switch sp_get_port_transport(port) {
            case SP_TRANSPORT_USB:
                info.transport = "usb"
                var vendor: Int32 = 0, product: Int32 = 0
                if sp_get_port_usb_vid_pid(port, &vendor, &product) == SP_OK {
                    info.usbVendorID = hex(vendor)
                    info.usbProductID = hex(product)
                }
                info.usbSerial = text(sp_get_port_usb_serial(port))
                info.manufacturer = text(sp_get_port_usb_manufacturer(port))
                info.product = text(sp_get_port_usb_product(port))
            case SP_TRANSPORT_BLUETOOTH:
                info.transport = "bluetooth"
            default:
                break
            }
            ports.append(info)
        }
        return ports.sorted { $0.path < $1.path }
    }

    private static func hex(_ value: Int32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// Lists the machine's serial ports: `SerialPorts.list` on a lab PC, a closure over pseudo-terminals
/// in tests (libserialport lists no ptys, and there is no USB adapter to plug in).
public typealias SerialPortLister = @Sendable () -> [SerialPortInfo]

extension SerialPort {
    /// The device path to open now. A USB adapter is looked up afresh on every call, because a
    /// replugged adapter comes back under another /dev/ttyUSB* name.
    public func devicePath(_ ports: SerialPortLister) throws(LabError) -> String {
        switch self {
        case .path(let path): return path
        case .usb(let adapter): return try adapter.devicePath(in: ports())
        }
    }
}

extension USBAdapter {
    /// The one listed port of this adapter. None is `.instrumentLost` (it may be unplugged), naming
    /// the serial numbers that are present; two are refused, naming both paths.
    public func devicePath(in listing: [SerialPortInfo]) throws(LabError) -> String {
        let matches = listing.filter {
            $0.usbSerial == serial && (vendorID == nil || $0.usbVendorID?.lowercased() == vendorID)
                && (productID == nil || $0.usbProductID?.lowercased() == productID)
        }
        let wanted = "USB serial adapter \(serial)" + (vendorID.map { " (vendor \($0)" + (productID.map { ", product \($0)" } ?? "") + ")" } ?? "")
        switch matches.count {
        case 1:
            return matches[0].path
        case 0:
            let present = listing.compactMap { port in port.usbSerial.map { "\($0) at \(port.path)" } }
            throw LabError(.instrumentLost, "no \(wanted) is plugged in; "
                           + (present.isEmpty ? "no USB serial adapter is" : "present: " + present.joined(separator: ", "))
                           + " (see `serendip ports`)")
        default:
            throw LabError(.invalidFile, "\(matches.count) ports match the \(wanted): " + matches.map(\.path).joined(separator: ", ")
                           + "; name its vendor and product too, or bind it by path (see `serendip ports`)")
        }
    }
}
