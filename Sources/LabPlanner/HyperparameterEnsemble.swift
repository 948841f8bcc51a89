import Foundation

/// Hyperparameter settings around the fitted ones, for averaging the acquisition over them.
enum HyperparameterEnsemble {
    /// The fitted hyperparameters and `pairs` antithetic pairs θ̂ ± δ drawn from the Laplace
    /// approximation of their posterior (a Gaussian with covariance `inflation` · H⁻¹, H the Hessian
    /// of −log p(θ | y) at its maximum θ̂), kept inside the fit's bounds.
    static func laplace(_ model: GaussianProcess, pairs: Int, inflation: Double,
                        using rng: inout some RandomNumberGenerator) -> [GaussianProcess.Hyperparameters] {
        let fit = Fit(inputs: model.inputs, y: model.standardised, noiseModel: model.noiseModel, scale: model.scale,
                      dimensions: model.hyperparameters.lengthScales.count)
        let centre = fit.vector(model.hyperparameters)
        guard pairs > 0, let hessian = hessian(fit, at: centre), let factor = Cholesky(hessian, n: centre.count) else {
            return [model.hyperparameters]
        }
        var settings = [model.hyperparameters]
        for _ in 0..<pairs {
            let z = centre.indices.map { _ in AcquisitionOptimizer.gaussian(&rng) }
            let step = factor.backward(z).map { $0 * inflation.squareRoot() }  // covariance H⁻¹ · inflation
            for sign in [1.0, -1.0] {
                let theta = centre.indices.map { min(max(centre[$0] + sign * step[$0], fit.lower[$0]), fit.upper[$0]) }
                settings.append(fit.hyperparameters(theta))
            }
        }
        if ProcessInfo.processInfo.environment["SERENDIP_EXP_DEBUG"] != nil {
            let inverse = factor.inverse()
            let sd = centre.indices.map { inverse[$0 * centre.count + $0].squareRoot() }
            FileHandle.standardError.write(Data(("n=\(model.inputs.count) ls=\(model.hyperparameters.lengthScales.map { ($0 * 100).rounded() / 100 }) "
                + "sdlog=\(sd.map { ($0 * 100).rounded() / 100 })\n").utf8))
        }
        return settings
    }

    /// The Hessian of −log p(θ | y) by central differences of its analytic gradient, symmetrised.
    static func hessian(_ fit: Fit, at theta: [Double]) -> [Double]? {
        let p = theta.count, h = 1e-4
        var hessian = [Double](repeating: 0, count: p * p)
        for j in 0..<p {
            var plus = theta, minus = theta
            plus[j] += h
            minus[j] -= h
            guard let up = fit.negativeLogPosterior(plus)?.gradient, let down = fit.negativeLogPosterior(minus)?.gradient else { return nil }
            for i in 0..<p { hessian[i * p + j] = (up[i] - down[i]) / (2 * h) }
        }
        for i in 0..<p {
            for j in 0..<i {
                let mean = (hessian[i * p + j] + hessian[j * p + i]) / 2
                (hessian[i * p + j], hessian[j * p + i]) = (mean, mean)
            }
        }
        return hessian
    }
}

extension HyperparameterEnsemble {
    /// Other local maxima of the posterior of the hyperparameters: L-BFGS from `starts` random
    /// length scales; those within `delta` nats of the best found, distinct from `model`'s and each
    /// other's, are returned (best first).
    static func modes(_ model: GaussianProcess, starts: Int, delta: Double,
                      using rng: inout some RandomNumberGenerator) -> [GaussianProcess.Hyperparameters] {
        let d = model.hyperparameters.lengthScales.count
        let fit = Fit(inputs: model.inputs, y: model.standardised, noiseModel: model.noiseModel, scale: model.scale, dimensions: d)
        let centre = fit.vector(model.hyperparameters)
        guard let centreValue = fit.negativeLogPosterior(centre)?.value else { return [] }
        var found: [(theta: [Double], value: Double)] = [(centre, centreValue)]
        for _ in 0..<starts {
            var start = fit.priorMode
            for c in 0..<d { start[c] = log(0.1) + Double.random(in: 0..<1, using: &rng) * (log(3.0) - log(0.1)) }
            let result = BoxLBFGS.minimize({ fit.negativeLogPosterior($0) }, from: start, lower: fit.lower, upper: fit.upper,
                                           maxIterations: 200, tolerance: 1e-7)
            guard result.value.isFinite else { continue }
            let distinct = !found.contains { f in zip(f.theta.prefix(d), result.x.prefix(d)).contains { abs($0 - $1) > 0.3 } == false }
            if distinct { found.append((result.x, result.value)) }
        }
        let best = found.map(\.value).min()!
        let kept = found.dropFirst().filter { $0.value <= best + delta }.sorted { $0.value < $1.value }
        if ProcessInfo.processInfo.environment["SERENDIP_EXP_DEBUG"] != nil {
            FileHandle.standardError.write(Data(("n=\(model.inputs.count) map=\(centreValue) "
                + found.map { "\(($0.value * 10).rounded() / 10):\($0.theta.prefix(d).map { (exp($0) * 100).rounded() / 100 })" }.joined(separator: " ") + "\n").utf8))
        }
        return kept.map { fit.hyperparameters($0.theta) }
    }
}
