/// The socket API's wire types: JSON-RPC 2.0, one message per line. Shared by the server and by
/// Swift clients; clients in other languages follow docs/api.md.
public enum RPCID: Codable, Hashable, Sendable {
    case number(Int64)
    case string(String)
    /// Allowed by JSON-RPC 2.0 (though discouraged), and the id of a reply to a request whose id could not be read.
    case null

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let n = try? container.decode(Int64.self) { self = .number(n) }
        else { self = .string(try container.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .null: try container.encodeNil()
        }
    }
}

/// A request with its method's parameters. `id: nil` makes it a notification, which is not answered.
public struct RPCRequest<Params: Codable & Sendable>: Codable, Sendable {
    public var jsonrpc = "2.0"
    public var id: RPCID?
    public var method: String
    public var params: Params

    public init(id: RPCID?, method: String, params: Params) {
        self.id = id; self.method = method; self.params = params
    }
}

public struct RPCError: Codable, Sendable, Error {
    public var code: Int
    public var message: String
    /// For a file that did not validate: every problem, where it is.
    public var data: ErrorData?

    public struct ErrorData: Codable, Sendable, Hashable {
        public var diagnostics: [WireDiagnostic]
        public init(diagnostics: [WireDiagnostic]) { self.diagnostics = diagnostics }
    }

    public init(code: Int, message: String, data: ErrorData? = nil) { self.code = code; self.message = message; self.data = data }

    /// A protocol or campaign that does not validate; the message is what `serendip validate` prints.
    public static func invalidFile(_ m: String, _ diagnostics: [WireDiagnostic]) -> RPCError {
        RPCError(code: -32010, message: m, data: ErrorData(diagnostics: diagnostics))
    }
    /// The request cannot apply now (holding a running entry, stopping a stopped campaign).
    public static func conflict(_ m: String) -> RPCError { RPCError(code: -32012, message: m) }
    public static func shuttingDown(_ m: String) -> RPCError { RPCError(code: -32013, message: m) }

    public static func parse(_ m: String) -> RPCError { RPCError(code: -32700, message: "parse error: \(m)") }
    public static func invalidRequest(_ m: String) -> RPCError { RPCError(code: -32600, message: m) }
    public static func methodNotFound(_ m: String) -> RPCError { RPCError(code: -32601, message: "no method '\(m)'") }
    public static func invalidParams(_ m: String) -> RPCError { RPCError(code: -32602, message: m) }
    public static func notFound(_ m: String) -> RPCError { RPCError(code: -32004, message: m) }
    public static func internalError(_ m: String) -> RPCError { RPCError(code: -32603, message: m) }
}

/// A reply: always an `id` (null when the request's could not be read), then `result` or `error`, never both.
public struct RPCResponse<Result: Codable & Sendable>: Codable, Sendable {
    public var jsonrpc = "2.0"
    public var id: RPCID
    public var result: Result?
    public var error: RPCError?

    public init(id: RPCID, result: Result?, error: RPCError?) {
        self.id = id; self.result = result; self.error = error
    }

    enum CodingKeys: String, CodingKey { case jsonrpc, id, result, error }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jsonrpc = try c.decode(String.self, forKey: .jsonrpc)
        id = try c.decodeIfPresent(RPCID.self, forKey: .id) ?? .null
        result = try c.decodeIfPresent(Result.self, forKey: .result)
        error = try c.decodeIfPresent(RPCError.self, forKey: .error)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jsonrpc, forKey: .jsonrpc)
        try c.encode(id, forKey: .id)
        if let error { try c.encode(error, forKey: .error) } else { try c.encode(result, forKey: .result) }
    }
}

/// The methods this server answers.
public enum Method {
    public static let info = "server.info"
    public static let runsList = "runs.list"
    public static let runsGet = "runs.get"
    public static let runsReadings = "runs.readings"
}

/// What one named parameter must be. The server checks every request against these before a method
/// sees it, and refuses any name not listed.
public struct RPCParameter: Sendable {
    public enum Kind: String, Sendable {
        case integer = "an integer", number = "a number", string = "a string", boolean = "a boolean"
        case object = "an object", array = "an array"
    }
    public var kind: Kind
    public var required: Bool
    /// What the value stands for, for the error message.
    public var about: String

    public init(_ kind: Kind, required: Bool, about: String) { self.kind = kind; self.required = required; self.about = about }
}

/// A method's parameters, by name.
public protocol RPCParams: Codable, Sendable {
    static var parameters: [String: RPCParameter] { get }
}

public struct NoParams: RPCParams {
    public static let parameters: [String: RPCParameter] = [:]
    public init() {}
}

public struct ServerInfo: Codable, Sendable {
    public var name: String
    public var version: String
    public var methods: [String]

    public init(name: String, version: String, methods: [String]) {
        self.name = name; self.version = version; self.methods = methods
    }
}

public struct RunsListParams: RPCParams {
    public static let parameters = [
        "campaign": RPCParameter(.integer, required: false, about: "a campaign id"),
        "after": RPCParameter(.integer, required: false, about: "the previous page's `next`: a run id"),
        "limit": RPCParameter(.integer, required: false, about: "runs per page, 1 to 10000 (default 1000)"),
    ]
    public var campaign: Int64?
    public var after: Int64?
    public var limit: Int?
    public init(campaign: Int64? = nil, after: Int64? = nil, limit: Int? = nil) {
        self.campaign = campaign; self.after = after; self.limit = limit
    }
}

