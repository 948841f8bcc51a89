public import Foundation
import Synchronization
public import LabAPI
public import LabStorage
import LabCore

/// Who is asking: on the Unix socket, the connecting process's user (peer credentials).
public struct RPCCaller: Sendable, Hashable {
    public var user: String
    public var uid: UInt32
    public init(user: String, uid: UInt32) { self.user = user; self.uid = uid }
}

/// One entry of the method table. What every method shares — the request's shape, its parameters
/// checked against their declared names and types, the caller's identity, errors as JSON-RPC errors —
/// is done once, by the dispatcher, never inside a method (the audit log is written there; roles will be added there).
public struct RPCMethod: Sendable {
    public let name: String
    /// Changes the daemon's state (queues, cancels, starts): what an audit log and roles will gate.
    public let mutates: Bool
    let call: Call

    enum Call: Sendable {
        /// Runs on the server's thread itself (database reads).
        case synchronous(@Sendable (JSONValue?, RPCCaller) throws -> Data)
        /// Awaits the daemon's actors; the server's thread waits for it.
        case asynchronous(@Sendable (JSONValue?, RPCCaller) async throws -> Data)
    }

    public static func method<P: RPCParams, R: Encodable & Sendable>(
        _ name: String, mutates: Bool = false, _ body: @escaping @Sendable (P, RPCCaller) async throws -> R
    ) -> RPCMethod {
        RPCMethod(name: name, mutates: mutates, call: .asynchronous { params, caller in
            let p: P = try RPCDispatcher.params(params, of: name)
            return try RPCDispatcher.encoder.encode(try await body(p, caller))
        })
    }

    /// A method that needs no actor: it runs on the server's thread, never on Swift's cooperative
    /// pool, so a client can keep no cooperative thread waiting.
    public static func synchronous<P: RPCParams, R: Encodable & Sendable>(
        _ name: String, _ body: @escaping @Sendable (P, RPCCaller) throws -> R
    ) -> RPCMethod {
        RPCMethod(name: name, mutates: false, call: .synchronous { params, caller in
            let p: P = try RPCDispatcher.params(params, of: name)
            return try RPCDispatcher.encoder.encode(try body(p, caller))
        })
    }
}

/// Answers one JSON-RPC line with one JSON line, or with nothing for a notification. Knows the
/// method table; knows nothing of sockets. It blocks its thread until the method is done: callers run
/// it on the server's own threads, never the executor's.
public struct RPCDispatcher: Sendable {
    public let methods: [String: RPCMethod]
    /// Where every mutating request is logged, accepted or refused (nil: not logged).
    let audit: LabDatabase?

    public init(_ methods: [RPCMethod], audit: LabDatabase? = nil) {
        self.methods = Dictionary(methods.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        self.audit = audit
    }

    /// The run methods over a database and `server.info`: what a campaign outside the daemon serves.
    public init(database: LabDatabase, version: String) {
        self.init(Self.runMethods(database) + [Self.infoMethod(version: version, names: [Method.runsList, Method.runsGet, Method.runsReadings])])
    }

    /// `server.info`: the server's name and version and the methods it answers.
    public static func infoMethod(version: String, names: [String]) -> RPCMethod {
        .synchronous(Method.info) { (_: NoParams, _) in
            ServerInfo(name: "serendip", version: version, methods: ([Method.info] + names).sorted())
        }
    }

    /// The read-only run methods over a database: `runs.list`, `runs.get`, `runs.readings`.
    public static func runMethods(_ database: LabDatabase) -> [RPCMethod] {
        [
            .synchronous(Method.runsList) { (p: RunsListParams, _) in
                let page = try database.runs(campaign: p.campaign, after: try cursor(p.after, Method.runsList),
                                             limit: try pageLimit(p.limit, Method.runsList))
                return WirePage("runs", page.rows.map(Self.info), next: page.next)
            },
            .synchronous(Method.runsGet) { (p: RunsGetParams, _) in try Self.detail(p.run, database) },
            .synchronous(Method.runsReadings) { (p: RunsReadingsParams, _) in
                guard let page = try database.readings(run: p.run, series: p.series, after: try cursor(p.after, Method.runsReadings),
                                                       limit: try pageLimit(p.limit, Method.runsReadings)) else {
                    throw RPCError.notFound("no run \(p.run)")
                }
                // A misspelt series would look like a run without data: a run that has ended says what it has.
                if let series = p.series, page.rows.isEmpty, page.next == nil, (p.after ?? 0) == 0 {
                    let names = try database.seriesNames(run: p.run)
                    if !names.contains(series) {
                        throw RPCError.invalidParams("parameter 'series' of \(Method.runsReadings): run \(p.run) has no series '\(series)'"
                                                     + (names.isEmpty ? " (it has no readings)" : "; it has: \(names.joined(separator: ", "))"))
                    }
                }
                return WirePage("readings", page.rows.map {
                    ReadingInfo(id: $0.id, step: $0.step, instrument: $0.instrument, role: $0.role, channel: $0.channel, series: $0.series,
                                value: $0.value, unit: $0.unit, time: $0.wallTime, monotonicTime: $0.monotonicTime)
                }, next: page.next)
            },
        ]
    }

    /// A page's size: 1,000 unless asked, never more than `LabDatabase.pageLimit` (a page is held whole).
    static func pageLimit(_ limit: Int?, _ method: String) throws -> Int {
        guard let limit else { return 1_000 }
        guard (1...LabDatabase.pageLimit).contains(limit) else {
            throw RPCError.invalidParams("parameter 'limit' of \(method) must be 1 to \(LabDatabase.pageLimit), not \(limit): "
                                         + "ask for the rest with the page's 'next' as 'after'")
        }
        return limit
    }

    static func cursor(_ after: Int64?, _ method: String) throws -> Int64 {
        guard let after else { return 0 }
        guard after >= 0 else { throw RPCError.invalidParams("parameter 'after' of \(method) must be a previous page's 'next' (0 or more), not \(after)") }
        return after
    }

    static let members: Set<String> = ["jsonrpc", "id", "method", "params"]
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// The reply line (without its newline), or nil when the request is a notification (which is
    /// still carried out, as JSON-RPC 2.0 says, but not answered).
    public func respond(to line: Data, caller: RPCCaller) -> Data? {
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
        guard case .string(let name)? = fields["method"] else {
            return Self.reply(id ?? .null, error: .invalidRequest("method must be a string"))
        }
        if let extra = fields.keys.sorted().first(where: { !Self.members.contains($0) }) {
            return Self.reply(id ?? .null, error: .invalidRequest("unknown member '\(extra)' (a request has jsonrpc, id, method, params)"))
        }
        guard let method = methods[name] else {
            return id.map { Self.reply($0, error: .methodNotFound(name)) }
        }
        // A read asked as a notification has no one to answer: nothing to do.
        guard id != nil || method.mutates else { return nil }
        let outcome: Result<Data, any Error> = switch method.call {
        case .synchronous(let call): Result { try call(fields["params"], caller) }
        case .asynchronous(let call): Self.blocking { try await call(fields["params"], caller) }
        }
        if method.mutates, let audit { RequestAudit.record(name, params: fields["params"], caller: caller, outcome: outcome, in: audit) }
        guard let id else { return nil }
        switch outcome {
        case .success(let result): return Self.reply(id, encodedResult: result)
        case .failure(let error): return Self.reply(id, error: Self.rpcError(error))
        }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: error
        case let error as LabError: RPCError(code: -32000, message: error.description)
        default: .internalError("\(error)")
        }
    }

