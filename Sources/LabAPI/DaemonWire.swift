public import LabCore

/// The wire types of the daemon's queue and campaign methods (docs/api.md). Names on the wire are
/// snake_case; parameter values are `{value, unit}`, booleans or strings (`ExprValue`'s coding).

public struct WireDiagnostic: Codable, Sendable, Hashable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String
    public var hint: String?
    public init(file: String, line: Int, column: Int, message: String, hint: String?) {
        self.file = file; self.line = line; self.column = column; self.message = message; self.hint = hint
    }
}

/// A file as a client read it: where it is (for diagnostics and `include`s) and its text.
public struct WireFile: Codable, Sendable, Hashable {
    public var path: String
    public var text: String
    public init(path: String, text: String) { self.path = path; self.text = text }
}

public struct QueueItemParams: RPCParams {
    public static let parameters: [String: RPCParameter] = [
        "protocol": RPCParameter(.object, required: true, about: "the protocol file: {path, text}"),
        "parameters": RPCParameter(.object, required: false, about: "parameter values by name"),
        "priority": RPCParameter(.integer, required: false, about: "higher runs first; default 0"),
        "not_before": RPCParameter(.string, required: false, about: "an ISO 8601 time before which it does not start"),
        "project": RPCParameter(.string, required: false, about: "the project it is for"),
        "request_id": RPCParameter(.string, required: false, about: "the client's key: a retry is not queued twice"),
        "autostart": RPCParameter(.boolean, required: false, about: "queued again by itself after a daemon restart"),
    ]
    /// Required by `queue.add`; in `queue.add_many` an item may leave it out to use the call's own.
    public var protocolFile: WireFile?
    public var parameters: [String: ExprValue]?
    public var priority: Int?
    public var notBefore: String?
    public var project: String?
    public var requestID: String?
    public var autostart: Bool?

    enum CodingKeys: String, CodingKey {
        case parameters, priority, project, autostart
        case protocolFile = "protocol", notBefore = "not_before", requestID = "request_id"
    }

    public init(protocolFile: WireFile?, parameters: [String: ExprValue]? = nil, priority: Int? = nil, notBefore: String? = nil,
                project: String? = nil, requestID: String? = nil, autostart: Bool? = nil) {
        self.protocolFile = protocolFile; self.parameters = parameters; self.priority = priority; self.notBefore = notBefore
        self.project = project; self.requestID = requestID; self.autostart = autostart
    }
}

public struct QueueAddManyParams: RPCParams {
    public static let parameters = [
        "items": RPCParameter(.array, required: true, about: "queue.add parameters, one per run"),
        "protocol": RPCParameter(.object, required: false, about: "the protocol file of every item that names none: {path, text}"),
    ]
    public var items: [QueueItemParams]
    /// Sent once for a thousand runs of one protocol.
    public var protocolFile: WireFile?

    enum CodingKeys: String, CodingKey { case items, protocolFile = "protocol" }

    public init(items: [QueueItemParams], protocolFile: WireFile? = nil) { self.items = items; self.protocolFile = protocolFile }
}

public struct QueueListParams: RPCParams {
    public static let parameters = [
        "all": RPCParameter(.boolean, required: false, about: "also the entries that have ended"),
        "campaign": RPCParameter(.integer, required: false, about: "only this campaign's entries"),
    ]
    public var all: Bool?
    public var campaign: Int64?
    public init(all: Bool? = nil, campaign: Int64? = nil) { self.all = all; self.campaign = campaign }
}

public struct RunRef: RPCParams {
    public static let parameters = ["run": RPCParameter(.integer, required: true, about: "a run (queue entry) number")]
    public var run: Int64
    public init(run: Int64) { self.run = run }
}

public struct QueueMoveParams: RPCParams {
    public static let parameters = [
        "run": RPCParameter(.integer, required: true, about: "a queued run's number"),
        "priority": RPCParameter(.integer, required: false, about: "its new priority"),
        "before": RPCParameter(.integer, required: false, about: "the queued run it goes before"),
    ]
    public var run: Int64
    public var priority: Int?
    public var before: Int64?
    public init(run: Int64, priority: Int? = nil, before: Int64? = nil) { self.run = run; self.priority = priority; self.before = before }
}