/// `runs.readings`: one page of a run's readings, in the order they were stored.
public struct RunsReadingsParams: RPCParams {
    public static let parameters = [
        "run": RPCParameter(.integer, required: true, about: "a run id"),
        "series": RPCParameter(.string, required: false, about: "one series' name"),
        "after": RPCParameter(.integer, required: false, about: "the previous page's `next`: a reading id"),
        "limit": RPCParameter(.integer, required: false, about: "readings per page, 1 to 10000 (default 1000)"),
    ]
    public var run: Int64
    public var series: String?
    public var after: Int64?
    public var limit: Int?
    public init(run: Int64, series: String? = nil, after: Int64? = nil, limit: Int? = nil) {
        self.run = run; self.series = series; self.after = after; self.limit = limit
    }
}

/// A page and the cursor of the next one: `next` is written as null when there is none, never left out.
public struct WirePage<Item: Codable & Sendable>: Codable, Sendable {
    public var items: [Item]
    public var next: Int64?
    /// The member the items go in: `runs`, `readings`.
    let member: String

    public init(_ member: String, _ items: [Item], next: Int64?) { self.member = member; self.items = items; self.next = next }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        guard let key = c.allKeys.first(where: { $0.stringValue != "next" }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "a page without items"))
        }
        member = key.stringValue
        items = try c.decode([Item].self, forKey: key)
        next = try c.decodeIfPresent(Int64.self, forKey: Key(stringValue: "next"))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(items, forKey: Key(stringValue: member))
        if let next { try c.encode(next, forKey: Key(stringValue: "next")) } else { try c.encodeNil(forKey: Key(stringValue: "next")) }
    }
}

/// One stored reading, every column: its id (a page's `next` is the last of these), the step that
/// took it, the lab instrument and the protocol's role for it, its value with its unit, its times.
public struct ReadingInfo: Codable, Sendable, Hashable {
    public var id: Int64
    public var step: Int
    public var instrument: String
    public var role: String
    public var channel: String
    public var series: String
    public var value: Double
    public var unit: String
    public var time: String
    /// Seconds on the run's monotonic clock: intervals between readings, immune to clock changes.
    public var monotonicTime: Double

    enum CodingKeys: String, CodingKey {
        case id, step, instrument, role, channel, series, value, unit, time, monotonicTime = "monotonic_time"
    }

    public init(id: Int64, step: Int, instrument: String, role: String, channel: String, series: String, value: Double,
                unit: String, time: String, monotonicTime: Double) {
        self.id = id; self.step = step; self.instrument = instrument; self.role = role; self.channel = channel
        self.series = series; self.value = value; self.unit = unit; self.time = time; self.monotonicTime = monotonicTime
    }
}

public struct RunsGetParams: RPCParams {
    public static let parameters = ["run": RPCParameter(.integer, required: true, about: "a run id")]
    public var run: Int64
    public init(run: Int64) { self.run = run }
}

public struct RunInfo: Codable, Sendable, Hashable {
    public var id: Int64
    public var campaign: Int64?
    public var protocolName: String
    public var state: String
    public var chosenBy: String
    public var startedAt: String
    public var endedAt: String?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case id, campaign, state, error
        case protocolName = "protocol", chosenBy = "chosen_by", startedAt = "started_at", endedAt = "ended_at"
    }

    public init(id: Int64, campaign: Int64?, protocolName: String, state: String, chosenBy: String,
                startedAt: String, endedAt: String?, error: String?) {
        self.id = id; self.campaign = campaign; self.protocolName = protocolName; self.state = state
        self.chosenBy = chosenBy; self.startedAt = startedAt; self.endedAt = endedAt; self.error = error
    }
}

public struct MeasurementInfo: Codable, Sendable, Hashable {
    public var instrument: String
    public var channel: String
    public var series: String
    public var value: Double
    public var unit: String
    public var time: String

    public init(instrument: String, channel: String, series: String, value: Double, unit: String, time: String) {
        self.instrument = instrument; self.channel = channel; self.series = series; self.value = value
        self.unit = unit; self.time = time
    }
}

/// A number with its unit symbol (`"1"` when dimensionless): a bare number would leave a client to guess.
public struct WireQuantity: Codable, Sendable, Hashable {
    public var value: Double
    public var unit: String
    public init(value: Double, unit: String) { self.value = value; self.unit = unit }
}

/// A parameter value on the wire: `{value, unit}`, a boolean or a string.
public enum WireValue: Codable, Sendable, Hashable {
    case quantity(WireQuantity), bool(Bool), text(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let q = try? c.decode(WireQuantity.self) { self = .quantity(q) }
        else { self = .text(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .quantity(let q): try c.encode(q)
        case .bool(let b): try c.encode(b)
        case .text(let s): try c.encode(s)
        }
    }
}

public struct RunDetail: Codable, Sendable {
    public var run: RunInfo
    public var parameters: [String: WireValue]
    public var outputs: [String: WireQuantity]
    public var measurements: [MeasurementInfo]
    /// The run's story: commands, checkpoints, faults, safe states, and every transition (`transition`)
    /// with who asked and why.
    public var events: [EventInfo]

    public init(run: RunInfo, parameters: [String: WireValue], outputs: [String: WireQuantity], measurements: [MeasurementInfo],
                events: [EventInfo]) {
        self.run = run; self.parameters = parameters; self.outputs = outputs; self.measurements = measurements; self.events = events
    }
}

public struct EventInfo: Codable, Sendable, Hashable {
    public var kind: String
    public var message: String
    public var time: String
    public init(kind: String, message: String, time: String) { self.kind = kind; self.message = message; self.time = time }
}
