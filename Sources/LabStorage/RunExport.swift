public import Foundation
public import GRDB

/// A run with its provenance, as `serendip runs` lists it and `serendip show` begins with it.
public struct StoredRun: Sendable, Hashable, Codable, FetchableRecord {
    public var id: Int64
    public var campaign: Int64?
    public var protocolName: String
    public var protocolPath: String
    public var protocolSHA256: String
    public var state: String
    /// Who chose the parameters: a person, a sweep point, the planner.
    public var chosenBy: String
    public var proposal: String?
    public var operatorName: String
    /// The project the run was submitted for (none for a campaign's runs).
    public var project: String?
    public var softwareVersion: String
    /// The build that ran it (`build-id:` and the executable's GNU build ID) and the machine it ran on (nil for runs stored before these were).
    public var softwareBuild: String?
    public var host: String?
    public var startedAt: String
    public var endedAt: String?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case id = "run", campaign, protocolName = "protocol", protocolPath, protocolSHA256, state, chosenBy, proposal
        case operatorName = "operator", project, softwareVersion, softwareBuild, host, startedAt, endedAt, error
    }

    public init(row: Row) {
        id = row["id"]; campaign = row["campaign_id"]; protocolName = row["protocol_name"]; protocolPath = row["protocol_path"]
        protocolSHA256 = row["protocol_sha256"]; state = row["state"]; chosenBy = row["chosen_by"]; proposal = row["proposal_id"]
        operatorName = row["operator"]; project = row["project"]; softwareVersion = row["software_version"]
        softwareBuild = row["software_build"]; host = row["host"]
        startedAt = row["started_at"]; endedAt = row["ended_at"]; error = row["error"]
    }

    static let select = "SELECT run.* FROM run"
}

/// Which runs to list; nil matches every run.
public struct RunFilter: Sendable {
    public var campaign: Int64?
    public var protocolName: String?
    public var state: String?
    public var operatorName: String?
    public var project: String?
    /// Runs started at or after this instant.
    public var since: Date?

    public init(campaign: Int64? = nil, protocolName: String? = nil, state: String? = nil, operatorName: String? = nil,
                project: String? = nil, since: Date? = nil) {
        self.campaign = campaign; self.protocolName = protocolName; self.state = state
        self.operatorName = operatorName; self.project = project; self.since = since
    }
}

/// A parameter exactly as stored: a number with its unit symbol, or a choice's text.
public struct StoredParameter: Sendable, Hashable, Codable {
    public var name: String
    public var value: Double?
    public var text: String?
    public var unit: String
}

public struct StoredInstrument: Sendable, Hashable, Codable {
    public var role: String
    public var instrument: String
    public var driver: String
    public var driverSHA256: String
    public var address: String
    /// The driver's identity query and the device's answer, at the start of the run (nil: none declared).
    public var deviceQuery: String?
    public var deviceAnswer: String?
}

/// One series' readings in a run, summarised.
public struct SeriesSummary: Sendable, Hashable, Codable {
    public var series: String
    public var unit: String
    public var count: Int
    public var min: Double
    public var max: Double
    public var mean: Double
}

/// Everything `serendip show` prints about one run.
public struct RunRecord: Sendable, Codable {
    public var run: StoredRun
    public var parameters: [StoredParameter]
    public var outputs: [StoredParameter]
    public var instruments: [StoredInstrument]
    public var series: [SeriesSummary]
    /// The array series (spectra), with their shape.
    public var arraySeries: [ArraySeriesSummary] = []
    /// How many events of each kind (command, log, fault, ...).
    public var events: [String: Int]
    /// The first of the run's log messages, in order: its `log` steps, what its string channels
    /// read at the start (`ROLE.CHANNEL = 'TEXT'`), identity queries that got no answer.
    public var logs: [String] = []
    static let shownLogs = 100
}

