import Foundation
import LabSpec
import Testing

/// One scaled clock drives a whole run, so simulated time may run fast only when no instrument is real.
@Suite struct SimulationSpeedTests {
    static func lab(speed: String?, reactor: String, spectro: String = "simulate: true") -> (path: String, text: String) {
        let text = """
            lab: bench
            instruments:
              reactor: { driver: \(Repository.path("drivers/thermo-reactor.yaml")), \(reactor) }
              spectro: { driver: \(Repository.path("drivers/uv-vis.yaml")), \(spectro) }
            """ + (speed.map { "\nsimulation: { speed: \($0), seed: 7 }\n" } ?? "\n")
        return (Scratch().write("lab.yaml", text), text)
    }

    @Test func aSpeedOtherThanOneIsRefusedAtTheSpeedWhenAnInstrumentIsReal() throws {
        let (path, text) = Self.lab(speed: "3000", reactor: "modbus: { host: 192.168.1.20, port: 502 }")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: path) }
        let diagnostic = try #require(error?.diagnostics.first)
        let line = text.split(separator: "\n").last { $0.contains("speed:") }!
        let column = line.distance(from: line.startIndex, to: line.range(of: "3000")!.lowerBound) + 1
        #expect("\(diagnostic.location)" == "\(path):5:\(column)")
        #expect(diagnostic.message.contains("3000 times too fast on the real instrument 'reactor'"))
        #expect(diagnostic.hint?.contains("'speed: 1'") == true)
        #expect(diagnostic.hint?.contains("'simulate: true'") == true)
    }

    @Test func aRealSerialInstrumentIsRefusedToo() throws {
        let (path, _) = Self.lab(speed: "0.5", reactor: "simulate: true", spectro: "serial: /dev/ttyUSB0")
        let error = #expect(throws: ValidationError.self) { try LabConfig.load(path: path) }
        #expect(error?.diagnostics.first?.message.contains("2 times too slowly on the real instrument 'spectro'") == true)
    }

    @Test func speedOneWithARealInstrumentIsFine() throws {
        let (path, _) = Self.lab(speed: "1", reactor: "modbus: { host: 192.168.1.20, port: 502 }")
        #expect(try LabConfig.load(path: path).simulation.speed == 1)
    }

    @Test func noSpeedWithARealInstrumentIsFine() throws {
        let (path, _) = Self.lab(speed: nil, reactor: "modbus: { host: 192.168.1.20, port: 502 }")
        #expect(try LabConfig.load(path: path).simulation.speed == 1)
    }

    @Test func anySpeedIsFineWhenEveryInstrumentIsSimulated() throws {
        let (path, _) = Self.lab(speed: "3000", reactor: "simulate: true")
        #expect(try LabConfig.load(path: path).simulation.speed == 3000)
    }
}
