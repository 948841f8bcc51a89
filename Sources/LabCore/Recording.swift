public import Foundation

/// Where the engine sends what happens in a run. Storage implements it; the engine only sees this.
/// Each call returns once the data is durable: that is what "acknowledged" means.
public protocol RunRecorder: Sendable {
    func beginRun(_ start: RunStart) async throws -> Int64
    /// One step's measurements, stored together in one transaction.
    func record(_ measurements: [MeasurementRecord], run: Int64) async throws
    func note(_ event: RunEvent, run: Int64) async throws
    func finishRun(_ run: Int64, outcome: RunOutcome, outputs: [String: Quantity], error: String?) async throws
    /// Returns once everything handed over so far is stored.
    func flush() async throws
}

/// Everything needed to reproduce and audit a run, captured before it starts.
public struct RunStart: Sendable {
    public var campaignID: Int64?
    public var protocolName: String
    public var protocolSource: SourceText
    public var parameters: [ParameterValue]
    public var chosenBy: String
    public var proposalID: String?
    public var instruments: [String: InstrumentIdentity]
    public var operatorName: String
    public var softwareVersion: String
    public var startedAt: Date
    public var startedMonotonic: Double
    /// The queue entry this run executes, when it came through the daemon's queue.
    public var queueEntryID: Int64?

    public init(campaignID: Int64?, protocolName: String, protocolSource: SourceText, parameters: [ParameterValue],
                chosenBy: String, proposalID: String?, instruments: [String: InstrumentIdentity],
                operatorName: String, softwareVersion: String, startedAt: Date, startedMonotonic: Double,
                queueEntryID: Int64? = nil) {
        self.campaignID = campaignID; self.protocolName = protocolName; self.protocolSource = protocolSource
        self.parameters = parameters; self.chosenBy = chosenBy; self.proposalID = proposalID
        self.instruments = instruments; self.operatorName = operatorName; self.softwareVersion = softwareVersion
        self.startedAt = startedAt; self.startedMonotonic = startedMonotonic; self.queueEntryID = queueEntryID
    }
}

public struct ParameterValue: Sendable, Hashable {
    public var name: String
    public var value: ExprValue

    public init(name: String, value: ExprValue) { self.name = name; self.value = value }
}

/// One reading: a number, or with `array` set a whole array (whose `value` is NaN, unused).
public struct MeasurementRecord: Sendable, Hashable {
    public var stepIndex: Int
    public var channel: ChannelRef
    public var instrument: String
    public var series: String
    public var value: Double
    public var unit: String
    public var wallTime: Date
    public var monotonicTime: Double
    /// An array channel's reading, stored as one blob beside the step's numbers.
    public var array: ArrayReading?

    public init(stepIndex: Int, channel: ChannelRef, instrument: String, series: String, value: Double,
                unit: String, wallTime: Date, monotonicTime: Double, array: ArrayReading? = nil) {
        self.stepIndex = stepIndex; self.channel = channel; self.instrument = instrument; self.series = series
        self.value = value; self.unit = unit; self.wallTime = wallTime; self.monotonicTime = monotonicTime
        self.array = array
    }
}

/// A command sent, a log line, a branch taken, a fault: the run's own story. A `command` is recorded
/// once the instrument acknowledged it; a command that failed is a `fault` naming it. `timing` notes
/// a wait that lasted noticeably longer than the protocol commanded.
public struct RunEvent: Sendable, Hashable {
    public enum Kind: String, Sendable { case command, log, annotation, checkpoint, branch, fault, safeState, timing, transition }
    public var kind: Kind
    public var message: String
    public var wallTime: Date
    public var monotonicTime: Double

    public init(_ kind: Kind, _ message: String, wallTime: Date = Date(), monotonicTime: Double) {
        self.kind = kind; self.message = message; self.wallTime = wallTime; self.monotonicTime = monotonicTime
    }
}

/// How a run ended. After a daemon restart a run that was running is `interrupted`, never resumed.
public enum RunOutcome: String, Sendable, Codable, CaseIterable {
    case completed, failed, aborted, interrupted
}

/// Chooses experiments and learns from their results. The planner implements it; the engine only
/// sees this, so that any strategy (a sweep, a person, a remote planner) can drive a campaign.
public protocol Advisor: Sendable {
    func suggest() async throws -> Suggestion
    /// The result of a suggested experiment; nil means the run failed.
    func observe(_ values: [String: Double], outcome: Outcome?) async throws
    /// The result of an experiment suggested before a restart, when a campaign is resumed: as if
    /// this advisor had suggested it (a sweep moves past the point).
    func replay(_ values: [String: Double], outcome: Outcome?) async throws
    /// A suggestion that will not be run (a person rejected it): forget it as pending.
    func withdraw(_ values: [String: Double]) async
}

extension Advisor {
    public func replay(_ values: [String: Double], outcome: Outcome?) async throws {
        try await observe(values, outcome: outcome)
    }

    public func withdraw(_ values: [String: Double]) async {}
}

/// What a finished experiment tells an advisor.
public struct Outcome: Sendable, Hashable, Codable {
    /// Each objective, oriented so that higher is better.
    public var objectives: [Double]
    /// For each outcome constraint, how far inside it the result is: ≥ 0 met, < 0 broken.
    public var constraintSlacks: [Double]
    /// The noise variance of the (single) objective, where the campaign measures it.
    public var noiseVariance: Double?

    public init(objectives: [Double], constraintSlacks: [Double] = [], noiseVariance: Double? = nil) {
        self.objectives = objectives; self.constraintSlacks = constraintSlacks; self.noiseVariance = noiseVariance
    }

    /// A single objective to maximise.
    public init(_ value: Double) { self.init(objectives: [value]) }

    public var meetsConstraints: Bool { constraintSlacks.allSatisfy { $0 >= 0 } }
}

public struct Suggestion: Sendable, Hashable {
    public var values: [String: Double]
    /// Who chose these values, for provenance ("initial design", "planner").
    public var chosenBy: String
    public var proposalID: String

    public init(values: [String: Double], chosenBy: String, proposalID: String) {
        self.values = values; self.chosenBy = chosenBy; self.proposalID = proposalID
    }
}
