import Foundation

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix (row-major, n×n).
/// Adds growing jitter to the diagonal until the factorisation succeeds.
struct Cholesky {
    let n: Int
    let lower: [Double]

    init?(_ matrix: [Double], n: Int) {
        self.n = n
        var jitter = 0.0
        for _ in 0..<6 {
            if let l = Self.factor(matrix, n: n, jitter: jitter) {
                lower = l
                return
            }
            jitter = jitter == 0 ? 1e-10 : jitter * 100
        }
        return nil
    }

    private static func factor(_ a: [Double], n: Int, jitter: Double) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var sum = a[i * n + j] + (i == j ? jitter : 0)
                for k in 0..<j { sum -= l[i * n + k] * l[j * n + k] }
                if i == j {
                    guard sum > 0 else { return nil }
                    l[i * n + i] = sum.squareRoot()
                } else {
                    l[i * n + j] = sum / l[j * n + j]
                }
            }
        }
        return l
    }

    /// Solves L x = b.
    func forward(_ b: [Double]) -> [Double] {
        var x = b
        for i in 0..<n {
            var sum = x[i]
            for k in 0..<i { sum -= lower[i * n + k] * x[k] }
            x[i] = sum / lower[i * n + i]
        }
        return x
    }

    /// Solves Lᵀ x = b.
    func backward(_ b: [Double]) -> [Double] {
        var x = b
        for i in stride(from: n - 1, through: 0, by: -1) {
            var sum = x[i]
            for k in (i + 1)..<n { sum -= lower[k * n + i] * x[k] }
            x[i] = sum / lower[i * n + i]
        }
        return x
    }

    /// Solves A x = b.
    func solve(_ b: [Double]) -> [Double] { backward(forward(b)) }

    var logDeterminant: Double { (0..<n).reduce(0) { $0 + 2 * log(lower[$1 * n + $1]) } }
}
