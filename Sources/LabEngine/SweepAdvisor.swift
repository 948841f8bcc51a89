public import LabCore

/// Hands out the points of a sweep in order; a sweep learns nothing from results.
public actor SweepAdvisor: Advisor {
    private let points: [[String: Double]]
    private var next = 0

    /// `points` are parameter values as a sweep lists them; they become the advisor's numbers.
    public init(points: [[String: ExprValue]], definition: ProtocolDefinition) {
        self.points = points.map { point in
            point.reduce(into: [:]) { numbers, entry in
                numbers[entry.key] = definition.parameter(named: entry.key)?.coordinate(of: entry.value)
            }
        }
    }

    public var count: Int { points.count }

    public func suggest() throws -> Suggestion {
        guard next < points.count else { throw LabError(.planner, "the sweep has no more points") }
        next += 1
        return Suggestion(values: points[next - 1], chosenBy: "sweep point \(next) of \(points.count)", proposalID: "sweep-\(next)")
    }

    public func observe(_ values: [String: Double], outcome: Outcome?) {}

    public func replay(_ values: [String: Double], outcome: Outcome?) { next = min(next + 1, points.count) }
}
