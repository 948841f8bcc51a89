import LabCore
import Testing

/// A limit check compares a converted value with a limit: the conversion must not invent a last digit.
@Suite struct ExactConversionTests {
    static let celsius = LabUnit.named("degC")!, kelvin = LabUnit.named("K")!, fahrenheit = LabUnit.named("degF")!
    static let millicelsius = LabUnit.named("mdegC")!

    func inCelsius(_ x: Double, _ unit: LabUnit) throws -> Double { try Quantity(x, unit).converted(to: Self.celsius).value }

    @Test func kelvinAtTheLimitIsExactlyTheLimitInCelsius() throws {
        #expect(try inCelsius(423.15, Self.kelvin) == 150)
        #expect(try inCelsius(423.16, Self.kelvin) > 150)
        #expect(try inCelsius(423.15.nextUp, Self.kelvin) > 150)
        #expect(try inCelsius(273.15, Self.kelvin) == 0)
        #expect(try inCelsius(273.15.nextDown, Self.kelvin) < 0)
        // Plain Double arithmetic gives -49.99999999999997 and 100.10000000000002 here.
        #expect(try inCelsius(223.15, Self.kelvin) == -50)
        #expect(try inCelsius(373.25, Self.kelvin) == 100.1)
    }

    @Test func fahrenheitAndMillidegreesConvertExactlyToo() throws {
        #expect(try inCelsius(302, Self.fahrenheit) == 150)
        #expect(try inCelsius(302.0000001, Self.fahrenheit) > 150)
        #expect(try inCelsius(32, Self.fahrenheit) == 0)
        #expect(try inCelsius(467.6, Self.fahrenheit) == 242)  // not 242.0000000000001
        #expect(try inCelsius(150_000, Self.millicelsius) == 150)
        #expect(try inCelsius(150_000.001, Self.millicelsius) > 150)
        #expect(try Quantity(150, Self.celsius).converted(to: Self.kelvin).value == 423.15)
        #expect(try Quantity(150, Self.celsius).converted(to: Self.fahrenheit).value == 302)
    }

    @Test func ratesAndDifferencesConvertExactly() throws {
        let perMinute = LabUnit.named("degC/min")!, perSecond = LabUnit.named("K/s")!
        #expect(try Quantity(0.3, perMinute).convertedDifference(to: perSecond).value == 0.005)
        #expect(try Quantity(0.1, LabUnit.named("L")!).converted(to: LabUnit.named("mL")!).value == 100)
    }

    @Test func valuesBeyondDecimalPrecisionStillConvert() throws {
        #expect(try inCelsius(1e300, Self.kelvin) == 1e300)
        #expect(try inCelsius(-1e-300, Self.millicelsius) < 0)
        #expect(try inCelsius(.infinity, Self.kelvin) == .infinity)
        #expect(try inCelsius(.nan, Self.kelvin).isNaN)
    }
}
