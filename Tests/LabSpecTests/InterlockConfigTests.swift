import Foundation
import LabCore
import LabSpec
import Testing

/// `interlocks:` in a lab config: what it accepts, and where and why it refuses the rest.
@Suite struct InterlockConfigTests {
    static let driver = """
        driver: test-reactor
        transport: modbus
        channels:
          temperature: { input: 0, type: float32, unit: degC }
          pressure:    { input: 2, type: float32, unit: bar }
          sash_closed: { discrete: 0 }
          setpoint:    { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
          dose:        { holding: 102, type: float32, unit: mL, access: w }
        """

    /// Loads a lab of two instruments (`reactor`, `hood`) with these interlocks.
    static func load(_ interlocks: String) throws -> LabConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("interlocks-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try driver.write(to: dir.appendingPathComponent("reactor.yaml"), atomically: true, encoding: .utf8)
        let lab = """
            lab: test
            instruments:
              reactor: { driver: reactor.yaml, simulate: true }
              hood:    { driver: reactor.yaml, simulate: true }
            interlocks:

            """ + interlocks
        let path = dir.appendingPathComponent("lab.yaml").path
        try lab.write(toFile: path, atomically: true, encoding: .utf8)
        return try LabConfig.load(path: path)
    }

    /// The diagnostics of a config that must not load.
    static func problems(_ interlocks: String) throws -> [Diagnostic] {
        let error = try #require(throws: ValidationError.self) { try load(interlocks) }
        return error.diagnostics
    }

    @Test func eachKindOfConditionLoadsWithItsThresholdsInTheChannelsUnit() throws {
        let config = try Self.load("""
              hood-sash:   { channel: hood.sash_closed, is: false, stops: [reactor, hood] }
              reactor-hot: { channel: reactor.temperature, above: 284 degF, stops: [reactor], every: 500 ms }
              too-cold:    { channel: reactor.temperature, below: 278.15 K }
              pressure:    { channel: reactor.pressure, outside: [800 mbar, 3 bar] }
            """)
        let byName = Dictionary(uniqueKeysWithValues: config.interlocks.map { ($0.name, $0) })
        #expect(config.interlocks.map(\.name) == ["hood-sash", "reactor-hot", "too-cold", "pressure"])
        #expect(byName["hood-sash"]?.condition == .equals(false))
        #expect(byName["hood-sash"]?.stops == ["hood", "reactor"])
        let hot = try #require(byName["reactor-hot"])
        guard case .above(let limit) = hot.condition else { Issue.record("not 'above': \(hot.condition)"); return }
        #expect(abs(limit - 140) < 1e-9)
        #expect(hot.everySeconds == 0.5)
        #expect(hot.instrument == "reactor" && hot.channel == "temperature" && hot.unit.symbol == "degC")
        #expect(hot.location.line == 7)
        guard case .below(let floor) = byName["too-cold"]?.condition else { Issue.record("not 'below'"); return }
        #expect(abs(floor - 5) < 1e-9)
        #expect(byName["too-cold"]?.everySeconds == 1)
        #expect(byName["pressure"]?.condition == .outside(0.8...3))
    }

    @Test func anInterlockThatNamesNoInstrumentsStopsEveryInstrumentOfTheLab() throws {
        let config = try Self.load("  p: { channel: reactor.pressure, above: 3 bar }\n")
        #expect(config.interlocks.first?.stops == ["hood", "reactor"])
    }

    @Test func aLabWithoutInterlocksHasNone() throws {
        let config = try Self.load("  {}\n")
        #expect(config.interlocks.isEmpty)
    }

    @Test func aMisspeltChannelIsReportedAtItsPlaceWithASuggestion() throws {
        let problems = try Self.problems("  hot: { channel: reactor.temprature, above: 140 degC }\n")
        #expect(problems.count == 1)
        #expect(problems.first?.message == "instrument 'reactor' (driver 'test-reactor') has no channel 'temprature'")
        #expect(problems.first?.hint == "did you mean 'temperature'?")
        #expect(problems.first?.location.line == 6)
        #expect(problems.first?.location.column == 19)
    }

    @Test func anUnknownInstrumentIsRefusedInTheChannelAndInStops() throws {
        let problems = try Self.problems("  hot: { channel: reacter.temperature, above: 140 degC, stops: [reactor, pmup] }\n")
        #expect(problems.map(\.message) == ["the lab has no instrument 'reacter'", "the lab has no instrument 'pmup'"])
        #expect(problems.first?.hint == "did you mean 'reactor'?")
    }

    @Test func aChannelThatCannotBeReadCannotBeWatched() throws {
        let problems = try Self.problems("  dose: { channel: reactor.dose, above: 5 mL }\n")
        #expect(problems.map(\.message) == ["'reactor.dose' cannot be read, so it cannot be watched"])
    }

