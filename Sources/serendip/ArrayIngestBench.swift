import Foundation
import LabCore
import LabDrivers
import LabEngine
import LabSpec
import LabStorage
import Logging

/// Issue 14's array figure: spectra of `length` float64 from an in-process photometer on a virtual
/// clock, streamed through the engine and the writer as typed blobs, timed until the run's
/// `completed` state is committed. The photometer is the toy lab's, with a longer spectrum.
struct ArrayIngestBench {
    var arrays: Int
    var length: Int
    var rounds: Int
    var directory: String

    /// A `measure` step of this many spectra is one step, committed whole.
    static let block = 100
    var blocks: Int { max(1, (arrays + Self.block - 1) / Self.block) }
    var bytes: Int { blocks * Self.block * length * 8 }

    /// Megabytes (10⁶ bytes) of values per second, one per round.
    func measure() async throws -> [Double] {
        var config = try LabConfig.load(path: "examples/toy-lab/lab.yaml")
        let spectrometer = try DriverSpec.parse(driverText, path: "bench-uv-vis.yaml")
        for (name, binding) in config.instruments where binding.driver.name == spectrometer.name {
            config.instruments[name]?.driver = spectrometer
        }
        let definition = try ProtocolParser.parse(protocolText, path: "bench-arrays.yaml", drivers: config.drivers)
        var figures: [Double] = []
        for _ in 0..<rounds { figures.append(try await round(definition, config)) }
        return figures
    }

    private var driverText: String {
        """
        driver: uv-vis
        transport: serial
        channels:
          spectrum: { query: "SPEC?", type: array, length: \(length), unit: AU, axis: { name: wavelength, unit: nm, start: 200, step: 0.125 } }
          lamp: { query: "LAMP?", write: "LAMP {value}", type: bool, access: rw }

        """
    }

    private var protocolText: String { IngestBench.streaming(name: "bench-arrays", channel: "spectrum", blocks: blocks, of: Self.block) }

    private func round(_ definition: ProtocolDefinition, _ config: LabConfig) async throws -> Double {
        let data = directory + "/arrays"
        try? FileManager.default.removeItem(atPath: data)
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let recorder = try LabDatabase(path: data + "/serendip.sqlite")
        let elapsed = try await DaemonBench.timedRun(definition, config, recorder: recorder).seconds
        return Double(bytes) / elapsed / 1e6
    }
}
