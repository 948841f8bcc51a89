public import Foundation
public import LabAPI
public import LabStorage
import LabCore

/// Answers one JSON-RPC line with one JSON line. Knows the methods; knows nothing of sockets.
public struct RPCDispatcher: Sendable {
    public let database: LabDatabase
    public let version: String

    public init(database: LabDatabase, version: String) {
        self.database = database; self.version = version
    }

    public func respond(to line: Data) -> Data {
        let decoder = JSONDecoder()
        let envelope: RPCEnvelope
        do {
            envelope = try decoder.decode(RPCEnvelope.self, from: line)
        } catch {
            return encode(RPCResponse<NoParams>(id: nil, result: nil, error: .parse("\(error)")))
        }
        guard envelope.jsonrpc == "2.0" else {
            return encode(RPCResponse<NoParams>(id: envelope.id, result: nil, error: .invalidRequest("jsonrpc must be \"2.0\"")))
        }
        switch envelope.method {
        case Method.info:
            return answer(envelope, NoParams.self, line) { _ in
                ServerInfo(name: "serendip", version: version, methods: [Method.info, Method.runsList, Method.runsGet])
            }
        case Method.runsList:
            return answer(envelope, RunsListParams.self, line) { p in try database.runs(campaign: p.campaign).map(Self.info) }
        case Method.runsGet:
            return answer(envelope, RunsGetParams.self, line) { p in
                guard let run = try database.run(p.run) else {
                    throw RPCError.notFound("no run \(p.run)")
                }
                let measurements = try database.measurements(run: p.run).map {
                    MeasurementInfo(instrument: $0.role, channel: $0.channel, series: $0.series, value: $0.value,
                                    unit: $0.unit, time: $0.wallTime)
                }
                let parameters = try database.parameters(run: p.run).mapValues { value -> WireValue in
                    switch value {
                    case .quantity(let q): .number(q.value)
                    case .bool(let b): .bool(b)
                    case .text(let t): .text(t)
                    }
                }
                return RunDetail(run: Self.info(run), parameters: parameters,
                                 outputs: try database.outputs(run: p.run), measurements: measurements)
            }
        default:
            return encode(RPCResponse<NoParams>(id: envelope.id, result: nil, error: .methodNotFound(envelope.method)))
        }
    }

    private func answer<P: Codable & Sendable, R: Codable & Sendable>(
        _ envelope: RPCEnvelope, _: P.Type, _ line: Data, _ body: (P) throws -> R
    ) -> Data {
        let params: P
        if let decoded = try? JSONDecoder().decode(RPCRequest<P>.self, from: line) {
            params = decoded.params
        } else if let empty = try? JSONDecoder().decode(P.self, from: Data("{}".utf8)) {
            params = empty  // params omitted and every field optional
        } else {
            return encode(RPCResponse<R>(id: envelope.id, result: nil, error: .invalidParams("bad params for \(envelope.method)")))
        }
        do {
            return encode(RPCResponse(id: envelope.id, result: try body(params), error: nil))
        } catch let error as RPCError {
            return encode(RPCResponse<R>(id: envelope.id, result: nil, error: error))
        } catch {
            return encode(RPCResponse<R>(id: envelope.id, result: nil, error: .internalError("\(error)")))
        }
    }

    private func encode<R: Codable>(_ response: RPCResponse<R>) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(response)) ?? Data(#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"encoding"}}"#.utf8)
    }

    static func info(_ r: RunSummary) -> RunInfo {
        RunInfo(id: r.id, campaign: r.campaignID, protocolName: r.protocolName, state: r.state, chosenBy: r.chosenBy,
                startedAt: r.startedAt, endedAt: r.endedAt, error: r.error)
    }
}
