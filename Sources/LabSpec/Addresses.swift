import Foundation
public import LabCore

// One address form for every transport, `scheme://where?key=value&key=value`:
//   modbus-tcp://10.0.0.7:502?unit=1
//   modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3     modbus-rtu://usb/FT4XYZ12?unit=3
//   serial:///dev/ttyACM0?baud=9600&data_bits=7&parity=E      serial://usb/FT4XYZ12?baud=9600
// A lab config takes it as the value of `modbus:`, `modbus-rtu:` or `serial:`, or the same in a mapping.

/// An ASCII device on a serial line: its port and the line's settings.
public struct SerialAddress: Sendable, Hashable, CustomStringConvertible {
    public var port: SerialPort
    public var line: SerialLineSettings

    public init(port: SerialPort, line: SerialLineSettings = .init()) { self.port = port; self.line = line }

    public var description: String { "serial://\(port)?\(line.query)\(port.usbQuery)" }

    static let forms = "serial:///dev/ttyUSB0?baud=9600 or serial://usb/FT4XYZ12?baud=9600"
}

/// Where a Modbus RTU device is: its serial port, the line's settings and its unit id. What a lab
/// config leaves out comes from the driver file's `serial:` settings (unit 1).
public struct ModbusRTUAddress: Sendable, Hashable, CustomStringConvertible {
    public var port: SerialPort
    /// RTU frames are always 8 data bits, without flow control.
    public var line: SerialLineSettings
    public var unit: Int

    public init(port: SerialPort, line: SerialLineSettings = .init(), unit: Int = 1) {
        self.port = port; self.line = line; self.unit = unit
    }

    public var description: String {
        "modbus-rtu://\(port)?baud=\(line.baud)&parity=\(line.parity.rawValue)&stop_bits=\(line.stopBits)&unit=\(unit)\(port.usbQuery)"
    }

    static let forms = "modbus-rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3 or modbus-rtu://usb/FT4XYZ12?unit=3"
    static let lineKeys = ["baud", "parity", "stop_bits"]
}

extension SerialPort {
    /// `&vendor=0403&product=6001` for an adapter narrowed by its ids.
    var usbQuery: String {
        guard case .usb(let adapter) = self else { return "" }
        return (adapter.vendorID.map { "&vendor=\($0)" } ?? "") + (adapter.productID.map { "&product=\($0)" } ?? "")
    }
}

/// An address split into its parts; `problem` says what is wrong with one that is not an address.
struct AddressText {
    var scheme: String
    var location: String
    var query: [(key: String, value: String)]

    init(_ text: String, scheme: String, forms: String) throws(AddressProblem) {
        guard let range = text.range(of: "://") else {
            throw AddressProblem("'\(text)' is not an address; write it as \(forms)")
        }
        self.scheme = String(text[..<range.lowerBound])
        guard self.scheme == scheme else {
            throw AddressProblem("'\(text)' is a \(self.scheme):// address, not a \(scheme):// one; write it as \(forms)")
        }
        let rest = text[range.upperBound...].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        location = String(rest[0]).removingPercentEncoding ?? String(rest[0])
        query = []
        for pair in rest.count > 1 ? rest[1].split(separator: "&") : [] {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else { throw AddressProblem("'\(pair)' in '\(text)' is not key=value") }
            guard !query.contains(where: { $0.key == kv[0] }) else { throw AddressProblem("'\(kv[0])' is given twice in '\(text)'") }
            query.append((kv[0], kv[1].removingPercentEncoding ?? kv[1]))
        }
    }

    /// `/dev/ttyUSB0` or `usb/FT4XYZ12` (with `vendor` and `product` taken from the query).
    func port(forms: String) throws(AddressProblem) -> SerialPort {
        if location.hasPrefix("/") { return .path(location) }
        if location.hasPrefix("usb/"), location.count > 4 {
            let value = { (key: String) in query.first { $0.key == key }?.value }
            return .usb(try USBAdapter.checked(serial: String(location.dropFirst(4)), vendor: value("vendor"), product: value("product")))
        }
        if location.isEmpty || location == "usb" || location == "usb/" {
            throw AddressProblem("'\(scheme)://\(location)' names no port; write it as \(forms)")
        }
        throw AddressProblem("'\(scheme)://\(location)' names no port: '\(location)' is neither a device path "
                             + "(three slashes: \(scheme):///dev/...) nor usb/<serial number>; write it as \(forms)")
    }
}

