import LabCore
import Testing

@Suite struct UnitTests {
    let degC = LabUnit.named("degC")!, degF = LabUnit.named("degF")!, minutes = LabUnit.named("min")!

    @Test func convertsAbsoluteTemperaturesWithTheirOffsets() throws {
        #expect(try Quantity(25, degC).converted(to: .kelvin).value == 298.15)
        #expect(abs(try Quantity(212, degF).converted(to: degC).value - 100) < 1e-12)
    }

    @Test func convertsTemperatureDifferencesWithoutOffsets() throws {
        #expect(try Quantity(0.5, degC).convertedDifference(to: .kelvin).value == 0.5)
        #expect(abs(try Quantity(9, degF).convertedDifference(to: degC).value - 5) < 1e-12)
    }

    @Test func convertingToTheSameUnitChangesNoBit() throws {
        let value = 73.92718048795962
        #expect(try Quantity(value, degC).converted(to: degC).value == value)
        #expect(try Quantity(value, minutes).converted(to: minutes).value == value)
    }

    @Test func refusesToConvertAcrossDimensions() {
        #expect(throws: LabError.self) { try Quantity(3, LabUnit.named("mL")!).converted(to: degC) }
    }

    @Test func knowsDurationsInSeconds() {
        #expect(Quantity(2, minutes).seconds == 120)
        #expect(Quantity(2, degC).seconds == nil)
    }
}

@Suite struct ExpressionTests {
    let degC = LabUnit.named("degC")!

    @Test func computesSeriesFunctions() throws {
        let env = ExprEnvironment(series: ["a": Series(unit: .one, values: [1, 2, 3, 6], times: [0, 1, 2, 3])])
        func value(_ f: SeriesFunction) throws -> Double { try env.quantity(.call(f, .series("a"))).value }
        #expect(try value(.mean) == 3)
        #expect(try value(.min) == 1)
        #expect(try value(.max) == 6)
        #expect(try value(.last) == 6)
        #expect(try value(.count) == 4)
        #expect(abs(try value(.std) - (14.0 / 3).squareRoot()) < 1e-12)
        #expect(try value(.first) == 1)
        // Least squares through (0,1) (1,2) (2,3) (3,6): slope 1.6 per second.
        #expect(abs(try value(.slope) - 1.6) < 1e-12)
    }

    @Test func aBareNumberTakesTheUnitOfTheQuantityBesideIt() throws {
        let env = ExprEnvironment(quantities: ["t": Quantity(60, degC)])
        #expect(try env.condition(.binary(.greater, .parameter("t"), .number(Quantity(50)))))
        #expect(try env.quantity(.binary(.add, .parameter("t"), .number(Quantity(5)))) == Quantity(65, degC))
    }

    @Test func convertsWithIn() throws {
        let kelvin = try ExprEnvironment().quantity(.convert(.number(Quantity(25, degC)), .kelvin))
        #expect(kelvin == Quantity(298.15, .kelvin))
    }

    @Test func shortCircuitsSoAnEmptySeriesIsNotRead() throws {
        let guarded = Expr.binary(.and, .binary(.greater, .call(.count, .series("a")), .number(Quantity(0))),
                                  .binary(.greater, .call(.last, .series("a")), .number(Quantity(1))))
        #expect(try ExprEnvironment().condition(guarded) == false)
    }

    @Test func comparesChoicesAsText() throws {
        let env = ExprEnvironment(parameters: ["catalyst": .text("Pd1")])
        #expect(try env.condition(.binary(.equal, .parameter("catalyst"), .text("Pd1"))))
        #expect(try env.condition(.binary(.notEqual, .parameter("catalyst"), .text("Ni1"))))
    }

    @Test func addsADifferenceToATemperature() throws {
        let sum = Expr.binary(.add, .number(Quantity(20, degC)), .number(Quantity(5, .kelvin)))
        #expect(try ExprEnvironment().quantity(sum) == Quantity(25, degC))
    }

    @Test func comparesAcrossUnitsOfOneDimension() throws {
        let hotter = Expr.binary(.greater, .number(Quantity(300, .kelvin)), .number(Quantity(25, degC)))
        #expect(try ExprEnvironment().condition(hotter))
    }

    @Test func refusesToAddATemperatureToAVolume() {
        let bad = Expr.binary(.add, .number(Quantity(20, degC)), .number(Quantity(5, LabUnit.named("mL")!)))
        #expect(throws: LabError.self) { try ExprEnvironment().evaluate(bad) }
    }

    @Test func reportsAMissingSeriesInsteadOfInventingAValue() {
        #expect(throws: LabError.self) { try ExprEnvironment().quantity(.call(.mean, .series("absorbance"))) }
    }
}

@Suite struct RandomTests {
    @Test func eachStreamOfOneSeedIsItsOwnSequenceNotAShiftOfTheNext() {
        // Seeding proposal n with seed + n·γ (γ SplitMix64's own step) made proposal n+1 replay
        // proposal n's draws one step later; derived streams must share no run of outputs.
        func outputs(_ stream: UInt64, _ count: Int) -> [UInt64] {
            var g = SplitMix64(seed: 42, stream: stream)
            return (0..<count).map { _ in g.next() }
        }
        for stream in UInt64(0)..<20 {
            let here = Set(outputs(stream, 64)), next = outputs(stream + 1, 64)
            #expect(here.isDisjoint(with: next))
        }
        #expect(outputs(3, 4) == outputs(3, 4))
    }
}
