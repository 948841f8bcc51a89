import Foundation
import LabCore
@testable import LabPlanner
import Testing

@Suite struct OutputTransformTests {
    /// Skewed like a yield screen: mostly near nothing, a few large.
    static let skewed: [Double] = (0..<40).map { i in exp(Double(i % 13) / 2.5) - 0.99 }

    static func skewness(_ v: [Double]) -> Double {
        let (m, s) = GaussianProcess.standardisation(v)
        return v.reduce(0) { $0 + pow(($1 - m) / s, 3) } / Double(v.count)
    }

    @Test func everyTransformKeepsTheOrderOfResults() throws {
        for transform in OutputTransform.allCases {
            for values in [Self.skewed, Self.skewed.map { -$0 - 0.5 }] {
                let t = try transform.apply(values).values
                for i in values.indices { for j in values.indices where values[i] < values[j] { #expect(t[i] < t[j], "\(transform)") } }
            }
        }
    }

    @Test func thePowerTransformBendsSkewedResultsTowardsSymmetric() throws {
        let lambda = YeoJohnson.bestPower(Self.skewed.map { ($0 - 10) / 10 })
        #expect(lambda < 0.8)
        let t = try OutputTransform.power.apply(Self.skewed).values
        #expect(abs(Self.skewness(t)) < 0.5 * abs(Self.skewness(Self.skewed)))
        // Results that are already symmetric are left nearly straight.
        let symmetric = (0..<41).map { Double($0 - 20) / 10 }
        #expect(abs(YeoJohnson.bestPower(symmetric) - 1) < 0.2)
    }

    /// A minimised result with a long tail of bad values (a Rosenbrock function's: 3 to 10⁶) needs a
    /// bend stronger than a power of 3, the search's old bound.
    @Test func aLongTailOfBadResultsGetsAPowerAboveThree() {
        let values = (0..<40).map { i in -pow(10, 6 * pow(Double(i) / 39, 3)) }
        let (mean, scale) = GaussianProcess.standardisation(values)
        #expect(YeoJohnson.bestPower(values.map { ($0 - mean) / scale }) > 3.2)
    }

    /// Equal results give the search nothing to prefer: they are not bent, and the record says so
    /// (it said "power 6.00", the search's bound).
    @Test func equalResultsAreLeftStraight() throws {
        #expect(YeoJohnson.bestPower([0, 0, 0, 0]) == 1)
        #expect(try OutputTransform.power.apply([3, 3, 3]).note == "power 1.00")
    }

    @Test func thePowerTransformsSlopeMatchesFiniteDifferences() {
        for lambda in [-1.5, 0, 0.5, 2, 2.5] {
            for v in [-2.0, -0.3, 0, 0.4, 3] {
                let h = 1e-6
                let numeric = (YeoJohnson.transform(v + h, lambda) - YeoJohnson.transform(v - h, lambda)) / (2 * h)
                #expect(abs(numeric - YeoJohnson.slope(v, lambda)) < 1e-6 * max(1, abs(numeric)), "λ \(lambda), v \(v)")
            }
        }
    }

    @Test func theLogTransformTakesTheSizeOfResultsOfOneSign() throws {
        let up = try OutputTransform.log.apply([1, 10, 100])
        #expect(zip(up.values, [0, log(10), log(100)]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(zip(up.slopes, [1, 0.1, 0.01]).allSatisfy { abs($0 - $1) < 1e-12 })
        // A minimised impurity arrives negated: −log(impurity), so less impurity is still higher.
        let down = try OutputTransform.log.apply([-1, -10, -100]).values
        #expect(zip(down, [0, -log(10), -log(100)]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(throws: LabError.self) { try OutputTransform.log.apply([2, 0, 3]) }
        #expect(throws: LabError.self) { try OutputTransform.log.apply([2, -1]) }
    }

    @Test func aPlannerWithALogTransformFindsAPeakSpanningOrdersOfMagnitude() throws {
        let space = PlannerSpace([.real(name: "x", lower: 0, upper: 1, logScale: false)])
        var options = Planner.Options()
        options.outputTransform = .log
        var planner = Planner(space: space, options: options, seed: 5)
        var best = (x: 0.0, y: 0.0)
        for _ in 0..<15 {
            let x = try planner.propose(1)[0].values
            // A rate that spans six orders of magnitude, highest at x = 0.7.
            let y = pow(10, 6 * exp(-30 * pow(x["x"]! - 0.7, 2)) - 3)
            if y > best.y { best = (x["x"]!, y) }
            planner.observe(x, outcome: Outcome(y))
        }
        #expect(abs(best.x - 0.7) < 0.02, "\(best)")
        planner.observe(["x": 0.1], outcome: Outcome(0))
        #expect(throws: LabError.self) { try planner.propose(1) }
    }
}
