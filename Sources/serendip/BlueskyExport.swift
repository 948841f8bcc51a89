import Crypto
import Foundation
import LabCore
import LabStorage

/// A run as Bluesky event-model documents (start, descriptors, event pages, stop), one `[name, doc]`
/// pair per line as bluesky's JSON Lines serializers write them, for databroker and Tiled.
///
/// Each series of readings is its own stream with one data key, the way bluesky's `monitor` records a
/// signal read at its own pace: a run's series are read at different steps and times, so no one
/// event could hold a value of each. The run's provenance goes in the start document, its outputs
/// and end in the stop document; a run still running has no stop document yet.
struct BlueskyDocuments {
    let detail: RunRecord
    let write: (String) throws -> Void

    /// Events per event page: bounds what one line holds.
    static let pageSize = 1000

    func export(from database: LabDatabase) throws {
        let r = detail.run
        let startUID = Self.uid("serendip run \(r.id) \(r.startedAt) \(r.protocolSHA256)")
        let startTime = Self.epoch(r.startedAt) ?? 0
        try emit("start", Self.start(detail, uid: startUID, time: startTime))
        var descriptors: [(uid: String, key: String)] = []
        var seq: [Int] = []
        try database.forEachStreamPage(run: r.id, pageSize: Self.pageSize, streams: { streams in
            for (index, stream) in streams.enumerated() {
                let key = Self.key(stream.series)
                let uid = Self.uid("\(startUID) descriptor \(index)")
                descriptors.append((uid, key))
                seq.append(0)
                try emit("descriptor", .object([
                    ("uid", .string(uid)), ("run_start", .string(startUID)), ("time", .number(startTime)), ("name", .string(key)),
                    ("data_keys", .object([
                        (key, .object([("dtype", .string("number")), ("shape", .array([])), ("source", .string(source(stream))),
                                       ("units", .string(stream.unit)), ("object_name", .string(stream.role))])),
                        ("step", .object([("dtype", .string("integer")), ("shape", .array([])),
                                          ("source", .string("serendip: the protocol step that took the reading")),
                                          ("units", .null), ("object_name", .string(stream.role))])),
                    ])),
                    ("object_keys", .object([(stream.role, .array([.string(key), .string("step")]))])),
                ]))
            }
        }, page: { index, rows in
            let descriptor = descriptors[index]
            let first = seq[index] + 1
            seq[index] += rows.count
            let numbers = Array(first...seq[index])
            // A reading's time is when the instrument answered (stored to the millisecond).
            let times = JSONText.array(rows.map { .number(Self.epoch($0.wallTime) ?? 0) })
            try emit("event_page", .object([
                ("descriptor", .string(descriptor.uid)),
                ("uid", .array(numbers.map { .string(Self.uid("\(descriptor.uid) event \($0)")) })),
                ("seq_num", .array(numbers.map { .integer(Int64($0)) })),
                ("time", times),
                ("data", .object([(descriptor.key, .array(rows.map { .number($0.value) })),
                                  ("step", .array(rows.map { .integer(Int64($0.step)) }))])),
                ("timestamps", .object([(descriptor.key, times), ("step", times)])),
                ("filled", .object([])),
            ]))
        })
        try exportArrays(from: database, startUID: startUID, startTime: startTime, &descriptors, &seq)
        guard let exit = Self.exitStatus[r.state] else { return }
        var events: [String: Int] = [:]
        for (index, descriptor) in descriptors.enumerated() { events[descriptor.key, default: 0] += seq[index] }
        try emit("stop", .object([
            ("uid", .string(Self.uid("\(startUID) stop"))), ("run_start", .string(startUID)),
            ("time", .number(r.endedAt.flatMap(Self.epoch) ?? startTime)), ("exit_status", .string(exit)),
            ("reason", .string(r.error ?? "")), ("state", .string(r.state)),
            ("num_events", .object(events.sorted { $0.key < $1.key }.map { ($0.key, .integer(Int64($0.value))) })),
            ("outputs", Self.quantities(detail.outputs)),
        ]))
    }

