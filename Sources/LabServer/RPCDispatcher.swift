public import Foundation
public import LabAPI
public import LabStorage
import LabCore

/// Answers one JSON-RPC line with one JSON line, or with nothing for a notification. Knows the
/// methods; knows nothing of sockets. Its database reads block: callers keep it off the executor's threads.
public struct RPCDispatcher: Sendable {
    public let database: LabDatabase
    public let version: String

    public init(database: LabDatabase, version: String) {
        self.database = database; self.version = version
    }

    static let members: Set<String> = ["jsonrpc", "id", "method", "params"]

    /// The reply line (without its newline), or nil when the request is a notification.
    public func respond(to line: Data) -> Data? {
        let request: JSONValue
        do {
            request = try JSONDecoder().decode(JSONValue.self, from: line)
        } catch {
            return Self.reply(.null, error: .parse("the line is not JSON"))
        }
        guard case .object(let fields) = request else {
            return Self.reply(.null, error: .invalidRequest("a request is one JSON object (batches are not supported)"))
        }
        let id: RPCID?
        switch fields["id"] {
        case nil: id = nil
        case .null: id = .null
        case .integer(let n): id = .number(n)
        case .string(let s): id = .string(s)
        default: return Self.reply(.null, error: .invalidRequest("id must be a string, an integer or null"))
        }
        guard fields["jsonrpc"] == .string("2.0") else {
            return Self.reply(id ?? .null, error: .invalidRequest(#"jsonrpc must be "2.0""#))
        }
        guard case .string(let method)? = fields["method"] else {
            return Self.reply(id ?? .null, error: .invalidRequest("method must be a string"))
        }
        if let extra = fields.keys.sorted().first(where: { !Self.members.contains($0) }) {
            return Self.reply(id ?? .null, error: .invalidRequest("unknown member '\(extra)' (a request has jsonrpc, id, method, params)"))
        }
        // A notification asks for no answer, and every method only reads: nothing to do.
        guard let id else { return nil }
        do {
            switch method {
            case Method.info:
                let _: NoParams = try Self.params(fields["params"], of: method)
                return Self.reply(id, result: ServerInfo(name: "serendip", version: version,
                                                         methods: [Method.info, Method.runsList, Method.runsGet]))
            case Method.runsList:
                let p: RunsListParams = try Self.params(fields["params"], of: method)
                return Self.reply(id, result: try database.runs(campaign: p.campaign).map(Self.info))
            case Method.runsGet:
                let p: RunsGetParams = try Self.params(fields["params"], of: method)
                return Self.reply(id, result: try detail(p.run))
            default:
                return Self.reply(id, error: .methodNotFound(method))
            }
        } catch let error as RPCError {
            return Self.reply(id, error: error)
        } catch {
            return Self.reply(id, error: .internalError("\(error)"))
        }
    }

    private func detail(_ run: Int64) throws -> RunDetail {
        guard let summary = try database.run(run) else { throw RPCError.notFound("no run \(run)") }
        let measurements = try database.measurements(run: run).map {
            MeasurementInfo(instrument: $0.role, channel: $0.channel, series: $0.series, value: $0.value,
                            unit: $0.unit, time: $0.wallTime)
        }
        let parameters = try database.parameters(run: run).mapValues { value -> WireValue in
            switch value {
            case .quantity(let q): .quantity(Self.wire(q))
            case .bool(let b): .bool(b)
            case .text(let t): .text(t)
            }
        }
        let outputs = try database.outputQuantities(run: run).compactMapValues { value -> WireQuantity? in
            if case .quantity(let q) = value { return Self.wire(q) }
            return nil
        }
        return RunDetail(run: Self.info(summary), parameters: parameters, outputs: outputs, measurements: measurements)
    }

    /// A method's parameters, by name: an unknown name, a missing one or a wrong type is refused (-32602)
    /// with the parameter named, never ignored.
    static func params<P: RPCParams>(_ given: JSONValue?, of method: String) throws -> P {
        let fields: [String: JSONValue]
        switch given {
        case nil: fields = [:]
        case .object(let o): fields = o
        default: throw RPCError.invalidParams("params of \(method) must be an object of named parameters")
        }
        if let unknown = fields.keys.sorted().first(where: { P.parameters[$0] == nil }) {
            let known = P.parameters.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
            throw RPCError.invalidParams("unknown parameter '\(unknown)' for \(method) "
                                         + (known.isEmpty ? "(it takes none)" : "(it takes \(known))"))
        }
        for (name, parameter) in P.parameters.sorted(by: { $0.key < $1.key }) {
            let what = "\(parameter.kind.rawValue) (\(parameter.about))"
            switch fields[name] {
            case nil, .null?:
                if parameter.required { throw RPCError.invalidParams("missing parameter '\(name)' for \(method): \(what)") }
            case let value?:
                if !value.is(parameter.kind) { throw RPCError.invalidParams("parameter '\(name)' of \(method) must be \(what)") }
            }
        }
        do {
            return try JSONDecoder().decode(P.self, from: JSONEncoder().encode(JSONValue.object(fields.filter { $0.value != .null })))
        } catch {
            throw RPCError.invalidParams("bad params for \(method): \(error)")
        }
    }

    static func reply<R: Codable & Sendable>(_ id: RPCID, result: R) -> Data {
        encode(RPCResponse(id: id, result: result, error: nil))
    }

    static func reply(_ id: RPCID, error: RPCError) -> Data {
        encode(RPCResponse<NoParams>(id: id, result: nil, error: error))
    }

    private static func encode<R: Codable>(_ response: RPCResponse<R>) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(response))
            ?? Data(#"{"error":{"code":-32603,"message":"cannot encode the reply"},"id":null,"jsonrpc":"2.0"}"#.utf8)
    }

    static func wire(_ q: Quantity) -> WireQuantity { WireQuantity(value: q.value, unit: q.unit.symbol) }

    static func info(_ r: RunSummary) -> RunInfo {
        RunInfo(id: r.id, campaign: r.campaignID, protocolName: r.protocolName, state: r.state, chosenBy: r.chosenBy,
                startedAt: r.startedAt, endedAt: r.endedAt, error: r.error)
    }
}