struct AddressProblem: Error {
    var message: String
    var hint: String?
    /// The key whose value is wrong, to point at it in a mapping.
    var key: String?
    init(_ message: String, hint: String? = nil, key: String? = nil) { self.message = message; self.hint = hint; self.key = key }
}

extension YAMLSource {
    /// An address given as text, parsed; what is wrong with it is reported at `node`, with the
    /// accepted forms as the hint unless the message already names them.
    func address<T>(_ node: Node, forms: String, _ parse: () throws(AddressProblem) -> T) -> T? {
        do throws(AddressProblem) { return try parse() } catch {
            self.error(node, error.message, hint: error.hint ?? (error.message.contains(forms) ? nil : forms))
            return nil
        }
    }
}

extension USBAdapter {
    /// The adapter, with its ids checked (four hex digits, as `serendip ports` prints them).
    static func checked(serial: String, vendor: String?, product: String?) throws(AddressProblem) -> USBAdapter {
        guard !serial.isEmpty, !serial.contains("/") else {
            throw AddressProblem("'\(serial)' is not a USB serial number", hint: "`serendip ports` lists each adapter's serial number", key: "serial")
        }
        for (name, id) in [("vendor", vendor), ("product", product)] {
            if let id, usbID(id) == nil {
                throw AddressProblem("USB \(name) id '\(id)' is not four hex digits", hint: "as `serendip ports` prints it, e.g. 0403", key: name)
            }
        }
        return USBAdapter(serial: serial, vendorID: vendor, productID: product)
    }
}

// MARK: reading them from a lab config

extension LabConfig.Connection {
    /// The address form `parse(address:for:)` reads; a simulated or plugin instrument has none.
    public var address: String {
        switch self {
        case .modbusTCP(let host, let port, let unit): "modbus-tcp://\(host.contains(":") ? "[\(host)]" : host):\(port)?unit=\(unit)"
        case .modbusRTU(let address): address.description
        case .serial(let address): address.description
        case .simulated, .plugin: "(not served)"
        }
    }

    /// One device's connection from its address alone (`serendip driver test --address`): any of the
    /// forms a lab config takes as text, with unset line settings from the driver file.
    public static func parse(address text: String, for driver: DriverSpec) throws(LabError) -> LabConfig.Connection {
        do throws(AddressProblem) {
            if text.hasPrefix("modbus-tcp://") {
                let (host, port, unit) = try ModbusTCPAddress.parse(text)
                return .modbusTCP(host: host, port: port, unit: unit)
            }
            if text.hasPrefix("modbus-rtu://") { return .modbusRTU(try ModbusRTUAddress.parse(text, defaults: driver.serial.line)) }
            if text.hasPrefix("serial://") { return .serial(try SerialAddress.parse(text, defaults: driver.serial.line)) }
            throw AddressProblem("'\(text)' is not a device address",
                                 hint: "write it as \(ModbusTCPAddress.forms), \(ModbusRTUAddress.forms) or \(SerialAddress.forms)")
        } catch {
            throw LabError(.invalidFile, error.message + (error.hint.map { "; \($0)" } ?? ""))
        }
    }
}

extension SerialAddress {
    static let keys = SerialLineSettings.keys

    static func parse(_ text: String, defaults: SerialLineSettings) throws(AddressProblem) -> SerialAddress {
        let parts = try AddressText(text, scheme: "serial", forms: forms)
        var address = SerialAddress(port: try parts.port(forms: forms), line: defaults)
        try address.line.apply(parts.query, keys: keys, port: address.port)
        return address
    }

