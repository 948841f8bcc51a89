public import Foundation

/// Something a person must see and acknowledge: an interlock that tripped, an instrument that was
/// lost, a read-back that disagreed, a watchdog that fired. An alert latches: it stays raised, and
/// what it paused stays paused, until someone acknowledges it after its condition has cleared.
public struct Alert: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case interlock, watchdog, other
        case instrumentLost = "instrument_lost"
        case readBack = "read_back"
    }

    public var id: Int64
    public var kind: Kind
    /// What raised it: the interlock's or the instrument's name. One alert is open per kind and subject.
    public var subject: String
    /// What happened, as it first happened.
    public var message: String
    public var raisedAt: Date
    /// The runs it affected (paused, or refused a start), in the order they were added.
    public var runIDs: [Int64]
    public var instrument: String?
    /// When its condition last cleared (the interlock released, the instrument came back); nil while it holds.
    public var clearedAt: Date?
    public var acknowledgedAt: Date?
    public var acknowledgedBy: String?

    public init(id: Int64, kind: Kind, subject: String, message: String, raisedAt: Date, runIDs: [Int64] = [],
                instrument: String? = nil, clearedAt: Date? = nil, acknowledgedAt: Date? = nil, acknowledgedBy: String? = nil) {
        self.id = id; self.kind = kind; self.subject = subject; self.message = message; self.raisedAt = raisedAt
        self.runIDs = runIDs; self.instrument = instrument; self.clearedAt = clearedAt
        self.acknowledgedAt = acknowledgedAt; self.acknowledgedBy = acknowledgedBy
    }

    /// Raised and not yet acknowledged: what it paused stays paused.
    public var isLatched: Bool { acknowledgedAt == nil }
    /// Its condition has cleared, so it may be acknowledged (if it still is latched).
    public var isCleared: Bool { clearedAt != nil }
}