    /// Array series (spectra): a stream each after the numbers' streams, one event per array, dtype
    /// `array` with its shape and `dims`; each axis is a data key of its own beside it (its positions,
    /// `spectrum_wavelength`), as a scan records its x signal next to the detector.
    private func exportArrays(from database: LabDatabase, startUID: String, startTime: Double,
                              _ descriptors: inout [(uid: String, key: String)], _ seq: inout [Int]) throws {
        var streams: [String: (index: Int, axisKeys: [String], positions: [JSONText])] = [:]
        try database.forEachArray(run: detail.run.id) { a in
            let identity = [a.series, a.role, a.channel, a.instrument, a.unit, "\(a.shape)", "\(a.axes)"].joined(separator: "\u{0}")
            let key = Self.key(a.series)
            if streams[identity] == nil {
                let index = descriptors.count, uid = Self.uid("\(startUID) descriptor \(index)")
                let dims = JSONText.array(a.axes.map { .string($0.name) })
                let axisKeys = a.axes.map { Self.key("\(a.series)_\($0.name)") }
                let address = detail.instruments.first { $0.role == a.role }?.address
                let source = "\(a.instrument)/\(a.channel)" + (address.map { " at \($0)" } ?? "")
                var keys: [(String, JSONText)] = [(key, .object([
                    ("dtype", .string("array")), ("dtype_numpy", .string("<f8")), ("shape", .array(a.shape.map { .integer(Int64($0)) })),
                    ("dims", dims), ("source", .string(source)), ("units", .string(a.unit)), ("object_name", .string(a.role))]))]
                for (d, axis) in a.axes.enumerated() {
                    keys.append((axisKeys[d], .object([
                        ("dtype", .string("array")), ("dtype_numpy", .string("<f8")), ("shape", .array([.integer(Int64(a.shape[d]))])),
                        ("dims", .array([.string(axis.name)])), ("source", .string("serendip: the axis of \(a.series)")),
                        ("units", .string(axis.unit)), ("object_name", .string(a.role))])))
                }
                keys.append(("step", .object([("dtype", .string("integer")), ("shape", .array([])),
                                               ("source", .string("serendip: the protocol step that took the reading")),
                                               ("units", .null), ("object_name", .string(a.role))])))
                try emit("descriptor", .object([
                    ("uid", .string(uid)), ("run_start", .string(startUID)), ("time", .number(startTime)), ("name", .string(key)),
                    ("data_keys", .object(keys)),
                    ("object_keys", .object([(a.role, .array(([key] + axisKeys + ["step"]).map(JSONText.string)))])),
                ]))
                descriptors.append((uid, key))
                seq.append(0)
                let positions = a.axes.enumerated().map { d, axis in JSONText.array((0..<a.shape[d]).map { .number(axis.position($0)) }) }
                streams[identity] = (index, axisKeys, positions)
            }
            let stream = streams[identity]!
            seq[stream.index] += 1
            let descriptor = descriptors[stream.index], number = seq[stream.index]
            let time = JSONText.array([.number(Self.epoch(a.wallTime) ?? 0)])
            var data: [(String, JSONText)] = [(key, .array([.array(a.values.map(JSONText.number))]))]
            var timestamps: [(String, JSONText)] = [(key, time)]
            for (d, axisKey) in stream.axisKeys.enumerated() {
                data.append((axisKey, .array([stream.positions[d]])))
                timestamps.append((axisKey, time))
            }
            data.append(("step", .array([.integer(Int64(a.step))])))
            timestamps.append(("step", time))
            try emit("event_page", .object([
                ("descriptor", .string(descriptor.uid)), ("uid", .array([.string(Self.uid("\(descriptor.uid) event \(number)"))])),
                ("seq_num", .array([.integer(Int64(number))])), ("time", time),
                ("data", .object(data)), ("timestamps", .object(timestamps)), ("filled", .object([])),
            ]))
        }
    }

    private func emit(_ name: String, _ document: JSONText) throws {
        try write(JSONText.array([.string(name), document]).rendered + "\n")
    }

