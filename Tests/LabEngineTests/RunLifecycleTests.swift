import LabCore
import LabEngine
import Testing

/// The run's transition table, without I/O: every request in every state.
@Suite struct RunLifecycleTests {
    typealias State = RunLifecycle.State
    static let person = RunLifecycle.PauseReason.requested(by: "ada")
    static let lost = RunLifecycle.PauseReason.instrumentLost(instrument: "pump", detail: "connection closed")
    static let dispense = SourceLocation(file: "p.yaml", line: 9, column: 5)

    /// A lifecycle brought to `state` by the events a run would see.
    static func lifecycle(in state: String) -> RunLifecycle {
        var l = RunLifecycle()
        let events: [RunLifecycle.Event] = switch state {
        case "running": []
        case "pausing": [.pause(now: false, person)]
        case "paused(requested)": [.pause(now: true, person)]
        case "paused(instrument_lost)": [.fault(lost)]
        case "aborting": [.stop(.abort, by: "ada")]
        case "halting": [.stop(.halt, by: "ada")]
        case "finished": [.finished]
        default: fatalError(state)
        }
        for e in events { _ = l.handle(e) }
        #expect(l.state.name == state)
        return l
    }

    static let requests: [(String, RunLifecycle.Event)] = [
        ("pause", .pause(now: false, person)), ("pause --now", .pause(now: true, person)),
        ("resume", .resume(by: "ada")), ("abort", .stop(.abort, by: "ada")), ("halt", .stop(.halt, by: "ada")),
    ]

    /// State after each request (in the order of `requests`); "refused" where the request does not apply.
    static let matrix: [String: [String]] = [
        "running": ["pausing", "paused(requested)", "refused", "aborting", "halting"],
        "pausing": ["refused", "paused(requested)", "running", "aborting", "halting"],
        "paused(requested)": ["refused", "refused", "running", "aborting", "halting"],
        "paused(instrument_lost)": ["refused", "refused", "running", "aborting", "halting"],
        "aborting": ["refused", "refused", "refused", "aborting", "halting"],
        "halting": ["refused", "refused", "refused", "halting", "halting"],
        "finished": ["refused", "refused", "refused", "refused", "refused"],
    ]

    @Test(arguments: matrix.keys.sorted())
    func everyRequestInEveryStateGoesWhereTheTableSays(_ state: String) {
        for (index, (name, event)) in Self.requests.enumerated() {
            var l = Self.lifecycle(in: state)
            let expected = Self.matrix[state]![index]
            switch l.handle(event) {
            case .success: #expect(l.state.name == expected, "\(name) in \(state)")
            case .failure(let error):
                #expect(expected == "refused", "\(name) in \(state): \(error.message)")
                #expect(error.code == .conflict)
            }
        }
    }

    @Test func anImmediatePauseStopsTheStepsAndSendsTheInstrumentsToSafety() throws {
        var l = RunLifecycle()
        let (actions, transition) = try l.handle(.pause(now: true, Self.person)).get()
        #expect(actions == [.interrupt, .commandSafeStates(except: nil)])
        #expect(transition?.why == "paused by ada")
    }

    @Test func aDeferredPauseTakesEffectAtTheNextCheckpoint() throws {
        var l = RunLifecycle()
        #expect(try l.handle(.pause(now: false, Self.person)).get().actions == [])
        let (actions, transition) = try l.handle(.checkpointReached("mixed")).get()
        #expect(l.state == .paused(Self.person))
        #expect(actions == [.interrupt, .commandSafeStates(except: nil)])
        #expect(transition?.why.contains("checkpoint 'mixed'") == true)
    }

    @Test func resumingRewindsToTheLastCheckpoint() throws {
        var l = Self.lifecycle(in: "paused(instrument_lost)")
        #expect(try l.handle(.resume(by: "ada")).get().actions == [.interrupt, .restoreAndRewind])
        #expect(l.state == .running)
    }

    @Test func aLostInstrumentIsNotSentToItsSafeStateButTheOthersAre() throws {
        var l = RunLifecycle()
        #expect(try l.handle(.fault(Self.lost)).get().actions == [.interrupt, .commandSafeStates(except: "pump")])
        #expect(l.state.name == "paused(instrument_lost)")
    }

    @Test func anImmediatePauseAfterANonRepeatableStepWaitsForTheCheckpoint() throws {
        var l = RunLifecycle()
        _ = l.handle(.unrepeatableDone(.init(location: Self.dispense, abortsOnPause: false)))
        let (actions, transition) = try l.handle(.pause(now: true, Self.person)).get()
        #expect(actions == [])
        #expect(l.state.name == "pausing")
        #expect(transition?.why.contains("p.yaml:9:5 must not be repeated") == true)
        // The checkpoint clears it: the next immediate pause is immediate again.
        _ = l.handle(.checkpointReached("after dispense"))
        _ = l.handle(.resume(by: "ada"))
        #expect(try l.handle(.pause(now: true, Self.person)).get().actions.contains(.interrupt))
    }

    @Test func aStepThatSaysAbortTurnsAnImmediatePauseOrAFaultIntoAnAbort() throws {
        for event in [RunLifecycle.Event.pause(now: true, Self.person), .fault(Self.lost)] {
            var l = RunLifecycle()
            _ = l.handle(.unrepeatableDone(.init(location: Self.dispense, abortsOnPause: true)))
            #expect(try l.handle(event).get().actions == [.interrupt])
            #expect(l.state.name == "aborting")
        }
    }

    @Test func aResumeThatWouldRepeatANonRepeatableStepAfterAFaultNeedsToBeAskedForExplicitly() throws {
        var l = RunLifecycle()
        _ = l.handle(.unrepeatableDone(.init(location: Self.dispense, abortsOnPause: false)))
        _ = try l.handle(.fault(Self.lost)).get()
        #expect(l.state.name == "paused(instrument_lost)")
        guard case .failure(let refusal) = l.handle(.resume(by: "ada")) else {
            Issue.record("a plain resume must be refused"); return
        }
        #expect(refusal.message.contains("p.yaml:9:5") && refusal.message.contains("--repeat-step"))
        #expect(try l.handle(.resume(by: "ada", repeatingUnrepeatable: true)).get().actions == [.interrupt, .restoreAndRewind])
        #expect(l.state == .running)
    }

    @Test func aFaultWhilePausedByAPersonBecomesTheReasonAResumeWaitsFor() throws {
        var l = Self.lifecycle(in: "paused(requested)")
        _ = try l.handle(.fault(Self.lost)).get()
        #expect(l.state == .paused(Self.lost))
        // A person's pause does not hide a fault already there.
        #expect(throws: LabError.self) { try l.handle(.pause(now: true, Self.person)).get() }
        #expect(l.state == .paused(Self.lost))
    }

    @Test func aHaltWhileAbortingCutsFinallyShort() throws {
        var l = Self.lifecycle(in: "aborting")
        #expect(try l.handle(.stop(.halt, by: "bob")).get().actions == [.interrupt])
        #expect(l.stop?.0 == .halt)
        #expect(l.stop?.by == "bob")
    }
}
