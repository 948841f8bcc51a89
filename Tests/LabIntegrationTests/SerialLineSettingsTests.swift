import Glibc
import LabCore
import LabDrivers
import LabSpec
import LabTransport
import Testing

/// Data bits, parity, stop bits and flow control reach the tty through termios.
@Suite struct SerialLineSettingsTests {
    static let combinations: [SerialLineSettings] = (5...8).flatMap { bits in
        SerialLineSettings.Parity.allCases.flatMap { parity in
            (1...2).flatMap { stop in
                SerialLineSettings.FlowControl.allCases.map { flow in
                    SerialLineSettings(baud: 19200, dataBits: bits, parity: parity, stopBits: stop, flowControl: flow)
                }
            }
        }
    }

    @Test func everyCombinationOfSettingsMapsToItsTermiosFlags() throws {
        let sizes: [Int: tcflag_t] = [5: tcflag_t(CS5), 6: tcflag_t(CS6), 7: tcflag_t(CS7), 8: tcflag_t(CS8)]
        #expect(Self.combinations.count == 4 * 3 * 2 * 3)
        for settings in Self.combinations {
            // Start from a tty left in a state of every flag set: each one must be set or cleared.
            var tio = termios()
            tio.c_cflag = ~tcflag_t(0)
            tio.c_iflag = ~tcflag_t(0)
            try SerialLine.apply(settings, to: &tio)
            let c = tio.c_cflag, i = tio.c_iflag
            #expect(c & tcflag_t(CSIZE) == sizes[settings.dataBits], "\(settings)")
            #expect((c & tcflag_t(PARENB) != 0) == (settings.parity != .none), "\(settings)")
            #expect((c & tcflag_t(PARODD) != 0) == (settings.parity == .odd), "\(settings)")
            #expect((c & tcflag_t(CSTOPB) != 0) == (settings.stopBits == 2), "\(settings)")
            #expect((c & tcflag_t(CRTSCTS) != 0) == (settings.flowControl == .rtscts), "\(settings)")
            #expect((i & tcflag_t(IXON) != 0) == (settings.flowControl == .xonxoff), "\(settings)")
            #expect((i & tcflag_t(IXOFF) != 0) == (settings.flowControl == .xonxoff), "\(settings)")
            #expect(i & tcflag_t(IXANY) == 0)
            #expect(c & tcflag_t(CLOCAL | CREAD) == tcflag_t(CLOCAL | CREAD))
            #expect(cfgetospeed(&tio) == speed_t(B19200) && cfgetispeed(&tio) == speed_t(B19200))
            // Raw: no echo, no line editing, no translation of CR and NL.
            #expect(tio.c_lflag & tcflag_t(ECHO | ICANON) == 0)
            #expect(i & tcflag_t(ICRNL) == 0)
        }
    }

    /// What a tty reports after it was set is compared with what was asked: an adapter that keeps
    /// 8 data bits when asked for 7 is refused, not read as garbage.
    @Test func settingsATtyDidNotTakeAreNamed() throws {
        let settings = SerialLineSettings(baud: 9600, dataBits: 7, parity: .even, stopBits: 2, flowControl: .rtscts)
        var held = termios()
        try SerialLine.apply(settings, to: &held)
        #expect(SerialLine.unmet(settings, held: held, pseudoTerminal: false).isEmpty)
        // As a pseudo-terminal (or a limited adapter) answers: 8 data bits, no parity.
        held.c_cflag = (held.c_cflag & ~tcflag_t(CSIZE | PARENB)) | tcflag_t(CS8)
        #expect(SerialLine.unmet(settings, held: held, pseudoTerminal: false) == ["7 data bits", "parity E"])
        #expect(SerialLine.unmet(settings, held: held, pseudoTerminal: true).isEmpty)
        held.c_cflag &= ~(tcflag_t(CSTOPB) | tcflag_t(CRTSCTS))
        cfsetospeed(&held, speed_t(B4800))
        #expect(SerialLine.unmet(settings, held: held, pseudoTerminal: true) == ["9600 baud", "2 stop bits", "flow control rtscts"])
    }

    @Test func aRateTermiosHasNoConstantForIsRefusedNotSetToAnother() {
        var tio = termios()
        #expect(throws: LabError.self) { try SerialLine.apply(SerialLineSettings(baud: 12345), to: &tio) }
    }

    /// A pseudo-terminal keeps stop bits and flow control as set (Linux forces its CS8 without
    /// parity, so data bits and parity are checked in the mapping above only).
    @Test(arguments: [
        SerialLineSettings(baud: 9600, stopBits: 2, flowControl: .rtscts),
        SerialLineSettings(baud: 4800, dataBits: 7, parity: .even, stopBits: 1, flowControl: .xonxoff),
        SerialLineSettings(baud: 115200),
    ])
    func theLineIsOpenedWithTheSettingsItWasGiven(settings: SerialLineSettings) async throws {
        let device = try LineServer { _ in "1.5" }
        defer { device.stop() }
        let line = SerialLine(port: .path(device.path), settings: settings, timeout: 5)
        #expect(try await line.query("X?") == "1.5")
        var tio = termios()
        #expect(tcgetattr(device.terminal!.secondary, &tio) == 0)
        #expect((tio.c_cflag & tcflag_t(CSTOPB) != 0) == (settings.stopBits == 2))
        #expect((tio.c_cflag & tcflag_t(CRTSCTS) != 0) == (settings.flowControl == .rtscts))
        #expect((tio.c_iflag & tcflag_t(IXON | IXOFF) == tcflag_t(IXON | IXOFF)) == (settings.flowControl == .xonxoff))
        #expect(cfgetospeed(&tio) == SerialLine.speeds[settings.baud])
    }

    /// The lab config's settings, over the driver file's, are the ones the line is opened with.
    @Test func aLabConfigsLineSettingsReachTheTty() async throws {
        let device = try LineServer { _ in "2.5" }
        defer { device.stop() }
        let scratch = Scratch()
        scratch.write("m.yaml", """
            driver: meter
            transport: serial
            serial: { baud: 9600, stop_bits: 1, flow_control: none, timeout: 5 s }
            channels:
              reading: { query: "R?" }
            """)
        let lab = try LabConfig.load(path: scratch.write("lab.yaml", """
            lab: bench
            instruments:
              m: { driver: m.yaml, serial: "serial://\(device.path)?baud=38400&stop_bits=2&flow_control=rtscts" }
            """))
        let meter = try #require(try InstrumentConnector.connect(lab)["m"])
        #expect(try await meter.read("reading") == .real(2.5))
        var tio = termios()
        #expect(tcgetattr(device.terminal!.secondary, &tio) == 0)
        #expect(tio.c_cflag & tcflag_t(CSTOPB) != 0)
        #expect(tio.c_cflag & tcflag_t(CRTSCTS) != 0)
        #expect(cfgetospeed(&tio) == speed_t(B38400))
    }
}
