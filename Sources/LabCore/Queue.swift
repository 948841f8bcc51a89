public import Foundation

/// Where a queued experiment is in its life. `queued` waits for its instruments and its start time;
/// `held` and `awaitingApproval` wait for a person; `running` has a run; `paused` has a run that
/// waits for a person, holding its instruments; the rest are final.
public enum QueueState: String, Sendable, Codable, CaseIterable {
    case queued, held, running, paused, completed, failed, aborted, interrupted, cancelled, rejected
    case awaitingApproval = "awaiting_approval"

    public var isFinal: Bool {
        switch self {
        case .queued, .held, .awaitingApproval, .running, .paused: false
        case .completed, .failed, .aborted, .interrupted, .cancelled, .rejected: true
        }
    }

    public init(_ outcome: RunOutcome) {
        switch outcome {
        case .completed: self = .completed
        case .failed: self = .failed
        case .aborted: self = .aborted
        case .interrupted: self = .interrupted
        }
    }
}

/// What a person or a campaign asks the daemon to run: one protocol with its parameter values.
public struct Submission: Sendable {
    public var protocolSource: SourceText
    public var protocolName: String
    public var parameters: [String: ExprValue]
    /// Higher runs first; equal priorities run in submission order.
    public var priority: Int
    /// Not started before this time.
    public var notBefore: Date?
    public var owner: String
    public var project: String?
    /// The client's key for this submission: a retry with the same key is not queued twice.
    public var requestID: String?
    /// Queued again by itself after a daemon restart (otherwise it is held for a person).
    public var autostart: Bool
    public var campaignID: Int64?
    public var proposalID: String?
    public var chosenBy: String
    /// Waits for a person's approval before it may start.
    public var needsApproval: Bool

    public init(protocolSource: SourceText, protocolName: String, parameters: [String: ExprValue], priority: Int = 0,
                notBefore: Date? = nil, owner: String, project: String? = nil, requestID: String? = nil,
                autostart: Bool = false, campaignID: Int64? = nil, proposalID: String? = nil, chosenBy: String = "user",
                needsApproval: Bool = false) {
        self.protocolSource = protocolSource; self.protocolName = protocolName; self.parameters = parameters
        self.priority = priority; self.notBefore = notBefore; self.owner = owner; self.project = project
        self.requestID = requestID; self.autostart = autostart; self.campaignID = campaignID
        self.proposalID = proposalID; self.chosenBy = chosenBy; self.needsApproval = needsApproval
    }
}

/// One entry of the queue as stored.
public struct QueueEntry: Sendable, Identifiable {
    public var id: Int64
    public var submission: Submission
    public var state: QueueState
    /// Order among entries of equal priority (smaller first); `move` changes it.
    public var position: Double
    /// Why it is held, rejected or cancelled, and by whom.
    public var note: String?
    /// The run that executes it, once started.
    public var runID: Int64?
    public var submittedAt: Date
    /// Simulated duration of the protocol with these parameters, in seconds, once estimated.
    public var estimatedSeconds: Double?

    public init(id: Int64, submission: Submission, state: QueueState, position: Double, note: String? = nil,
                runID: Int64? = nil, submittedAt: Date, estimatedSeconds: Double? = nil) {
        self.id = id; self.submission = submission; self.state = state; self.position = position; self.note = note
        self.runID = runID; self.submittedAt = submittedAt; self.estimatedSeconds = estimatedSeconds
    }
}

/// The queue as the scheduler keeps it: storage implements it; acknowledged means committed.
public protocol QueueStore: Sendable {
    /// Adds every submission in one transaction, or none. A submission whose request id is already
    /// stored is not added again: the stored entry is returned in its place.
    func enqueue(_ submissions: [Submission]) async throws -> [QueueEntry]
    /// Entries not yet final, in no particular order.
    func openEntries() async throws -> [QueueEntry]
    func entry(_ id: Int64) async throws -> QueueEntry?
    /// Changes an entry's state if it is in one of `from`; returns the entry after, or nil if it was not.
    func transition(_ id: Int64, from: Set<QueueState>, to: QueueState, note: String?) async throws -> QueueEntry?
    func setPosition(_ id: Int64, priority: Int, position: Double) async throws
    func setEstimate(_ id: Int64, seconds: Double) async throws
    /// After a restart: `running` and `paused` entries become `interrupted`; `queued` ones without autostart are held.
    func recoverAfterRestart() async throws
}
