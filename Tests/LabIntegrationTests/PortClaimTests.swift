import Foundation
import LabCore
import LabTransport
import Synchronization
import Testing

/// A serial port is claimed by the process that opens it: another program (a `driver test` beside
/// the daemon) is refused before it sends anything; the daemon's own handles never refuse each other.
@Suite struct PortClaimTests {
    static func driverTest(_ driver: String, _ address: String) throws -> (status: Int32, output: String) {
        try runToEnd(Child.executable.path, ["driver", "test", Repository.path(driver), "--address", address], withStandardError: true)
    }

    @Test func anotherProgramIsRefusedASerialPortInUseAndSendsNothing() async throws {
        let heard = Mutex(0)
        let device = try LineServer { _ in heard.withLock { $0 += 1 }; return "1.0" }
        defer { device.stop() }
        let held = SerialLine(path: device.path), again = SerialLine(path: device.path)
        #expect(try await held.query("RATE?") == "1.0")
        // The same process may open it again (an instrument reconnected while an old handle lingers).
        #expect(try await again.query("RATE?") == "1.0")
        let before = heard.withLock { $0 }
        let refused = try Self.driverTest("drivers/syringe-pump.yaml", "serial://\(device.path)?baud=19200")
        #expect(refused.status != 0 && refused.output.contains("in use by another program"), "\(refused.output)")
        #expect(heard.withLock { $0 } == before, "the refused program sent something")
        await held.close()
        await again.close()
        let freed = try Self.driverTest("drivers/syringe-pump.yaml", "serial://\(device.path)?baud=19200")
        #expect(!freed.output.contains("in use"), "\(freed.output)")
        #expect(heard.withLock { $0 } > before)
    }

    @Test func anotherProgramIsRefusedAnRTUPortInUse() async throws {
        let pair = try await SocatPair.start()
        defer { pair.stop() }
        let bus = ModbusRTUBus(ModbusRTULine(path: pair.clientSide, baud: 19200))
        try await bus.connect()
        let refused = try Self.driverTest("drivers/temperature-controller.yaml", "modbus-rtu://\(pair.clientSide)?unit=1")
        #expect(refused.status != 0 && refused.output.contains("in use by another program"), "\(refused.output)")
        await bus.disconnect()
    }

    /// A device that answers with another line end than the driver file's: the timeout says so.
    @Test func aReplyWithoutTheExpectedTerminatorTimesOutNamingTheTerminator() async throws {
        let device = try LineServer { _ in "1.0" }
        defer { device.stop() }
        let line = SerialLine(path: device.path, terminator: "\r\n", timeout: 0.3)
        do {
            _ = try await line.query("X?")
            Issue.record("a reply without its terminator was taken")
        } catch {
            #expect(error.code == .timeout && error.message.contains("came without the terminator \"\\r\\n\"") && error.message.contains("terminator and baud"),
                    "\(error.message)")
        }
    }
}
