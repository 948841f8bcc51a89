import Foundation

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

    /// Reads as a person would say it: `temperature/time`, `length^3`, `amount/length^3`.
    public var description: String {
        let parts: [(String, Int8)] = [("length", length), ("mass", mass), ("time", time),
                                       ("temperature", temperature), ("amount", amount),
                                       ("current", current)]
        func power(_ name: String, _ n: Int8) -> String { n == 1 ? name : "\(name)^\(n)" }
        let numerator = parts.filter { $0.1 > 0 }.map { power($0.0, $0.1) }
        let denominator = parts.filter { $0.1 < 0 }.map { power($0.0, -$0.1) }
        if numerator.isEmpty && denominator.isEmpty { return "dimensionless" }
        let top = numerator.isEmpty ? "1" : numerator.joined(separator: "·")
        return denominator.isEmpty ? top : top + "/" + denominator.joined(separator: "·")
    }
}

/// A unit is an affine map to SI: `si = value * scale + offset`. Offsets exist only for
/// absolute temperatures; a temperature *difference* (a tolerance) uses the scale alone.
/// The same map is kept exactly too, as decimals: `si = (value + zero) * numerator / denominator`,
/// so that conversions before a limit check need not round (see `Quantity.converted(to:)`).
public struct LabUnit: Hashable, Sendable, CustomStringConvertible {
    public let symbol: String
    public let dimension: PhysicalDimension
    public let scale: Double
    public let offset: Double
    let zero: Decimal, numerator: Decimal, denominator: Decimal

    /// A unit whose scale and offset are the decimals their shortest form prints (`1e-3`, `273.15`).
    public init(_ symbol: String, _ dimension: PhysicalDimension, scale: Double = 1, offset: Double = 0) {
        self.symbol = symbol; self.dimension = dimension; self.scale = scale; self.offset = offset
        numerator = Decimal(string: "\(scale)") ?? 1
        denominator = 1
        zero = (Decimal(string: "\(offset)") ?? 0) / numerator
    }

    /// A unit whose factor is a ratio (5/9 for degF, 1/60 for rpm) and whose zero lies `zero` of
    /// its own steps below the SI zero (459.67 for degF).
    init(_ symbol: String, _ dimension: PhysicalDimension, numerator: Decimal, denominator: Decimal = 1, zero: Decimal = 0) {
        self.symbol = symbol; self.dimension = dimension
        self.numerator = numerator; self.denominator = denominator; self.zero = zero
        // Through text: Decimal's own conversion to Double is not correctly rounded on Linux.
        scale = Double((numerator / denominator).description)!
        offset = Double((zero * numerator / denominator).description)!
    }

    public var description: String { symbol }

    public static let one = LabUnit("1", .dimensionless)

    /// What follows a number in a message: " degC", or nothing for a plain count ("5", not "5 1").
    public var afterNumber: String { self == .one ? "" : " \(symbol)" }
    public static let second = LabUnit("s", .time)
    public static let kelvin = LabUnit("K", .temperature)

