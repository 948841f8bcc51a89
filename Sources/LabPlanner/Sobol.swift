/// The Sobol low-discrepancy sequence on the unit cube (Joe and Kuo's direction numbers, Gray-code
/// order), optionally scrambled by a random digital shift so different seeds give different but
/// equally even designs. Its first 2^k points put exactly one point in each of 2^k equal slices of
/// every axis, and fill the cube more evenly than random points do.
public struct Sobol: Sendable {
    /// Primitive polynomial degree s, coefficients a and initial direction numbers m for
    /// dimensions 2…21 (the first dimension is the van der Corput sequence).
    static let table: [(s: Int, a: UInt32, m: [UInt32])] = [
        (1, 0, [1]), (2, 1, [1, 3]), (3, 1, [1, 3, 1]), (3, 2, [1, 1, 1]), (4, 1, [1, 1, 3, 3]),
        (4, 4, [1, 3, 5, 13]), (5, 2, [1, 1, 5, 5, 17]), (5, 4, [1, 1, 5, 5, 5]), (5, 7, [1, 1, 7, 11, 19]),
        (5, 11, [1, 1, 5, 1, 1]), (5, 13, [1, 1, 1, 3, 11]), (5, 14, [1, 3, 5, 5, 31]),
        (6, 1, [1, 3, 3, 9, 7, 49]), (6, 13, [1, 1, 1, 15, 21, 21]), (6, 16, [1, 3, 1, 13, 27, 49]),
        (6, 19, [1, 1, 1, 15, 7, 5]), (6, 22, [1, 3, 1, 15, 13, 25]), (6, 25, [1, 1, 5, 5, 19, 61]),
        (7, 1, [1, 3, 7, 11, 23, 15, 103]), (7, 4, [1, 3, 7, 13, 13, 15, 69]),
    ]
    public static let maximumDimensions = table.count + 1
    static let bits = 32

    let directions: [[UInt32]]
    let shift: [UInt32]
    private var state: [UInt32]
    private var index: UInt32 = 0

    /// A sequence in `dimensions` ≤ `maximumDimensions`; with a generator, digitally shifted by it.
    public init(dimensions: Int, scramble: inout some RandomNumberGenerator) {
        self.init(dimensions: dimensions, shift: (0..<dimensions).map { _ in UInt32.random(in: .min ... .max, using: &scramble) })
    }

    public init(dimensions: Int, shift: [UInt32]? = nil) {
        precondition(dimensions <= Self.maximumDimensions, "Sobol sequences here have at most \(Self.maximumDimensions) dimensions")
        var directions: [[UInt32]] = []
        for dimension in 0..<dimensions {
            var v = [UInt32](repeating: 0, count: Self.bits)
            if dimension == 0 {
                for i in 0..<Self.bits { v[i] = 1 << (31 - i) }
            } else {
                let (s, a, m) = Self.table[dimension - 1]
                for i in 0..<min(s, Self.bits) { v[i] = m[i] << (31 - i) }
                for i in s..<Self.bits {
                    var value = v[i - s] ^ (v[i - s] >> s)
                    for k in 1..<s where (a >> (s - 1 - k)) & 1 == 1 { value ^= v[i - k] }
                    v[i] = value
                }
            }
            directions.append(v)
        }
        self.directions = directions
        self.shift = shift ?? Array(repeating: 0, count: dimensions)
        state = Array(repeating: 0, count: dimensions)
    }

    /// The next point; the first is the origin (shifted, if scrambled).
    public mutating func next() -> [Double] {
        let point = zip(state, shift).map { Double($0 ^ $1) / 4_294_967_296.0 }
        // Gray-code order: the next point differs from this one in one direction number.
        let bit = (~index).trailingZeroBitCount
        for j in state.indices { state[j] ^= directions[j][bit] }
        index &+= 1
        return point
    }

    public mutating func points(_ count: Int) -> [[Double]] { (0..<count).map { _ in next() } }
}