extension LabDatabase {
    public func runs(matching filter: RunFilter) throws -> [StoredRun] {
        var conditions: [String] = []
        var arguments: [any DatabaseValueConvertible] = []
        func match(_ sql: String, _ value: (any DatabaseValueConvertible)?) {
            guard let value else { return }
            conditions.append(sql); arguments.append(value)
        }
        match("campaign_id = ?", filter.campaign)
        match("protocol_name = ?", filter.protocolName)
        match("state = ?", filter.state)
        match("operator = ?", filter.operatorName)
        match("project = ?", filter.project)
        // Stored times are UTC ISO 8601 of one width, so text order is time order.
        match("started_at >= ?", filter.since.map(Self.timestamp))
        let sql = "SELECT * FROM (\(StoredRun.select)) " + (conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")) + " ORDER BY id"
        return try pool.read { db in try StoredRun.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)) }
    }

    /// The run and its provenance, or nil if there is no such run.
    public func detail(run id: Int64) throws -> RunRecord? {
        try pool.read { db in
            guard let run = try StoredRun.fetchOne(db, sql: StoredRun.select + " WHERE run.id = ?", arguments: [id]) else { return nil }
            let parameters = try Row.fetchAll(db, sql: "SELECT name, value, text_value, unit FROM run_parameter WHERE run_id = ? ORDER BY name",
                                              arguments: [id])
                .map { StoredParameter(name: $0["name"], value: $0["value"], text: $0["text_value"], unit: $0["unit"]) }
            let outputs = try Row.fetchAll(db, sql: "SELECT name, value, unit FROM run_output WHERE run_id = ? ORDER BY name", arguments: [id])
                .map { StoredParameter(name: $0["name"], value: $0["value"], text: nil, unit: $0["unit"]) }
            let instruments = try Row.fetchAll(db, sql: "SELECT * FROM run_instrument WHERE run_id = ? ORDER BY role", arguments: [id])
                .map { StoredInstrument(role: $0["role"], instrument: $0["instrument"], driver: $0["driver"],
                                        driverSHA256: $0["driver_sha256"], address: $0["address"],
                                        deviceQuery: $0["device_query"], deviceAnswer: $0["device_answer"]) }
            let series = try Row.fetchAll(db, sql: """
                SELECT series, unit, COUNT(*) AS n, MIN(value) AS lo, MAX(value) AS hi, AVG(value) AS mean
                FROM measurement WHERE run_id = ? GROUP BY series, unit ORDER BY MIN(id)
                """, arguments: [id])
                .map { SeriesSummary(series: $0["series"], unit: $0["unit"], count: $0["n"], min: $0["lo"], max: $0["hi"], mean: $0["mean"]) }
            let events = try Row.fetchAll(db, sql: "SELECT kind, COUNT(*) AS n FROM run_event WHERE run_id = ? GROUP BY kind", arguments: [id])
            let logs = try String.fetchAll(db, sql: "SELECT message FROM run_event WHERE run_id = ? AND kind = 'log' ORDER BY id LIMIT ?",
                                           arguments: [id, RunRecord.shownLogs])
            return RunRecord(run: run, parameters: parameters, outputs: outputs, instruments: instruments, series: series,
                             arraySeries: try arraySeries(run: id, db),
                             events: Dictionary(uniqueKeysWithValues: events.map { ($0["kind"], $0["n"]) }), logs: logs)
        }
    }

    public func hasCampaign(_ id: Int64) throws -> Bool {
        try pool.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM campaign WHERE id = ?)", arguments: [id]) ?? false }
    }

    /// Hands each reading of `run` to `body`, in the order they were stored, without holding them all.
    public func forEachReading(run: Int64, _ body: (MeasurementRow) throws -> Void) throws {
        try pool.read { db in
            let rows = try MeasurementRow.fetchCursor(db, sql: "SELECT * FROM measurement WHERE run_id = ? ORDER BY id", arguments: [run])
            while let row = try rows.next() { try body(row) }
        }
    }
}

/// The readings of one series from one channel in one unit: one Bluesky event stream.
public struct ReadingStream: Sendable, Hashable {
    public var series: String
    public var role: String
    public var channel: String
    public var instrument: String
    public var unit: String
    public var count: Int
}

extension LabDatabase {
    /// Hands `run`'s streams (in the order of their first reading) to `streams`, then each stream's
    /// readings in pages of at most `pageSize` to `page` (with the stream's index), all read in one
    /// snapshot: the counts announced first are the readings that follow, even while a daemon writes.
    public func forEachStreamPage(run: Int64, pageSize: Int, streams: ([ReadingStream]) throws -> Void,
                                  page: (Int, [MeasurementRow]) throws -> Void) throws {
        try pool.read { db in
            let list = try Row.fetchAll(db, sql: """
                SELECT series, role, channel, instrument, unit, COUNT(*) AS n FROM measurement WHERE run_id = ?
                GROUP BY series, role, channel, instrument, unit ORDER BY MIN(id)
                """, arguments: [run])
                .map { ReadingStream(series: $0["series"], role: $0["role"], channel: $0["channel"], instrument: $0["instrument"],
                                     unit: $0["unit"], count: $0["n"]) }
            try streams(list)
            for (index, stream) in list.enumerated() {
                let rows = try MeasurementRow.fetchCursor(db, sql: """
                    SELECT * FROM measurement WHERE run_id = ? AND series = ? AND role = ? AND channel = ? AND instrument = ? AND unit = ?
                    ORDER BY id
                    """, arguments: [run, stream.series, stream.role, stream.channel, stream.instrument, stream.unit])
                var chunk: [MeasurementRow] = []
                chunk.reserveCapacity(pageSize)
                while let row = try rows.next() {
                    chunk.append(row)
                    if chunk.count == pageSize { try page(index, chunk); chunk.removeAll(keepingCapacity: true) }
                }
                if !chunk.isEmpty { try page(index, chunk) }
            }
        }
    }
}
