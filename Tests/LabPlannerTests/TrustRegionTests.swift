import Foundation
@testable import LabPlanner
import Testing

/// The trust region every other proposal climbs in (decision 18): sized from the results in the
/// order they came, shaped by the length scales, never outside the unit cube.
@Suite struct TrustRegionTests {
    /// The region's length after the initial design's `[0]` and then `results`.
    static func length(after results: [Double], dimensions: Int = 2) -> Double? {
        TrustRegion(centre: Array(repeating: 0.5, count: dimensions), results: [0] + results, initial: 1,
                    lengthScales: Array(repeating: 1, count: dimensions))?.length
    }

    @Test func growsAfterThreeImprovementsInARowAndShrinksAfterFourResultsWithout() {
        #expect(Self.length(after: []) == nil, "no region while only the initial design has run")
        #expect(Self.length(after: [1, 2]) == 0.8)
        #expect(Self.length(after: [1, 2, 3]) == 1.6)
        #expect(Self.length(after: [1, 2, 3, 4, 5, 6]) == 1.6, "at most 1.6, the whole cube's side and more")
        #expect(Self.length(after: [1, 2, 0, 3]) == 0.8, "a result without improvement resets the count of improvements")
        // Improvements smaller than a thousandth of the results' range count as none.
        #expect(Self.length(after: [1000, 1000.5, 1000.9, 1000.95, 1000.97]) == 0.4)
        #expect(Self.length(after: [1] + Array(repeating: 0.5, count: 8)) == 0.2)
    }

    @Test func shrinksAfterAsManyResultsWithoutImprovementAsThereAreInputsPastFour() {
        let flat = [1] + Array(repeating: 0.5, count: 6)
        #expect(Self.length(after: flat, dimensions: 6) == 0.4)
        #expect(Self.length(after: flat, dimensions: 4) == 0.4)
        #expect(Self.length(after: Array(flat.prefix(5)), dimensions: 6) == 0.8)
    }

    @Test func startsAgainAtItsInitialSizeOnceTiny() {
        // Seven halvings, of four results each, reach 0.8/128; the eighth goes below it.
        #expect(Self.length(after: [1] + Array(repeating: 0.5, count: 28)) == 0.8 / 128)
        #expect(Self.length(after: [1] + Array(repeating: 0.5, count: 32)) == 0.8)
    }

    @Test func isLongAlongInputsThatMatterLittleAndStaysInTheCube() throws {
        let region = try #require(TrustRegion(centre: [0.5, 0.95], results: [0, 1, 2], initial: 1, lengthScales: [0.1, 0.4]))
        // Sides 0.4 and 1.6 (geometric mean 0.8), the second cut at the cube's face.
        #expect(abs((region.upper[0] - region.lower[0]) - 0.4) < 1e-12)
        #expect(region.upper[1] == 1 && abs(region.lower[1] - 0.15) < 1e-12)
        #expect(region.clamp([0, 2]) == [region.lower[0], 1])
        let corner = region.scale([0, 1])
        #expect(corner[0] == region.lower[0] && abs(corner[1] - 1) < 1e-12)
    }
}
