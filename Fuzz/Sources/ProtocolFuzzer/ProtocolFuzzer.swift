import LabSpec

/// The drivers of the example lab, inline so that every input is checked against real channels,
/// units and limits without touching the file system.
let drivers: [String: DriverSpec] = {
    let reactor = """
        driver: thermo-reactor
        transport: modbus
        channels:
          setpoint:    { holding: 100, type: float32, unit: degC, access: rw, limits: [0, 150] }
          temperature: { input: 0, type: float32, unit: degC }
          stirrer:     { coil: 5, access: rw }
        safe_state: { setpoint: 25 degC, stirrer: false }
        """
    let spectro = """
        driver: uv-vis
        transport: serial
        channels:
          absorbance: { query: "ABS?", unit: AU }
          lamp:       { query: "LAMP?", write: "LAMP {value}", type: bool, access: rw }
        safe_state: { lamp: false }
        """
    return ["thermo-reactor": try! DriverSpec.parse(reactor, path: "reactor.yaml"),
            "uv-vis": try! DriverSpec.parse(spectro, path: "uv-vis.yaml")]
}()

/// One input: any bytes. Valid UTF-8 goes through the whole validator (YAML, types, units,
/// limits, loops); a protocol file and a driver file are both tried. Nothing may crash or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtocol(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    _ = try? ProtocolParser.parse(text, path: "/nonexistent/fuzz.yaml", drivers: drivers)
    _ = try? DriverSpec.parse(text, path: "/nonexistent/fuzz-driver.yaml")
    return 0
}

/// SwiftPM links an executable through `<module>_main`; hand control to libFuzzer's driver there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@_cdecl("ProtocolFuzzer_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzProtocol(data, size) }
}
