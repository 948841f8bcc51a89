import Foundation

/// Lower-triangular Cholesky factor L of a symmetric positive-definite matrix A = L Lᵀ (row-major,
/// n×n). When rounding makes A numerically indefinite, jitter is added to the diagonal, growing
/// tenfold per retry; `jitter` says how much was needed.
struct Cholesky: Sendable {
    let n: Int
    let lower: [Double]
    let jitter: Double

    init?(_ matrix: [Double], n: Int) {
        self.n = n
        let scale = (0..<n).reduce(0.0) { max($0, abs(matrix[$1 * n + $1])) }
        var jitter = 0.0
        for _ in 0..<8 {
            if let l = Self.factor(matrix, n: n, jitter: jitter) {
                lower = l
                self.jitter = jitter
                return
            }
            jitter = jitter == 0 ? 1e-10 * max(scale, 1e-300) : jitter * 10
        }
        return nil
    }

    private static func factor(_ a: [Double], n: Int, jitter: Double) -> [Double]? {
        var l = a
        l.withUnsafeMutableBufferPointer { l in
            for j in 0..<n {
                // Column j: subtract the contributions of the columns before it, row by row.
                var diagonal = l[j * n + j] + jitter
                for k in 0..<j { diagonal -= l[j * n + k] * l[j * n + k] }
                guard diagonal > 0, diagonal.isFinite else { l[0] = .nan; return }
                let root = diagonal.squareRoot()
                l[j * n + j] = root
                for i in (j + 1)..<max(n, j + 1) {
                    var sum = l[i * n + j]
                    for k in 0..<j { sum -= l[i * n + k] * l[j * n + k] }
                    l[i * n + j] = sum / root
                }
                for k in (j + 1)..<max(n, j + 1) { l[j * n + k] = 0 }
            }
        }
        return l[0].isNaN ? nil : l
    }

    /// Solves L x = b.
    func forward(_ b: [Double]) -> [Double] {
        var x = b
        lower.withUnsafeBufferPointer { l in
            for i in 0..<n {
                var sum = x[i]
                for k in 0..<i { sum -= l[i * n + k] * x[k] }
                x[i] = sum / l[i * n + i]
            }
        }
        return x
    }

    /// Solves Lᵀ x = b.
    func backward(_ b: [Double]) -> [Double] {
        var x = b
        lower.withUnsafeBufferPointer { l in
            for i in stride(from: n - 1, through: 0, by: -1) {
                var sum = x[i]
                for k in (i + 1)..<max(n, i + 1) { sum -= l[k * n + i] * x[k] }
                x[i] = sum / l[i * n + i]
            }
        }
        return x
    }

    /// Solves A x = b.
    func solve(_ b: [Double]) -> [Double] { backward(forward(b)) }

    /// A⁻¹, from L⁻¹ (A⁻¹ = L⁻ᵀ L⁻¹).
    func inverse() -> [Double] {
        // L⁻¹ is lower triangular; compute it column by column by forward substitution.
        var inv = [Double](repeating: 0, count: n * n)
        lower.withUnsafeBufferPointer { l in
            for j in 0..<n {
                inv[j * n + j] = 1 / l[j * n + j]
                for i in (j + 1)..<max(n, j + 1) {
                    var sum = 0.0
                    for k in j..<i { sum -= l[i * n + k] * inv[k * n + j] }
                    inv[i * n + j] = sum / l[i * n + i]
                }
            }
        }
        // A⁻¹[i][j] = Σ_k L⁻¹[k][i] L⁻¹[k][j] over k ≥ max(i, j); transposed first so that sum runs
        // along rows in memory.
        var t = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in i..<n { t[i * n + k] = inv[k * n + i] } }
        var result = [Double](repeating: 0, count: n * n)
        t.withUnsafeBufferPointer { t in
            for i in 0..<n {
                for j in 0...i {
                    var sum = 0.0
                    for k in i..<n { sum += t[i * n + k] * t[j * n + k] }
                    result[i * n + j] = sum
                    result[j * n + i] = sum
                }
            }
        }
        return result
    }

    var logDeterminant: Double { (0..<n).reduce(0) { $0 + 2 * log(lower[$1 * n + $1]) } }
}