public struct CampaignStartParams: RPCParams {
    public static let parameters = [
        "campaign": RPCParameter(.object, required: true, about: "the campaign file: {path, text}"),
        "protocol": RPCParameter(.object, required: false, about: "the protocol file it names: {path, text}"),
        "approval": RPCParameter(.boolean, required: false, about: "its proposals wait for a person's approval"),
        "budget": RPCParameter(.integer, required: false, about: "at most this many experiments, instead of the file's budget"),
    ]
    public var campaign: WireFile
    public var protocolFile: WireFile?
    public var approval: Bool?
    public var budget: Int?

    enum CodingKeys: String, CodingKey { case campaign, approval, budget, protocolFile = "protocol" }

    public init(campaign: WireFile, protocolFile: WireFile?, approval: Bool? = nil, budget: Int? = nil) {
        self.campaign = campaign; self.protocolFile = protocolFile; self.approval = approval; self.budget = budget
    }
}

public struct CampaignRef: RPCParams {
    public static let parameters = ["campaign": RPCParameter(.integer, required: true, about: "a campaign number")]
    public var campaign: Int64
    public init(campaign: Int64) { self.campaign = campaign }
}

/// A queue entry as a client sees it. `run` is both the entry's number and its run's.
public struct WireEntry: Codable, Sendable, Hashable {
    public var run: Int64
    public var state: String
    public var protocolName: String
    public var parameters: [String: ExprValue]
    public var priority: Int
    public var owner: String
    public var project: String?
    public var campaign: Int64?
    public var proposal: String?
    public var chosenBy: String
    public var note: String?
    public var submittedAt: String
    public var notBefore: String?
    public var estimatedSeconds: Double?
    public var expectedStart: String?
    public var expectedEnd: String?

    enum CodingKeys: String, CodingKey {
        case run, state, parameters, priority, owner, project, campaign, proposal, note
        case protocolName = "protocol", chosenBy = "chosen_by", submittedAt = "submitted_at", notBefore = "not_before"
        case estimatedSeconds = "estimated_seconds", expectedStart = "expected_start", expectedEnd = "expected_end"
    }

    public init(run: Int64, state: String, protocolName: String, parameters: [String: ExprValue], priority: Int, owner: String,
                project: String?, campaign: Int64?, proposal: String?, chosenBy: String, note: String?, submittedAt: String,
                notBefore: String?, estimatedSeconds: Double?, expectedStart: String?, expectedEnd: String?) {
        self.run = run; self.state = state; self.protocolName = protocolName; self.parameters = parameters
        self.priority = priority; self.owner = owner; self.project = project; self.campaign = campaign
        self.proposal = proposal; self.chosenBy = chosenBy; self.note = note; self.submittedAt = submittedAt
        self.notBefore = notBefore; self.estimatedSeconds = estimatedSeconds; self.expectedStart = expectedStart
        self.expectedEnd = expectedEnd
    }
}

public struct WireExperiment: Codable, Sendable, Hashable {
    public var index: Int
    public var run: Int64
    /// The values the campaign varied, in the protocol's units.
    public var parameters: [String: ExprValue]
    public var chosenBy: String
    public var objective: Double?
    public var best: Double?
    public var outcome: String
    public var error: String?

    enum CodingKeys: String, CodingKey { case index, run, parameters, objective, best, outcome, error, chosenBy = "chosen_by" }

    public init(index: Int, run: Int64, parameters: [String: ExprValue], chosenBy: String, objective: Double?, best: Double?,
                outcome: String, error: String?) {
        self.index = index; self.run = run; self.parameters = parameters; self.chosenBy = chosenBy
        self.objective = objective; self.best = best; self.outcome = outcome; self.error = error
    }
}