    /// Where a reading came from: the instrument's channel and the instrument's address.
    private func source(_ stream: ReadingStream) -> String {
        let address = detail.instruments.first { $0.role == stream.role }?.address
        return "\(stream.instrument)/\(stream.channel)" + (address.map { " at \($0)" } ?? "")
    }

    /// Serendip's run states as Bluesky's three exit statuses; an interrupted run failed (its reason says why).
    static let exitStatus = ["completed": "success", "failed": "fail", "aborted": "abort", "interrupted": "fail"]

    static func start(_ d: RunRecord, uid: String, time: Double) -> JSONText {
        let r = d.run
        var members: [(String, JSONText)] = [
            ("uid", .string(uid)), ("time", .number(time)), ("scan_id", .integer(r.id)), ("plan_name", .string(r.protocolName)),
            ("parameters", quantities(d.parameters)),
            ("protocol_path", .string(r.protocolPath)), ("protocol_sha256", .string(r.protocolSHA256)),
            ("chosen_by", .string(r.chosenBy)), ("operator", .string(r.operatorName)), ("software", .string("serendip")),
            ("software_version", .string(r.softwareVersion)),
            ("instruments", .object(d.instruments.map { i in
                (key(i.role), .object([("instrument", .string(i.instrument)), ("driver", .string(i.driver)),
                                       ("driver_sha256", .string(i.driverSHA256)), ("address", .string(i.address))]))
            })),
        ]
        // event-model allows these only as strings (no nulls): absent when the run has none.
        if let proposal = r.proposal { members.append(("proposal", .string(proposal))) }
        if let project = r.project { members.append(("project", .string(project))) }
        if let campaign = r.campaign {
            members.append(("campaign", .integer(campaign)))
            members.append(("data_session", .string("serendip campaign \(campaign)")))
        }
        return .object(members)
    }

    /// Parameters and outputs as `{name: {value, units}}`; a choice's value is its text.
    static func quantities(_ list: [StoredParameter]) -> JSONText {
        .object(list.map { p in
            (key(p.name), .object([("value", p.text.map(JSONText.string) ?? p.value.map(JSONText.number) ?? .null),
                                   ("units", .string(p.unit))]))
        })
    }

    /// event-model refuses "." and "/" in the keys of its documents' metadata (they are path separators
    /// in databroker and Tiled), so `reactor.temperature` becomes `reactor_temperature`.
    static func key(_ name: String) -> String {
        String(name.map { $0 == "." || $0 == "/" ? "_" : $0 })
    }

    /// Name-based uids (the form of a UUID, version 8, from SHA-256 of the run's identity): exporting
    /// a run again gives the same documents, so a catalogue that ingests it twice holds it once, and
    /// a restored backup's runs keep their uids. The run's identity is its number, its start time to
    /// the millisecond and its protocol's hash, which no other run of any database shares in practice.
    static func uid(_ name: String) -> String {
        var bytes = Array(SHA256.hash(data: Data(name.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let uuid = bytes.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
        return UUID(uuid: uuid).uuidString.lowercased()
    }

    /// UNIX epoch seconds of a stored time ("2026-11-30T10:57:45.123Z"): the decimal's nearest double,
    /// rounded once, which is what Python's `datetime.timestamp()` gives for the same text.
    static func epoch(_ text: String) -> Double? {
        guard text.hasSuffix("Z") else { return nil }
        let dot = text.firstIndex(of: ".") ?? text.index(before: text.endIndex)
        let digits = text[dot..<text.index(before: text.endIndex)].dropFirst()
        guard digits.count <= 6, let whole = try? Date.ISO8601FormatStyle().parse(String(text[..<dot]) + "Z") else { return nil }
        let scale = (0..<digits.count).reduce(Int64(1)) { value, _ in value * 10 }
        guard let fraction = digits.isEmpty ? 0 : Int64(digits) else { return nil }
        return Double(Int64(whole.timeIntervalSince1970) * scale + fraction) / Double(scale)
    }
}
