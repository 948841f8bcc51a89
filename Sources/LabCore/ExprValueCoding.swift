/// An expression value in JSON, as stored in the queue and sent over the API: a quantity is
/// `{"value": 80, "unit": "degC"}` (a bare number is dimensionless), a boolean is `true`/`false`,
/// a choice is a string.
extension ExprValue: Codable {
    private enum Keys: String, CodingKey { case value, unit }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer() {
            if let b = try? single.decode(Bool.self) { self = .bool(b); return }
            if let x = try? single.decode(Double.self) { self = .quantity(Quantity(x)); return }
            if let s = try? single.decode(String.self) { self = .text(s); return }
        }
        let object = try decoder.container(keyedBy: Keys.self)
        let value = try object.decode(Double.self, forKey: .value)
        let symbol = try object.decodeIfPresent(String.self, forKey: .unit) ?? ""
        guard let unit = symbol.isEmpty || symbol == "1" ? LabUnit.one : LabUnit.named(symbol) else {
            throw DecodingError.dataCorruptedError(forKey: .unit, in: object, debugDescription: "unknown unit '\(symbol)'")
        }
        self = .quantity(Quantity(value, unit))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .quantity(let q):
            var object = encoder.container(keyedBy: Keys.self)
            try object.encode(q.value, forKey: .value)
            try object.encode(q.unit.symbol, forKey: .unit)
        case .bool(let b):
            var single = encoder.singleValueContainer()
            try single.encode(b)
        case .text(let s):
            var single = encoder.singleValueContainer()
            try single.encode(s)
        }
    }
}