public struct WireCampaign: Codable, Sendable, Hashable {
    public var campaign: Int64
    public var name: String
    public var state: String
    public var note: String?
    public var objective: String?
    public var experiments: [WireExperiment]
    public var best: Double?
    /// The runs queued for it and not yet ended.
    public var waiting: [Int64]

    public init(campaign: Int64, name: String, state: String, note: String?, objective: String?, experiments: [WireExperiment],
                best: Double?, waiting: [Int64]) {
        self.campaign = campaign; self.name = name; self.state = state; self.note = note; self.objective = objective
        self.experiments = experiments; self.best = best; self.waiting = waiting
    }
}

public struct PauseParams: RPCParams {
    public static let parameters = [
        "run": RPCParameter(.integer, required: true, about: "a running run's number"),
        "now": RPCParameter(.boolean, required: false, about: "pause at once (and rewind on resume) instead of at the next checkpoint"),
    ]
    public var run: Int64
    public var now: Bool?
    public init(run: Int64, now: Bool? = nil) { self.run = run; self.now = now }
}

public struct ResumeParams: RPCParams {
    public static let parameters = [
        "run": RPCParameter(.integer, required: true, about: "a paused run's number"),
        "repeat_step": RPCParameter(.boolean, required: false,
                                    about: "go back to the checkpoint even though that repeats a step marked not repeatable"),
    ]
    public var run: Int64
    public var repeatStep: Bool?

    enum CodingKeys: String, CodingKey { case run, repeatStep = "repeat_step" }

    public init(run: Int64, repeatStep: Bool? = nil) { self.run = run; self.repeatStep = repeatStep }
}

/// A run's state after a pause, resume, abort or halt: `running`, `pausing`, `paused(instrument_lost)`,
/// `aborting`, `halting`, `finished`; and what the transition was.
public struct WireRunControl: Codable, Sendable, Hashable {
    public var run: Int64
    public var state: String
    public var note: String?
    public init(run: Int64, state: String, note: String?) { self.run = run; self.state = state; self.note = note }
}

public struct AlertListParams: RPCParams {
    public static let parameters = ["all": RPCParameter(.boolean, required: false, about: "also the acknowledged alerts")]
    public var all: Bool?
    public init(all: Bool? = nil) { self.all = all }
}

public struct AlertRef: RPCParams {
    public static let parameters = ["alert": RPCParameter(.integer, required: true, about: "an alert's number")]
    public var alert: Int64
    public init(alert: Int64) { self.alert = alert }
}

/// An alert: what happened, when, to which runs and instrument, and who acknowledged it. `state` is
/// `active` (its condition holds), `cleared` (it may be acknowledged) or `acknowledged`.
public struct WireAlert: Codable, Sendable, Hashable {
    public var alert: Int64
    public var kind: String
    public var subject: String
    public var message: String
    public var state: String
    public var raisedAt: String
    public var runs: [Int64]
    /// Of `runs`, those still paused: they may be resumed once no alert on their instruments is latched.
    public var pausedRuns: [Int64]
    public var instrument: String?
    public var clearedAt: String?
    public var acknowledgedAt: String?
    public var acknowledgedBy: String?

    enum CodingKeys: String, CodingKey {
        case alert, kind, subject, message, state, runs, instrument
        case pausedRuns = "paused_runs", raisedAt = "raised_at", clearedAt = "cleared_at", acknowledgedAt = "acknowledged_at", acknowledgedBy = "acknowledged_by"
    }

    public init(alert: Int64, kind: String, subject: String, message: String, state: String, raisedAt: String, runs: [Int64],
                pausedRuns: [Int64], instrument: String?, clearedAt: String?, acknowledgedAt: String?, acknowledgedBy: String?) {
        self.alert = alert; self.kind = kind; self.subject = subject; self.message = message; self.state = state
        self.raisedAt = raisedAt; self.runs = runs; self.pausedRuns = pausedRuns; self.instrument = instrument; self.clearedAt = clearedAt
        self.acknowledgedAt = acknowledgedAt; self.acknowledgedBy = acknowledgedBy
    }
}