    @Test func aThresholdInAnotherDimensionOrWithoutAUnitIsRefused() throws {
        let problems = try Self.problems("""
              hot: { channel: reactor.temperature, above: 3 bar }
              warm: { channel: reactor.temperature, above: 140 }
            """)
        #expect(problems.count == 2)
        #expect(problems[0].message.contains("cannot convert bar"))
        #expect(problems[1].message == "a threshold on 'reactor.temperature' needs its unit")
        #expect(problems[1].hint == "write it as in '140.0 degC'")
    }

    @Test func isIsOnlyForDigitalChannelsAndComparisonsOnlyForNumbers() throws {
        let problems = try Self.problems("""
              a: { channel: reactor.temperature, is: false }
              b: { channel: hood.sash_closed, above: 1 }
            """)
        #expect(problems.count == 2)
        #expect(problems[0].message.hasPrefix("'is:' is for a digital (bool) channel"))
        #expect(problems[1].message == "'above:' compares numbers; 'hood.sash_closed' is a digital (bool) channel")
    }

    @Test func exactlyOneConditionIsRequired() throws {
        let problems = try Self.problems("""
              none: { channel: reactor.temperature }
              two: { channel: reactor.temperature, above: 140 degC, below: 5 degC }
            """)
        #expect(problems.map(\.message) == ["interlock 'none' has no condition",
                                            "interlock 'two' has both 'above' and 'below'; give one condition"])
        #expect(problems[1].hint == "for a band use 'outside: [low, high]'")
        #expect(problems[1].location.column == 57)
    }

    @Test func aBandMustBeTwoValuesLowThenHigh() throws {
        let problems = try Self.problems("""
              a: { channel: reactor.pressure, outside: [3 bar, 1 bar] }
              b: { channel: reactor.pressure, outside: 3 bar }
            """)
        #expect(problems.map(\.message) == ["the band's low end 3.0 bar is not below its high end 1.0 bar",
                                            "outside must be a band [low, high], as in 'outside: [0.8 bar, 3 bar]'"])
    }

    @Test func everyMustBeAPositiveDurationAndUnknownKeysAreRefused() throws {
        let problems = try Self.problems("""
              a: { channel: reactor.pressure, above: 3 bar, every: 0 s }
              b: { channel: reactor.pressure, above: 3 bar, every: 2 }
              c: { channel: reactor.pressure, above: 3 bar, stop: [reactor] }
              d: { channel: reactor.pressure, above: 3 bar, stops: [] }
            """)
        #expect(problems.map(\.message) == ["every must be a positive duration", "every must be a duration",
                                            "unknown key 'stop' in interlock 'c'", "interlock 'd' stops nothing"])
        #expect(problems[2].hint == "did you mean 'stops'?")
    }
}

/// `InterlockSpec.evaluate`: when a reading asserts an interlock, and what it says.
@Suite struct InterlockEvaluationTests {
    static func spec(_ condition: InterlockSpec.Condition, unit: LabUnit = LabUnit.named("degC")!) -> InterlockSpec {
        InterlockSpec(name: "x", instrument: "reactor", channel: "temperature", unit: unit, condition: condition,
                      stops: ["reactor"], location: SourceLocation(file: "lab.yaml", line: 1, column: 1))
    }

    @Test func aboveAssertsOnlyStrictlyAboveTheLimit() {
        let spec = Self.spec(.above(140))
        #expect(spec.evaluate(.real(141.2)) == (true, "reactor.temperature read 141.2 degC, above 140 degC"))
        #expect(spec.evaluate(.real(140)).asserted == false)
        #expect(spec.evaluate(.real(20)) == (false, "reactor.temperature read 20 degC, not above 140 degC"))
    }

    @Test func belowAssertsOnlyStrictlyBelowTheFloor() {
        let spec = Self.spec(.below(5))
        #expect(spec.evaluate(.real(4.5)) == (true, "reactor.temperature read 4.5 degC, below 5 degC"))
        #expect(spec.evaluate(.real(5)).asserted == false)
    }

    @Test func outsideAssertsBeyondEitherEndButNotOnIt() {
        let spec = Self.spec(.outside(0.8...3), unit: LabUnit.named("bar")!)
        #expect(spec.evaluate(.real(0.5)) == (true, "reactor.temperature read 0.5 bar, outside [0.8 bar, 3 bar]"))
        #expect(spec.evaluate(.real(3.1)).asserted)
        #expect(spec.evaluate(.real(0.8)).asserted == false)
        #expect(spec.evaluate(.real(3)).asserted == false)
    }

    @Test func aDigitalInterlockAssertsOnItsValue() {
        let spec = Self.spec(.equals(false), unit: .one)
        #expect(spec.evaluate(.bool(false)) == (true, "reactor.temperature read false"))
        #expect(spec.evaluate(.bool(true)).asserted == false)
        #expect(spec.evaluate(.real(0)).asserted)
    }

    @Test func aReadingThatIsNotANumberAssertsEveryNumericCondition() {
        for condition in [InterlockSpec.Condition.above(140), .below(5), .outside(0...1)] {
            #expect(Self.spec(condition).evaluate(.real(.nan)).asserted)
        }
    }
}
