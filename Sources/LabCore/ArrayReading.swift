/// One reading of an array channel (a spectrum, an image row): the values with their shape, the
/// axis of each dimension and the unit of the values. Stored as one typed blob, not a row per element.
public struct ArrayReading: Sendable, Hashable {
    /// Row-major float64 values; their count is the product of `shape`.
    public var values: [Double]
    public var shape: [Int]
    /// One per dimension of `shape`.
    public var axes: [ArrayAxis]

    /// The element type as stored; float64 is the only one so far.
    public static let dtype = "float64"

    public init(values: [Double], shape: [Int], axes: [ArrayAxis]) {
        self.values = values; self.shape = shape; self.axes = axes
    }

    /// A spectrum or a row: one dimension along `axis`.
    public init(values: [Double], axis: ArrayAxis) {
        self.init(values: values, shape: [values.count], axes: [axis])
    }
}

/// What a dimension's positions are: a name and unit, and either a regular grid (`start`, `step`)
/// or the positions themselves (a spectrometer's calibrated pixels).
public struct ArrayAxis: Sendable, Hashable, Codable {
    public var name: String
    public var unit: String
    public var start: Double?
    public var step: Double?
    public var values: [Double]?

    public init(name: String, unit: String, start: Double, step: Double) {
        self.name = name; self.unit = unit; self.start = start; self.step = step
    }

    public init(name: String, unit: String, values: [Double]) {
        self.name = name; self.unit = unit; self.values = values
    }

    /// The position of element `index` along this axis.
    public func position(_ index: Int) -> Double {
        if let values { return values[index] }
        return (start ?? 0) + Double(index) * (step ?? 1)
    }
}

/// How an array channel's readings are laid out, as its driver file declares it.
public struct ArrayLayout: Sendable, Hashable {
    public var length: Int
    public var axis: ArrayAxis

    public init(length: Int, axis: ArrayAxis) { self.length = length; self.axis = axis }

    /// A million float64 (8 MB) per reading: more is a mistake in the driver file, not a spectrum.
    public static let maximumLength = 1 << 20
}

/// An instrument with array channels: one call returns one whole array, in the channel's unit.
public protocol ArrayReadable: Sendable {
    func readArray(_ channel: String) async throws -> [Double]
}

/// An instrument with text channels (`type: string`: a serial number, a firmware version, a mode).
/// A measurement is a number, so their text is read at the start of each run and recorded with it
/// (docs/decisions/0013-string-channels.md).
public protocol TextReadable: Sendable {
    /// The names of the text channels, in the order they are recorded.
    var textChannels: [String] { get }
    func readText(_ channel: String) async throws -> String
}
