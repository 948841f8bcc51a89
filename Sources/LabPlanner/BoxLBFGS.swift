/// Limited-memory BFGS for smooth functions on a box, with projection onto the box: variables at
/// a bound whose gradient points outwards are held there; the rest follow the quasi-Newton
/// direction with an Armijo backtracking line search along the projected path.
enum BoxLBFGS {
    struct Result {
        var x: [Double]
        var value: Double
        var iterations: Int
    }

    /// Minimises `f`, which returns the value and gradient at x (or nil where undefined), over
    /// `lower...upper` componentwise, starting from `start`.
    static func minimize(_ f: ([Double]) -> (value: Double, gradient: [Double])?, from start: [Double],
                         lower: [Double], upper: [Double], maxIterations: Int = 100, memory: Int = 8,
                         tolerance: Double = 1e-9) -> Result {
        let n = start.count
        func project(_ x: [Double]) -> [Double] { (0..<n).map { min(max(x[$0], lower[$0]), upper[$0]) } }
        var x = project(start)
        guard var (fx, g) = f(x), fx.isFinite else { return Result(x: x, value: .infinity, iterations: 0) }
        var history: [(s: [Double], y: [Double], rho: Double)] = []
        var iteration = 0
        while iteration < maxIterations {
            iteration += 1
            // Projected gradient: zero where a bound holds the variable.
            var active = [Bool](repeating: false, count: n)
            var pg = g
            for i in 0..<n where (x[i] <= lower[i] && g[i] > 0) || (x[i] >= upper[i] && g[i] < 0) {
                active[i] = true
                pg[i] = 0
            }
            guard pg.contains(where: { abs($0) > tolerance }) else { break }
            // Two-loop recursion for d = −H·pg.
            var q = pg
            var alphas = [Double](repeating: 0, count: history.count)
            for k in stride(from: history.count - 1, through: 0, by: -1) {
                let a = history[k].rho * dot(history[k].s, q)
                alphas[k] = a
                for i in 0..<n { q[i] -= a * history[k].y[i] }
            }
            if let last = history.last {
                let gamma = dot(last.s, last.y) / dot(last.y, last.y)
                for i in 0..<n { q[i] *= gamma }
            } else {
                // First step: at most a unit move in the largest coordinate.
                let largest = pg.map(abs).max()!
                for i in 0..<n { q[i] /= max(largest, 1) }
            }
            for k in 0..<history.count {
                let b = history[k].rho * dot(history[k].y, q)
                for i in 0..<n { q[i] += history[k].s[i] * (alphas[k] - b) }
            }
            var direction = q.map { -$0 }
            for i in 0..<n where active[i] { direction[i] = 0 }
            if dot(direction, pg) >= 0 {
                direction = pg.map { -$0 }
                history.removeAll()
            }
            // Backtracking along the projected path.
            var step = 1.0, accepted: (x: [Double], value: Double, gradient: [Double])?
            for _ in 0..<40 {
                let candidate = project((0..<n).map { x[$0] + step * direction[$0] })
                let moved = (0..<n).map { candidate[$0] - x[$0] }
                if moved.allSatisfy({ $0 == 0 }) { break }
                if let (value, gradient) = f(candidate), value.isFinite, value <= fx + 1e-4 * dot(g, moved) {
                    accepted = (candidate, value, gradient)
                    break
                }
                step *= 0.5
            }
            guard let next = accepted else { break }
            let s = (0..<n).map { next.x[$0] - x[$0] }, y = (0..<n).map { next.gradient[$0] - g[$0] }
            let sy = dot(s, y)
            if sy > 1e-12 {
                history.append((s, y, 1 / sy))
                if history.count > memory { history.removeFirst() }
            }
            let improvement = fx - next.value
            (x, fx, g) = (next.x, next.value, next.gradient)
            if improvement <= tolerance * max(1, abs(fx)) { break }
        }
        return Result(x: x, value: fx, iterations: iteration)
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var sum = 0.0
        for i in a.indices { sum += a[i] * b[i] }
        return sum
    }
}