    /// `serial: /dev/ttyUSB0`, `serial: "serial://usb/FT4XYZ12?baud=9600"` or
    /// `serial: { usb: { serial: FT4XYZ12 }, baud: 9600 }`; unset settings are the driver file's.
    static func parse(_ node: Node, defaults: SerialLineSettings, source: YAMLSource) -> SerialAddress? {
        if node.scalar != nil, let text = source.string(node, "serial") {
            // A bare path is the older, shorter form.
            if !text.contains("://") {
                guard text.hasPrefix("/") else {
                    source.error(node, "'\(text)' is not a device path or an address", hint: "write it as /dev/ttyUSB0 or \(forms)")
                    return nil
                }
                return SerialAddress(port: .path(text), line: defaults)
            }
            return source.address(node, forms: forms) { () throws(AddressProblem) in try parse(text, defaults: defaults) }
        }
        guard let map = source.mapping(node, "serial") else { return nil }
        guard let port = SerialPort.parse(map, source: source) else { return nil }
        var address = SerialAddress(port: port, line: defaults)
        let failed = address.line.read(map, keys: keys, source: source)
        map.rejectUnknownKeys()
        return failed ? nil : address
    }
}

extension ModbusRTUAddress {
    static let keys = lineKeys + ["unit"]

    static func parse(_ text: String, defaults: SerialLineSettings) throws(AddressProblem) -> ModbusRTUAddress {
        let parts = try AddressText(text, scheme: "modbus-rtu", forms: forms)
        var address = ModbusRTUAddress(port: try parts.port(forms: forms), line: defaults)
        var line = parts.query
        if let unit = line.first(where: { $0.key == "unit" }) {
            try address.setUnit(unit.value)
            line.removeAll { $0.key == "unit" }
        }
        try address.line.apply(line, keys: keys, port: address.port)
        return address
    }

    mutating func setUnit(_ text: String) throws(AddressProblem) {
        guard let unit = Int(text), (1...247).contains(unit) else {
            throw AddressProblem("unit must be 1 to 247 (0 is broadcast, which gets no reply)")
        }
        self.unit = unit
    }

    /// `modbus-rtu: { port: /dev/ttyUSB0, baud: 19200, parity: E, unit: 3 }`, the same with
    /// `usb: { serial: FT4XYZ12 }` for `port:`, or the address form.
    static func parse(_ node: Node, defaults: SerialLineSettings, source: YAMLSource) -> ModbusRTUAddress? {
        if node.scalar != nil, let text = source.string(node, "modbus-rtu") {
            return source.address(node, forms: forms) { () throws(AddressProblem) in try parse(text, defaults: defaults) }
        }
        guard let map = source.mapping(node, "modbus-rtu") else { return nil }
        guard let port = SerialPort.parse(map, source: source) else { return nil }
        var address = ModbusRTUAddress(port: port, line: defaults)
        var failed = address.line.read(map, keys: lineKeys, source: source)
        if let node = map.optional("unit"), let text = source.string(node, "unit") {
            do throws(AddressProblem) { try address.setUnit(text) } catch {
                source.error(node, error.message)
                failed = true
            }
        }
        map.rejectUnknownKeys()
        return failed ? nil : address
    }
}

/// `modbus: { host: 10.0.0.7, port: 502, unit: 1 }` or `modbus: "modbus-tcp://10.0.0.7:502?unit=1"`.
enum ModbusTCPAddress {
    static let forms = "modbus-tcp://10.0.0.7:502?unit=1"