    /// The units a protocol or driver file may name. A rate or ratio of two of them (`mL/min`,
    /// `degC/min`, `mol/L`) is understood too; see `named(_:)`.
    public static let known: [String: LabUnit] = {
        let length = PhysicalDimension(length: 1), volume = PhysicalDimension(length: 3)
        let mass = PhysicalDimension(mass: 1), amount = PhysicalDimension(amount: 1)
        let pressure = PhysicalDimension(length: -1, mass: 1, time: -2)
        let voltage = PhysicalDimension(length: 2, mass: 1, time: -3, current: -1)
        let current = PhysicalDimension(current: 1), concentration = PhysicalDimension(length: -3, amount: 1)
        let flow = PhysicalDimension(length: 3, time: -1), frequency = PhysicalDimension(time: -1)
        let units: [LabUnit] = [
            // dimensionless
            .one, LabUnit("%", .dimensionless, scale: 0.01), LabUnit("ppm", .dimensionless, scale: 1e-6),
            LabUnit("AU", .dimensionless), LabUnit("pH", .dimensionless),
            // time
            .second, LabUnit("ms", .time, scale: 1e-3), LabUnit("min", .time, scale: 60),
            LabUnit("h", .time, scale: 3600),
            // temperature (absolute; as a difference only the scale counts)
            .kelvin, LabUnit("degC", .temperature, offset: 273.15),
            LabUnit("degF", .temperature, numerator: 5, denominator: 9, zero: Decimal(string: "459.67")!),
            LabUnit("mK", .temperature, scale: 1e-3), LabUnit("mdegC", .temperature, numerator: 1, denominator: 1000, zero: 273_150),
            // length, volume, mass, amount, concentration
            LabUnit("m", length), LabUnit("cm", length, scale: 1e-2), LabUnit("mm", length, scale: 1e-3),
            LabUnit("um", length, scale: 1e-6), LabUnit("nm", length, scale: 1e-9),
            LabUnit("L", volume, scale: 1e-3), LabUnit("mL", volume, scale: 1e-6), LabUnit("uL", volume, scale: 1e-9),
            LabUnit("kg", mass), LabUnit("g", mass, scale: 1e-3), LabUnit("mg", mass, scale: 1e-6),
            LabUnit("ug", mass, scale: 1e-9),
            LabUnit("mol", amount), LabUnit("mmol", amount, scale: 1e-3), LabUnit("umol", amount, scale: 1e-6),
            LabUnit("M", concentration, scale: 1e3), LabUnit("mM", concentration, scale: 1),
            LabUnit("uM", concentration, scale: 1e-3),
            // pressure, electrical, rates
            LabUnit("Pa", pressure), LabUnit("kPa", pressure, scale: 1e3), LabUnit("bar", pressure, scale: 1e5),
            LabUnit("mbar", pressure, scale: 1e2), LabUnit("atm", pressure, scale: 101_325),
            LabUnit("psi", pressure, scale: 6_894.757_293_168_361),
            LabUnit("V", voltage), LabUnit("mV", voltage, scale: 1e-3),
            LabUnit("A", current), LabUnit("mA", current, scale: 1e-3),
            LabUnit("Hz", frequency), LabUnit("rpm", frequency, numerator: 1, denominator: 60),
            LabUnit("sccm", flow, scale: 1e-6 / 60),
        ]
        return Dictionary(uniqueKeysWithValues: units.map { ($0.symbol, $0) })
    }()

    /// A known unit, or a ratio `a/b` of two known units (a rate: the numerator counts as a difference).
    public static func named(_ symbol: String) -> LabUnit? {
        if let unit = known[symbol] { return unit }
        let parts = symbol.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let numerator = known[String(parts[0])], let denominator = known[String(parts[1])],
              denominator.offset == 0 else { return nil }
        return LabUnit(symbol, numerator.dimension / denominator.dimension, numerator: numerator.numerator * denominator.denominator,
                       denominator: numerator.denominator * denominator.numerator)
    }

    /// Every symbol `named(_:)` accepts without a slash, for suggestions.
    public static var symbols: [String] { Array(known.keys) }

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
        // The same scale and offset is no conversion at all.
        if target.scale == unit.scale && target.offset == unit.offset { return Quantity(value, target) }
        if let exact = Self.exactly(value, unit, target, absolute: true) { return Quantity(exact, target) }
        if target.offset == unit.offset { return Quantity(value * (unit.scale / target.scale), target) }
        return Quantity(target.fromSI(unit.toSI(value)), target)
    }

    /// The conversion in decimal arithmetic. A limit check must not refuse 423.15 K against 150 degC
    /// because binary floating point makes it 150.00000000000006: the Double's shortest printed form
    /// is the decimal a person wrote, the units' factors are exact decimals or ratios, and Decimal
    /// keeps 38 digits, so a result that is a short decimal comes out exactly and any other is
    /// rounded once, to the nearest Double. Values beyond what Decimal holds comfortably (or not
    /// finite) are left to Double arithmetic, which is nowhere near a limit's last digit there.
    static func exactly(_ value: Double, _ from: LabUnit, _ to: LabUnit, absolute: Bool) -> Double? {
        guard value == 0 || (1e-40...1e40).contains(abs(value)), let v = Decimal(string: "\(value)") else { return nil }
        let (fromZero, toZero): (Decimal, Decimal) = absolute ? (from.zero, to.zero) : (0, 0)
        let si = (v + fromZero) * from.numerator * to.denominator
        let result = si / (from.denominator * to.numerator) - toZero
        return Double(result.description)  // correctly rounded, unlike Decimal's own conversion
    }

    /// Converts a difference (a tolerance, a step size): offsets cancel.
    public func convertedDifference(to target: LabUnit) throws(LabError) -> Quantity {
        guard target.dimension == unit.dimension else {
            throw LabError(.unitMismatch, "cannot convert \(unit) (\(unit.dimension)) to \(target) (\(target.dimension))")
        }
        if let exact = Self.exactly(value, unit, target, absolute: false) { return Quantity(exact, target) }
        return Quantity(value * unit.scale / target.scale, target)
    }

    public var seconds: Double? { unit.dimension == .time ? unit.toSI(value) : nil }

    public var description: String {
        unit == .one ? "\(value)" : "\(value) \(unit.symbol)"
    }
}
