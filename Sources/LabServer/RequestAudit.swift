import Foundation
import LabAPI
import LabStorage

/// The audit row of one mutating request: the method, the caller (peer credentials), what it was
/// about, the parameters (file texts and long lists shortened: the state-change rows carry the
/// hashes), and whether it was accepted or refused with what error.
enum RequestAudit {
    static func record(_ method: String, params: JSONValue?, caller: RPCCaller, outcome: Result<Data, any Error>,
                       in database: LabDatabase) {
        var detail: [String: JSONValue] = ["uid": .integer(Int64(caller.uid))]
        if let params { detail["params"] = shortened(params) }
        let result = (try? outcome.get()).flatMap { try? JSONDecoder().decode(JSONValue.self, from: $0) }
        switch outcome {
        case .success: detail["result"] = .string("accepted")
        case .failure(let error):
            let refusal = RPCDispatcher.rpcError(error)
            detail["result"] = .string("refused")
            detail["error"] = .object(["code": .integer(Int64(refusal.code)), "message": .string(refusal.message)])
        }
        let text = (try? RPCDispatcher.encoder.encode(JSONValue.object(detail))).map { String(decoding: $0, as: UTF8.self) }
        // The request has been carried out (or refused) already: a log that cannot be written is
        // not a reason to report a different outcome, so it is best effort here.
        try? database.appendAudit(actor: caller.user, action: method, subject: subject(method, params: params, result: result),
                                  detail: text)
    }

    /// What the request was about: the run, entry, campaign or alert it names, or the entries it created.
    static func subject(_ method: String, params: JSONValue?, result: JSONValue?) -> String {
        let namespace = String(method.prefix { $0 != "." })
        let entry = namespace == "queue" ? "queue entry" : "run"
        if case .object(let p)? = params {
            if case .integer(let n)? = p["run"] { return "\(entry) \(n)" }
            if case .integer(let n)? = p["campaign"] { return "campaign \(n)" }
            if case .integer(let n)? = p["alert"] { return "alert \(n)" }
        }
        switch result {
        case .object(let r)?:
            if case .integer(let n)? = r["run"] { return "\(entry) \(n)" }
            if case .integer(let n)? = r["campaign"] { return "campaign \(n)" }
        case .array(let items)?:
            let ids = items.compactMap { item -> Int64? in
                if case .object(let r) = item, case .integer(let n)? = r["run"] { return n }
                return nil
            }
            if ids.count == 1 { return "queue entry \(ids[0])" }
            if let first = ids.first, let last = ids.last { return "queue entries \(first)-\(last) (\(ids.count))" }
        default: break
        }
        return namespace
    }

    /// Texts over 200 characters become their length; lists over 20 items keep the first 20.
    static func shortened(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let s) where s.count > 200: .string("(\(s.count) characters)")
        case .array(let a) where a.count > 20: .array(a.prefix(20).map(shortened) + [.string("(and \(a.count - 20) more)")])
        case .array(let a): .array(a.map(shortened))
        case .object(let o): .object(o.mapValues(shortened))
        default: value
        }
    }
}