    static func parse(_ text: String) throws(AddressProblem) -> (host: String, port: Int, unit: Int) {
        let parts = try AddressText(text, scheme: "modbus-tcp", forms: forms)
        var host = parts.location, port = 502
        // `[::1]:502` for an IPv6 host; otherwise the last colon splits host and port.
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw AddressProblem("port '\(after.dropFirst())' in '\(text)' is not 1 to 65535") }
                port = p
            } else if !after.isEmpty {
                throw AddressProblem("'\(parts.location)' is not host:port; write it as \(forms)")
            }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            let text = host[host.index(after: colon)...]
            guard let p = Int(text), (1...65535).contains(p) else { throw AddressProblem("port '\(text)' in '\(parts.location)' is not 1 to 65535") }
            port = p
            host = String(host[..<colon])
        }
        guard !host.isEmpty, !host.contains("/") else { throw AddressProblem("'\(text)' names no host; write it as \(forms)") }
        if !parts.location.hasPrefix("["), host.contains(":") {
            throw AddressProblem("'\(host)' is an IPv6 host without brackets; write it as modbus-tcp://[\(host)]:502")
        }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || "-._:%".contains($0) }) else {
            throw AddressProblem("'\(host)' is not a host name or address; write it as \(forms)")
        }
        var unit = 1
        for (key, value) in parts.query {
            guard key == "unit" else { throw AddressProblem("unknown setting '\(key)' in a modbus-tcp address (the only one is unit)") }
            guard let u = Int(value), (0...247).contains(u) else { throw AddressProblem("unit must be 0 to 247") }
            unit = u
        }
        return (host, port, unit)
    }
}

extension SerialPort {
    /// `port: /dev/ttyUSB0` or `usb: { serial: FT4XYZ12, vendor: "0403", product: "6001" }`, one of them.
    static func parse(_ map: MappingReader, source: YAMLSource) -> SerialPort? {
        let pathNode = map.optional("port"), usbNode = map.optional("usb")
        switch (pathNode, usbNode) {
        case (nil, nil):
            source.error(map.node, "\(map.what) is missing 'port' or 'usb'",
                         hint: "port: /dev/ttyUSB0, or usb: { serial: FT4XYZ12 } as `serendip ports` lists it")
            return nil
        case (_?, _?):
            source.error(map.keyNode("usb"), "\(map.what) has both 'port' and 'usb'", hint: "give one: the path, or the adapter's serial number")
            return nil
        case (let node?, nil):
            guard let path = source.string(node, "port") else { return nil }
            guard path.hasPrefix("/") else {
                source.error(node, "port '\(path)' is not a device path", hint: "as in /dev/ttyUSB0; a USB adapter by serial number is usb: { serial: FT4XYZ12 }")
                return nil
            }
            return .path(path)
        case (nil, let node?):
            guard let usb = source.mapping(node, "usb") else { return nil }
            let serial = usb.required("serial", hint: "the adapter's serial number, as `serendip ports` lists it").flatMap { source.string($0, "serial") }
            let vendor = usb.optional("vendor").flatMap { source.string($0, "vendor") }
            let product = usb.optional("product").flatMap { source.string($0, "product") }
            usb.rejectUnknownKeys()
            guard let serial else { return nil }
            do throws(AddressProblem) {
                return .usb(try USBAdapter.checked(serial: serial, vendor: vendor, product: product))
            } catch {
                source.error(usb.optional(error.key ?? "serial") ?? node, error.message, hint: error.hint)
                return nil
            }
        }
    }
}

extension SerialLineSettings {
    /// Applies an address's query; an unknown key is refused with the list of known ones.
    mutating func apply(_ query: [(key: String, value: String)], keys: [String], port: SerialPort) throws(AddressProblem) {
        let usbKeys = if case .usb = port { ["vendor", "product"] } else { [String]() }
        for (key, value) in query where !usbKeys.contains(key) {
            guard keys.contains(key) else {
                throw AddressProblem("unknown setting '\(key)'", hint: "use " + (keys + usbKeys).joined(separator: ", "))
            }
            if let (problem, hint) = set(key, value) { throw AddressProblem(problem, hint: hint) }
        }
    }

    /// Reads the settings among `keys` from a mapping; true if one was refused.
    mutating func read(_ map: MappingReader, keys: [String], source: YAMLSource) -> Bool {
        var failed = false
        for key in keys {
            guard let node = map.optional(key), let text = source.string(node, key) else { continue }
            if let (problem, hint) = set(key, text) {
                source.error(node, problem, hint: hint)
                failed = true
            }
        }
        return failed
    }
}
