import Foundation
public import GRDB
public import LabCore

/// A run as a client lists it.
public struct RunSummary: Sendable, Hashable, Codable, FetchableRecord {
    public var id: Int64
    public var campaignID: Int64?
    public var protocolName: String
    public var state: String
    public var chosenBy: String
    public var startedAt: String
    public var endedAt: String?
    public var error: String?

    public init(row: Row) {
        id = row["id"]; campaignID = row["campaign_id"]; protocolName = row["protocol_name"]; state = row["state"]
        chosenBy = row["chosen_by"]; startedAt = row["started_at"]; endedAt = row["ended_at"]; error = row["error"]
    }
}

/// One stored measurement, every column: also the row of a tidy export.
public struct MeasurementRow: Sendable, Hashable, Codable, FetchableRecord {
    public var id: Int64
    public var runID: Int64
    public var step: Int
    public var instrument: String
    public var role: String
    public var channel: String
    public var series: String
    public var value: Double
    public var unit: String
    public var wallTime: String
    public var monotonicTime: Double

    public init(row: Row) {
        id = row["id"]; runID = row["run_id"]; step = row["step_index"]; instrument = row["instrument"]; role = row["role"]
        channel = row["channel"]; series = row["series"]; value = row["value"]; unit = row["unit"]; wallTime = row["wall_time"]
        monotonicTime = row["monotonic_time"]
    }
}

extension LabDatabase {
    public func runs(campaign: Int64? = nil) throws -> [RunSummary] {
        try pool.read { db in
            try RunSummary.fetchAll(db, sql: "SELECT * FROM run WHERE ? IS NULL OR campaign_id = ? ORDER BY id",
                                    arguments: [campaign, campaign])
        }
    }

    public func run(_ id: Int64) throws -> RunSummary? {
        try pool.read { db in try RunSummary.fetchOne(db, sql: "SELECT * FROM run WHERE id = ?", arguments: [id]) }
    }

    public func measurements(run: Int64, series: String? = nil) throws -> [MeasurementRow] {
        try pool.read { db in
            try MeasurementRow.fetchAll(db, sql: """
                SELECT * FROM measurement WHERE run_id = ? AND (? IS NULL OR series = ?) ORDER BY id
                """, arguments: [run, series, series])
        }
    }

    public func parameters(run: Int64) throws -> [String: ExprValue] {
        try pool.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT name, value, text_value, unit FROM run_parameter WHERE run_id = ?",
                                        arguments: [run])
            return Dictionary(uniqueKeysWithValues: rows.map { row -> (String, ExprValue) in
                if let text: String = row["text_value"] { return (row["name"], .text(text)) }
                if row["unit"] == "bool" { return (row["name"], .bool(row["value"] != 0.0)) }
                return (row["name"], .quantity(Self.quantity(row)))
            })
        }
    }

    /// A run's outputs as bare numbers, in the units `outputQuantities` gives.
    public func outputs(run: Int64) throws -> [String: Double] {
        try outputQuantities(run: run).compactMapValues { value in
            if case .quantity(let q) = value { return q.value }
            return nil
        }
    }
}

extension LabDatabase {
    /// A run's events (commands, logs, branches, faults, safe state) in the order they happened.
    /// The run's events in order, with their wall time (ISO 8601, as stored).
    public func timedEvents(run: Int64) throws -> [(kind: String, message: String, time: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, message, wall_time FROM run_event WHERE run_id = ? ORDER BY id", arguments: [run])
                .map { ($0["kind"], $0["message"], $0["wall_time"]) }
        }
    }

    public func events(run: Int64) throws -> [(kind: String, message: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, message FROM run_event WHERE run_id = ? ORDER BY id", arguments: [run])
                .map { ($0["kind"], $0["message"]) }
        }
    }
}

/// A campaign as it was stored, with every finished run, so that it can be resumed.
public struct StoredCampaign: Sendable {
    public struct Run: Sendable {
        public var id: Int64
        public var outcome: RunOutcome
        public var chosenBy: String
        public var proposalID: String?
        public var error: String?
        public var protocolSHA256: String
        public var parameters: [String: ExprValue]
        public var outputs: [String: ExprValue]
    }

    public var id: Int64
    public var name: String
    public var specSHA256: String
    public var seed: UInt64
    /// In the order they ran.
    public var runs: [Run]
}

extension LabDatabase {
    public func campaign(_ id: Int64) throws -> StoredCampaign? {
        guard let row = try pool.read({ db in
            try Row.fetchOne(db, sql: "SELECT name, spec_sha256, seed FROM campaign WHERE id = ?", arguments: [id])
        }) else { return nil }
        let runs = try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, state, chosen_by, proposal_id, error, protocol_sha256 FROM run WHERE campaign_id = ? ORDER BY id",
                             arguments: [id])
        }
        return StoredCampaign(id: id, name: row["name"], specSHA256: row["spec_sha256"], seed: UInt64(bitPattern: row["seed"]),
                              runs: try runs.map { run in
            let runID: Int64 = run["id"]
            return StoredCampaign.Run(id: runID, outcome: RunOutcome(rawValue: run["state"]) ?? .interrupted,
                                      chosenBy: run["chosen_by"], proposalID: run["proposal_id"], error: run["error"],
                                      protocolSHA256: run["protocol_sha256"],
                                      parameters: try parameters(run: runID), outputs: try outputQuantities(run: runID))
        })
    }

    /// A run's outputs with their units, as the protocol computed them.
    public func outputQuantities(run: Int64) throws -> [String: ExprValue] {
        try pool.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT name, value, unit FROM run_output WHERE run_id = ?", arguments: [run])
            return Dictionary(uniqueKeysWithValues: rows.map { ($0["name"], ExprValue.quantity(Self.quantity($0))) })
        }
    }

    /// A stored value and unit symbol (a unit this build does not know reads as dimensionless).
    static func quantity(_ row: Row) -> Quantity {
        let unit: String = row["unit"]
        return Quantity(row["value"], LabUnit.named(unit) ?? .one)
    }
}

extension LabDatabase {
    /// The runs left `running` by a process that died, with the lab instruments each held.
    public func runningRuns() throws -> [(run: Int64, instruments: [String])] {
        try pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT run.id, run_instrument.instrument FROM run JOIN run_instrument ON run_instrument.run_id = run.id
                WHERE run.state = 'running' ORDER BY run.id, run_instrument.instrument
                """)
            var runs: [(run: Int64, instruments: [String])] = []
            for row in rows {
                let id: Int64 = row[0]
                if runs.last?.run != id { runs.append((id, [])) }
                runs[runs.count - 1].instruments.append(row[1])
            }
            return runs
        }
    }
}
