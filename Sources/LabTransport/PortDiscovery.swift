import CSerialPort

/// A serial port the system knows, with its USB identity where it has one, so a lab config can bind
/// an instrument by serial number instead of a /dev/ttyUSB0 that changes on replug.
public struct SerialPortInfo: Sendable, Hashable {
    public var path: String
    public var description: String?
    public var usbVendorID: Int?
    public var usbProductID: Int?
    public var usbSerialNumber: String?
}

public enum PortDiscovery {
    public static func listPorts() -> [SerialPortInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        guard sp_list_ports(&list) == SP_OK, let list else { return [] }
        defer { sp_free_port_list(list) }
        var ports: [SerialPortInfo] = []
        var index = 0
        while let port = list[index] {
            index += 1
            var info = SerialPortInfo(path: String(cString: sp_get_port_name(port)))
            info.description = sp_get_port_description(port).map { String(cString: $0) }
            if sp_get_port_transport(port) == SP_TRANSPORT_USB {
                var vid: Int32 = 0, pid: Int32 = 0
                if sp_get_port_usb_vid_pid(port, &vid, &pid) == SP_OK {
                    info.usbVendorID = Int(vid)
                    info.usbProductID = Int(pid)
                }
                info.usbSerialNumber = sp_get_port_usb_serial(port).map { String(cString: $0) }
            }
            ports.append(info)
        }
        return ports
    }
}

extension SerialPortInfo {
    init(path: String) { self.path = path }
}
