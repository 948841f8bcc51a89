import Foundation
import LabCore
import LabStorage
import Testing

/// The Bluesky export checked by the `event-model` package itself, from the virtualenv `make test`
/// creates under the build folder (`make test-venv`).
@Suite struct BlueskyExportTests {
    static let python = Repository.path(".build/test-venv/bin/python")

    /// Runs `script` with the test virtualenv's python; a missing virtualenv fails the test, never skips it.
    static func eventModel(_ script: String, _ arguments: [String]) throws -> String {
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "no test virtualenv at \(python): run `make test` (or `make test-venv`) to create it with event-model")
        let (status, output) = try runToEnd(python, ["-c", script] + arguments, withStandardError: true)
        try #require(status == 0, "\(output)")
        return output
    }

    /// Validates every document with event-model's schemas, routes them through its RunRouter, checks
    /// uids, seq_nums and num_events, and each event against the stored reading (read with the test's
    /// own SQL): value, step and unit exactly, time as Python's `datetime.timestamp()` of the stored time.
    /// Prints the start and stop of each run, and the number of events checked.
    static let check = """
        import json, sqlite3, sys
        from datetime import datetime
        from event_model import DocumentNames, RunRouter, schema_validators, unpack_event_page

        docs = [json.loads(line) for line in open(sys.argv[1])]
        for name, doc in docs:
            schema_validators[DocumentNames[name]].validate(doc)

        routed = {}
        def factory(name, start):
            routed[start['uid']] = []
            return [lambda name, doc: routed[start['uid']].append(name)], []
        router = RunRouter([factory])
        for name, doc in docs:
            router(name, doc)
        assert sum(len(v) for v in routed.values()) == len(docs), 'RunRouter routes every document to its run'
        assert all(v[0] == 'start' and v[-1] == 'stop' for v in routed.values()), routed

        stored = {}
        db = sqlite3.connect('file:' + sys.argv[2] + '?mode=ro', uri=True)
        for run, series, step, value, unit, wall in db.execute(
                'SELECT run_id, series, step_index, value, unit, wall_time FROM measurement ORDER BY run_id, id'):
            stored.setdefault((run, series.replace('.', '_')), []).append((step, value, unit, wall))
        started = dict(db.execute('SELECT id, started_at FROM run'))

        uids = [d['uid'] for n, d in docs if n != 'event_page'] + [u for n, d in docs if n == 'event_page' for u in d['uid']]
        assert len(uids) == len(set(uids)), 'uids are unique'
        starts, descriptors, counted, checked = {}, {}, {}, 0
        for name, doc in docs:
            if name == 'start':
                starts[doc['uid']] = doc
                t = doc['parameters']['temperature']
                assert doc['time'] == datetime.fromisoformat(started[doc['scan_id']]).timestamp()
                print(json.dumps(['start', doc['scan_id'], doc['plan_name'], t['value'].hex(), t['units'], doc['operator'],
                                  doc['protocol_sha256'], sorted(doc['instruments']), doc.get('project')]))
            elif name == 'descriptor':
                assert doc['run_start'] in starts
                descriptors[doc['uid']] = doc
            elif name == 'event_page':
                d = descriptors[doc['descriptor']]
                run = starts[d['run_start']]['scan_id']
                (key, spec), = [(k, v) for k, v in d['data_keys'].items() if k != 'step']
                assert d['name'] == key and spec['dtype'] == 'number' and spec['shape'] == [] and '/' in spec['source']
                for event in unpack_event_page(doc):
                    n = counted.get(d['uid'], 0)
                    counted[d['uid']] = n + 1
                    assert event['seq_num'] == n + 1, 'seq_nums count 1, 2, 3 ... per descriptor'
                    step, value, unit, wall = stored[(run, key)][n]
                    assert event['data'][key] == value, (event, value)
                    assert (event['data']['step'], spec['units']) == (step, unit), (event, step, unit)
                    assert event['time'] == datetime.fromisoformat(wall).timestamp() == event['timestamps'][key], (event, wall)
                    checked += 1
            else:
                mine = {d['name']: counted.get(u, 0) for u, d in descriptors.items() if d['run_start'] == doc['run_start']}
                assert doc['num_events'] == mine, (doc, mine)
                print(json.dumps(['stop', starts[doc['run_start']]['scan_id'], doc['exit_status'], doc['reason']]))
        assert all(len(stored[(starts[d['run_start']]['scan_id'], d['name'])]) == counted[u] for u, d in descriptors.items())
        print(json.dumps(['events', checked]))
        """

    @Test func theBlueskyDocumentsValidateWithEventModelAndHoldTheStoredValuesExactly() async throws {
        let runs = try await StoredRuns.shared.value
        let out = runs.directory + "/bluesky-\(UUID().uuidString).jsonl"
        let ids = [runs.byHand, runs.fromQueue, runs.interrupted]
        let (status, output) = try await ExportTests.serendip(["export"] + ids.map(String.init) + ["--format", "bluesky", "--out", out,
                                                                                                  "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let lines = try Self.eventModel(Self.check, [out, runs.database]).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [Any]
        }
        let starts = lines.filter { $0[0] as? String == "start" }
        #expect(starts.map { Int64($0[1] as! Int) } == ids)
        for start in starts {
            #expect(start[2] as? String == "reactor-yield")
            #expect(Double(start[3] as! String) == StoredRuns.temperature && start[4] as? String == "degC")
            #expect(start[6] as? String == runs.source.sha256)
            #expect((start[7] as? [String]).map { Set($0).isSuperset(of: ["reactor", "spectro"]) } == true)
        }
        #expect(starts.map { $0[5] as? String } == ["tester", "alice", "bob"])
        #expect(starts[1][8] as? String == "catalysis" && starts[0][8] is NSNull)
        let stops = lines.filter { $0[0] as? String == "stop" }.map { "\($0[1]) \($0[2]) \($0[3])" }
        #expect(stops == ["\(runs.byHand) success ", "\(runs.fromQueue) success ",
                          "\(runs.interrupted) fail \(LabDatabase.interruptedError)"])
        let stored = try ExportTests.storedReadings(runs.database)
        #expect(lines.last.map { "\($0[0]) \($0[1])" } == "events \(stored.count)", "every stored reading is one event")
    }

    @Test func theLoadingExampleInTheClientDocsRunsOnAnExport() async throws {
        let runs = try await StoredRuns.shared.value
        let example = try #require(try DocumentationTests.blocks("client.md", language: "python").first { $0.contains("event_model") })
        let directory = try ClientCommandTests.emptyDirectory()
        let (status, output) = try await ExportTests.serendip(["export", "\(runs.byHand)", "--format", "bluesky",
                                                              "--out", directory + "/runs.jsonl", "--data", runs.directory])
        #expect(status == 0, "\(output)")
        let printed = try Self.eventModel("import os, sys; os.chdir(sys.argv[1]); exec(sys.argv[2])", [directory, example])
        let readings = try ExportTests.storedReadings(runs.database).filter { $0.run == runs.byHand }
        #expect(printed.split(separator: "\n").count == readings.count, "one line per event: \(printed)")
    }

    @Test func exportingARunTwiceGivesTheSameDocuments() async throws {
        let runs = try await StoredRuns.shared.value
        let arguments = ["export", "\(runs.byHand)", "--format", "bluesky", "--data", runs.directory]
        let first = try await ExportTests.serendip(arguments)
        let second = try await ExportTests.serendip(arguments)
        #expect(first.status == 0 && !first.output.isEmpty)
        #expect(first.output == second.output, "uids are derived from the run, so a catalogue ingesting it twice holds it once")
    }
}
