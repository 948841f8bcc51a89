import Foundation
import LabScheduler
import Testing

@Suite struct SchedulePolicyTests {
    typealias Candidate = SchedulePolicy.Candidate

    @Test func runsOnDisjointInstrumentsStartTogetherAndOverlappingOnesWait() {
        let free = ["r1": "reactor", "r2": "reactor", "s1": "spectro"]
        let starts = SchedulePolicy.starts([
            Candidate(id: 1, needs: ["reactor": "reactor", "spectro": "spectro"]),
            Candidate(id: 2, needs: ["reactor": "reactor"]),
            Candidate(id: 3, needs: ["spectro": "spectro"]),
        ], free: free)
        #expect(starts.map(\.id) == [1, 2])
        #expect(Set(starts.flatMap(\.assignment.values)).count == 3)
    }

    @Test func aRoleGetsTheInstrumentOfItsOwnNameWhenItIsFree() {
        let starts = SchedulePolicy.starts([Candidate(id: 1, needs: ["r2": "reactor"])], free: ["r1": "reactor", "r2": "reactor"])
        #expect(starts.first?.assignment == ["r2": "r2"])
    }

    @Test func aRunTakesAllItsInstrumentsFromOneStation() {
        let free = ["reactor1": "reactor", "spectro1": "spectro", "reactor2": "reactor", "spectro2": "spectro", "pump": "pump"]
        let stations = ["reactor1": "1", "spectro1": "1", "reactor2": "2", "spectro2": "2"]
        let needs = ["reactor": "reactor", "spectro": "spectro", "pump": "pump"]
        let starts = SchedulePolicy.starts([Candidate(id: 1, needs: needs)], free: ["reactor1": "reactor", "spectro2": "spectro", "pump": "pump"],
                                           stations: stations)
        #expect(starts.isEmpty, "reactor1 and spectro2 are of different stations")
        let both = SchedulePolicy.starts([Candidate(id: 1, needs: needs), Candidate(id: 2, needs: ["reactor": "reactor", "spectro": "spectro"])],
                                         free: free, stations: stations)
        #expect(both.count == 2)
        for start in both { #expect(Set(start.assignment.values.compactMap { stations[$0] }).count == 1, "\(start)") }
    }

    @Test func aWaitingLargeRunKeepsTheInstrumentsItWaitsForSoSmallRunsCannotStarveIt() {
        // Two reactors; one is busy. The large run (both reactors) waits, and the small run behind it
        // may not take the free reactor: that reactor is kept for the large run.
        let starts = SchedulePolicy.starts([
            Candidate(id: 1, needs: ["a": "reactor", "b": "reactor"]),
            Candidate(id: 2, needs: ["a": "reactor"]),
            Candidate(id: 3, needs: ["s": "spectro"]),
        ], free: ["r1": "reactor", "s1": "spectro"])
        #expect(starts.map(\.id) == [3])
    }

    @Test func theForecastReplaysThePolicyOnEstimatedDurations() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        let items = [
            Forecast.Item(id: 1, needs: ["r": "reactor"], duration: 60, runningFor: 20, instruments: ["r1"]),
            Forecast.Item(id: 2, needs: ["r": "reactor"], duration: 100),
            Forecast.Item(id: 3, needs: ["r": "reactor"], duration: 10),
            Forecast.Item(id: 4, needs: ["r": "reactor"], duration: nil),
            Forecast.Item(id: 5, needs: ["r": "reactor"], duration: 10),
        ]
        let windows = Forecast.windows(items, pool: ["r1": "reactor", "r2": "reactor"], now: now)
        #expect(windows[1] == Forecast.Window(start: now - 20, end: now + 40))
        #expect(windows[2] == Forecast.Window(start: now, end: now + 100))
        #expect(windows[3] == Forecast.Window(start: now + 40, end: now + 50))
        #expect(windows[4] == Forecast.Window(start: now + 50, end: nil))
        // Its reactor is the one that frees at 100 s; the other runs entry 4 for an unknown time.
        #expect(windows[5] == Forecast.Window(start: now + 100, end: now + 110))
    }
}
