/// Physical dimension as exponents of the SI base quantities we need in a lab.
public struct PhysicalDimension: Hashable, Sendable, CustomStringConvertible {
    public var length: Int8 = 0, mass: Int8 = 0, time: Int8 = 0
    public var temperature: Int8 = 0, amount: Int8 = 0, current: Int8 = 0

    public init(length: Int8 = 0, mass: Int8 = 0, time: Int8 = 0,
                temperature: Int8 = 0, amount: Int8 = 0, current: Int8 = 0) {
        self.length = length; self.mass = mass; self.time = time
        self.temperature = temperature; self.amount = amount; self.current = current
    }

    public static let dimensionless = PhysicalDimension()
    public static let time = PhysicalDimension(time: 1)
    public static let temperature = PhysicalDimension(temperature: 1)

    public static func * (a: PhysicalDimension, b: PhysicalDimension) -> PhysicalDimension {
        PhysicalDimension(length: a.length + b.length, mass: a.mass + b.mass, time: a.time + b.time,
                  temperature: a.temperature + b.temperature, amount: a.amount + b.amount,
                  current: a.current + b.current)
    }

    public static func / (a: PhysicalDimension, b: PhysicalDimension) -> PhysicalDimension {
        PhysicalDimension(length: a.length - b.length, mass: a.mass - b.mass, time: a.time - b.time,
                  temperature: a.temperature - b.temperature, amount: a.amount - b.amount,
                  current: a.current - b.current)
    }

    public var description: String {
        let parts: [(String, Int8)] = [("length", length), ("mass", mass), ("time", time),
                                       ("temperature", temperature), ("amount", amount),
                                       ("current", current)]
        let named = parts.filter { $0.1 != 0 }.map { $0.1 == 1 ? $0.0 : "\($0.0)^\($0.1)" }
        return named.isEmpty ? "dimensionless" : named.joined(separator: "·")
    }
}

/// A unit is an affine map to SI: `si = value * scale + offset`. Offsets exist only for
/// absolute temperatures; a temperature *difference* (a tolerance) uses the scale alone.
public struct LabUnit: Hashable, Sendable, CustomStringConvertible {
    public let symbol: String
    public let dimension: PhysicalDimension
    public let scale: Double
    public let offset: Double

    public init(_ symbol: String, _ dimension: PhysicalDimension, scale: Double = 1, offset: Double = 0) {
        self.symbol = symbol; self.dimension = dimension; self.scale = scale; self.offset = offset
    }

    public var description: String { symbol }

    public static let one = LabUnit("1", .dimensionless)
    public static let second = LabUnit("s", .time)
    public static let kelvin = LabUnit("K", .temperature)

    /// The units a protocol or driver file may name. Issue #3 extends this table.
    public static let known: [String: LabUnit] = {
        let volume = PhysicalDimension(length: 3)
        let units: [LabUnit] = [
            .one, LabUnit("%", .dimensionless, scale: 0.01),
            .second, LabUnit("ms", .time, scale: 1e-3), LabUnit("min", .time, scale: 60),
            LabUnit("h", .time, scale: 3600),
            .kelvin, LabUnit("degC", .temperature, offset: 273.15),
            LabUnit("degF", .temperature, scale: 5.0 / 9.0, offset: 273.15 - 32 * 5.0 / 9.0),
            LabUnit("AU", .dimensionless),
            LabUnit("L", volume, scale: 1e-3), LabUnit("mL", volume, scale: 1e-6),
            LabUnit("uL", volume, scale: 1e-9),
            LabUnit("bar", PhysicalDimension(length: -1, mass: 1, time: -2), scale: 1e5),
            LabUnit("rpm", PhysicalDimension(time: -1), scale: 1.0 / 60),
        ]
        return Dictionary(uniqueKeysWithValues: units.map { ($0.symbol, $0) })
    }()

    public static func named(_ symbol: String) -> LabUnit? { known[symbol] }

    public func toSI(_ value: Double) -> Double { value * scale + offset }
    public func fromSI(_ value: Double) -> Double { (value - offset) / scale }
}

/// A number with its unit.
public struct Quantity: Hashable, Sendable, CustomStringConvertible {
    public var value: Double
    public var unit: LabUnit

    public init(_ value: Double, _ unit: LabUnit = .one) { self.value = value; self.unit = unit }

    public var dimension: PhysicalDimension { unit.dimension }

    /// Converts an absolute quantity (a setpoint, a temperature reading).
    public func converted(to target: LabUnit) throws(LabError) -> Quantity {
        guard target.dimension == unit.dimension else {
            throw LabError(.unitMismatch, "cannot convert \(unit) (\(unit.dimension)) to \(target) (\(target.dimension))")
        }
        return Quantity(target.fromSI(unit.toSI(value)), target)
    }

    /// Converts a difference (a tolerance, a step size): offsets cancel.
    public func convertedDifference(to target: LabUnit) throws(LabError) -> Quantity {
        guard target.dimension == unit.dimension else {
            throw LabError(.unitMismatch, "cannot convert \(unit) (\(unit.dimension)) to \(target) (\(target.dimension))")
        }
        return Quantity(value * unit.scale / target.scale, target)
    }

    public var seconds: Double? { unit.dimension == .time ? unit.toSI(value) : nil }

    public var description: String {
        unit == .one ? "\(value)" : "\(value) \(unit.symbol)"
    }
}
