import Foundation
import LabCore
import LabTransport
import Testing

/// A serial port is claimed by whoever opens it first: a second program (a `driver test` beside the
/// daemon) is refused before it sends anything, and the port is free again once the first closes it.
@Suite struct PortClaimTests {
    @Test func aSecondOpenerOfASerialPortIsRefusedUntilTheFirstClosesIt() async throws {
        let device = try LineServer { _ in "OK" }
        defer { device.stop() }
        let first = SerialLine(path: device.path), second = SerialLine(path: device.path)
        #expect(try await first.query("RATE?") == "OK")
        do {
            _ = try await second.query("STOP")
            Issue.record("a second program wrote to a port in use")
        } catch {
            #expect(error.code == .instrumentLost && error.message.contains("in use by another program") && error.message.contains("nothing was sent"),
                    "\(error)")
        }
        await first.close()
        #expect(try await second.query("RATE?") == "OK")
    }

    @Test func aSecondBusOnAnRTUPortInUseIsRefused() async throws {
        let pair = try await SocatPair.start()
        defer { pair.stop() }
        let first = ModbusRTUBus(ModbusRTULine(path: pair.clientSide, baud: 19200))
        let second = ModbusRTUBus(ModbusRTULine(path: pair.clientSide, baud: 19200))
        try await first.connect()
        await #expect(throws: LabError.self) { try await second.connect() }
        await first.disconnect()
        try await second.connect()
        await second.disconnect()
    }
}
