import ArgumentParser
import Foundation
import LabTransport

/// `serendip ports`: the serial ports of this machine, with the USB identity of each adapter, to
/// find the one an instrument is on, and the `usb:` binding a lab config gives it.
struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List this machine's serial ports with the USB vendor, product and serial number of each adapter.")

    @Flag(help: "Print the result as JSON (sorted keys) instead of text.") var json = false

    func run() throws {
        let ports = SerialPorts.list()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return print(String(decoding: try encoder.encode(ports), as: UTF8.self))
        }
        guard !ports.isEmpty else { return print("no serial ports found") }
        for port in ports {
            var line = "\(port.path)  \(port.transport)"
            if let vendor = port.usbVendorID, let product = port.usbProductID { line += "  \(vendor):\(product)" }
            if let serial = port.usbSerial { line += "  serial \(serial)" }
            let names = [port.manufacturer, port.product].compactMap { $0 }.joined(separator: " ")
            line += "  " + (names.isEmpty ? port.description : names)
            print(line)
            // What a lab config writes to find this adapter again after a replug renames it.
            if let binding = port.usbBinding { print("    \(binding)    or serial://usb/\(port.usbSerial!)") }
        }
    }
}
