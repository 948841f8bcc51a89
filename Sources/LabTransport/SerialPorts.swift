import CSerialPort

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