    /// Runs an async method to its end on this (server) thread.
    private static func blocking(_ body: @escaping @Sendable () async throws -> Data) -> Result<Data, any Error> {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task {
            do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return box.get()
    }

    private final class ResultBox: Sendable {
        private let value = Mutex<Result<Data, any Error>?>(nil)
        func set(_ result: Result<Data, any Error>) { value.withLock { $0 = result } }
        func get() -> Result<Data, any Error> { value.withLock { $0! } }
    }

    private static func detail(_ run: Int64, _ database: LabDatabase) throws -> RunDetail {
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
        let events = try database.timedEvents(run: run).map { EventInfo(kind: $0.kind, message: $0.message, time: $0.time) }
        return RunDetail(run: Self.info(summary), parameters: parameters, outputs: outputs, measurements: measurements, events: events)
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
        } catch let DecodingError.dataCorrupted(context) {
            throw RPCError.invalidParams("bad params for \(method) at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw RPCError.invalidParams("bad params for \(method) at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            throw RPCError.invalidParams("bad params for \(method): missing '\(key.stringValue)' in \(Self.path(context.codingPath))")
        } catch {
            throw RPCError.invalidParams("bad params for \(method): \(error)")
        }
    }

    /// A place in the params as a person writes it: `items[3].parameters.temperature`.
    static func path(_ keys: [any CodingKey]) -> String {
        keys.reduce("") { text, key in
            if let index = key.intValue { return text + "[\(index)]" }
            return text.isEmpty ? key.stringValue : text + "." + key.stringValue
        }
    }

    static func reply(_ id: RPCID, encodedResult: Data) -> Data {
        var line = Data(#"{"id":"#.utf8)
        line += (try? encoder.encode(id)) ?? Data("null".utf8)
        line += Data(#","jsonrpc":"2.0","result":"#.utf8) + encodedResult + Data("}".utf8)
        return line
    }

    static func reply(_ id: RPCID, error: RPCError) -> Data {
        encode(RPCResponse<NoParams>(id: id, result: nil, error: error))
    }

    private static func encode<R: Codable>(_ response: RPCResponse<R>) -> Data {
        (try? encoder.encode(response))
            ?? Data(#"{"error":{"code":-32603,"message":"cannot encode the reply"},"id":null,"jsonrpc":"2.0"}"#.utf8)
    }

    static func wire(_ q: Quantity) -> WireQuantity { WireQuantity(value: q.value, unit: q.unit.symbol) }

    static func info(_ r: RunSummary) -> RunInfo {
        RunInfo(id: r.id, campaign: r.campaignID, protocolName: r.protocolName, state: r.state, chosenBy: r.chosenBy,
                startedAt: r.startedAt, endedAt: r.endedAt, error: r.error)
    }
}

