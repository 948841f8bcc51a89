import Foundation

/// The logarithm of expected improvement over `best` (maximisation), computed so that it stays
/// finite and informative far below the best, where EI itself underflows to 0 and gives an
/// optimiser no gradient (Ament et al., "Unexpected improvements to expected improvement", 2023).
public enum LogExpectedImprovement {
    /// log EI for a Gaussian with this mean and standard deviation, and ∂/∂mean, ∂/∂sigma.
    public static func value(mean: Double, sigma: Double, best: Double) -> (value: Double, dMean: Double, dSigma: Double) {
        let z = (mean - best) / sigma
        let (logH, dLogH) = logH(z)
        // log EI = log σ + log h(z);  ∂z/∂μ = 1/σ,  ∂z/∂σ = −z/σ.
        return (log(sigma) + logH, dLogH / sigma, 1 / sigma - dLogH * z / sigma)
    }

    /// log h(z) with h(z) = φ(z) + z Φ(z), and its derivative Φ(z)/h(z).
    static func logH(_ z: Double) -> (Double, Double) {
        let halfLog2Pi = 0.5 * log(2 * Double.pi)
        if z > -1 {
            let h = normalPDF(z) + z * normalCDF(z)
            return (log(h), normalCDF(z) / h)
        }
        // For z ≤ −1: h(z) = φ(z)·(1 − |z|·erfcx(|z|/√2)·√(π/2)), written in logs.
        let u = -z / 2.squareRoot()
        let ratio = -z * erfcx(u) * (Double.pi / 2).squareRoot()  // in (0, 1), → 1 as z → −∞
        let logPhi = -z * z / 2 - halfLog2Pi
        let oneMinus = -z > 1e4 ? 1 / (z * z) : 1 - ratio  // the asymptotic form avoids cancellation
        let logh = logPhi + log(oneMinus)
        // Φ(z) = erfcx(u)/2 · e^{−z²/2}; the derivative Φ/h is taken in logs.
        let logCDF = log(erfcx(u) / 2) - z * z / 2
        return (logh, exp(logCDF - logh))
    }

    /// e^{x²} erfc(x) for x ≥ 0, accurate where erfc itself underflows.
    static func erfcx(_ x: Double) -> Double {
        if x < 25 { return exp(x * x) * erfc(x) }
        let inverse2 = 1 / (2 * x * x)
        return (1 - inverse2 + 3 * inverse2 * inverse2 - 15 * inverse2 * inverse2 * inverse2) / (x * Double.pi.squareRoot())
    }

    static func normalPDF(_ z: Double) -> Double { exp(-z * z / 2) / (2 * Double.pi).squareRoot() }
    static func normalCDF(_ z: Double) -> Double { 0.5 * erfc(-z / 2.squareRoot()) }
}

/// Upper confidence bound μ + √β σ (maximisation): explores more as β grows.
public enum UpperConfidenceBound {
    public static func value(mean: Double, sigma: Double, beta: Double) -> Double { mean + beta.squareRoot() * sigma }
}
