import LabCore
import LabSpec
import Testing

/// A driver file's `simulation:` block: each behaviour read in its channel's unit, and every mistake
/// refused at its place.
struct DriverSimulationTests {
    static func driver(_ simulation: String) throws(ValidationError) -> DriverSpec {
        try DriverSpec.parse("""
            driver: pump
            transport: serial
            channels:
              setpoint:    { query: "SP?", write: "SP {value}", unit: degC, access: rw }
              temperature: { query: "T?", unit: K }
              rate:        { query: "R?", write: "R {value}", unit: mL/min, access: rw }
              dispensed:   { query: "D?", unit: uL }
              running:     { on: "RUN", off: "STOP", type: bool }
              level:       { query: "L?", unit: mL }
            simulation:
            \(simulation)
            """, path: "pump.yaml")
    }

    @Test func eachBehaviourIsReadInItsChannelsUnit() throws {
        let spec = try Self.driver("""
              temperature: { follows: setpoint, lag: 2 min, noise: 50 mK, start: 25 degC, while: running }
              dispensed: { integrates: rate, start: 1 mL }
              level: { script: [[0 s, 0], [1 min, 500 uL], [2 min, 0.5]] }
            """)
        let simulation = try #require(spec.simulation)
        let temperature = try #require(simulation.behaviour(of: "temperature"))
        #expect(temperature.source == .follows(channel: "setpoint", lag: 120, start: 298.15))
        #expect(abs(temperature.noise - 0.05) < 1e-12)
        #expect(temperature.gate == "running")
        // mL/min for a second is 1/60 mL, 1000/60 uL.
        guard case .integrates("rate", let perSecond, 1000)? = simulation.behaviour(of: "dispensed")?.source else {
            Issue.record("\(simulation)"); return
        }
        #expect(abs(perSecond - 1000.0 / 60) < 1e-9)
        #expect(simulation.behaviour(of: "level")?.source == .script([.init(time: 0, value: 0), .init(time: 60, value: 0.5),
                                                                      .init(time: 120, value: 0.5)]))
    }

    @Test(arguments: [
        ("  temprature: { value: 300 }", 11, 3, "simulation names unknown channel 'temprature'", "did you mean 'temperature'?"),
        ("  setpoint: { value: 30 }", 11, 3, "'setpoint' is written by clients", nil),
        ("  temperature: { follows: rate }", 11, 27, "'temperature' is in K but 'rate' is in mL/min", nil),
        ("  dispensed: { integrates: setpoint }", 11, 28, "not the integral over time of 'setpoint'", nil),
        ("  level: { script: [[10 s, 0], [5 s, 1]] }", 11, 33, "script time 5.0 s comes before the point at 10.0 s", nil),
        ("  temperature: { value: 300, noise: 2 mL }", 11, 37, "noise must be a non-negative amount of K", nil),
        ("  temperature: { folows: setpoint }", 11, 18, "unknown key 'folows'", "did you mean 'follows'?"),
        ("  temperature: { value: 300, script: [[0 s, 1]] }", 11, 30, "has both 'value' and 'script'", nil),
        ("  temperature: { value: 300, while: running }", 11, 30, "'while' is for a behaviour that follows or integrates", nil),
        ("  temperature: { follows: setpoint, lag: -1 s }", 11, 42, "lag must be a non-negative duration", nil),
    ] as [(String, Int, Int, String, String?)])
    func aMistakeIsRefusedAtItsPlace(simulation: String, line: Int, column: Int, message: String, hint: String?) {
        do {
            _ = try Self.driver(simulation)
            Issue.record("accepted \(simulation)")
        } catch {
            let d = error.diagnostics.first
            #expect(d?.location.line == line && d?.location.column == column, "\(error.diagnostics)")
            #expect(d?.message.contains(message) == true, "\(error.diagnostics)")
            if let hint { #expect(d?.hint == hint, "\(error.diagnostics)") }
        }
    }

    @Test func aDriverWithoutASimulationBlockHasNone() throws {
        let spec = try DriverSpec.parse("driver: d\ntransport: serial\nchannels:\n  x: { query: \"X?\" }\n", path: "d.yaml")
        #expect(spec.simulation == nil)
    }
}
