import LabCore
import Testing

/// A planner's coordinate becomes a parameter value and is then checked: one that is not a number
/// is refused, never rounded, clamped or read as false.
@Suite struct ProposalCoordinateTests {
    static let here = SourceLocation(file: "p.yaml", line: 1, column: 1)

    @Test(arguments: [Double.nan, .infinity, -.infinity])
    func aCoordinateThatIsNotANumberIsRefusedForEveryKindOfParameter(_ x: Double) {
        let kinds: [ParameterSpec.Kind] = [.real(unit: LabUnit.named("degC")!, lower: 0, upper: 150, logScale: false),
                                           .integer(lower: 0, upper: 10), .boolean, .choice(["a", "b"])]
        for kind in kinds {
            let spec = ParameterSpec(name: "p", kind: kind, location: Self.here)
            #expect(throws: LabError.self, "\(kind)") { try spec.checked(spec.value(coordinate: x)) }
        }
    }

    @Test func theRefusalSaysWhatWasRefused() {
        let spec = ParameterSpec(name: "stir", kind: .boolean, location: Self.here)
        do {
            _ = try spec.checked(spec.value(coordinate: .nan))
            Issue.record("NaN taken as a boolean")
        } catch {
            #expect(error.code == .notANumber && error.message == "refused $stir = nan: not a finite number")
        }
    }

    @Test func aHugeValueIsNamedAsItWasNotAsInfinity() {
        let spec = ParameterSpec(name: "t", kind: .real(unit: LabUnit.named("degC")!, lower: 0, upper: 150, logScale: false), location: Self.here)
        do {
            _ = try spec.checked(spec.value(coordinate: 1e308))
            Issue.record("1e308 degC accepted")
        } catch {
            #expect(error.message == "$t = 1e+308 degC is outside 0.0…150.0 degC")
        }
    }
}
