import CSerialPort
import Glibc
public import LabCore

/// A pseudo-terminal pair: a simulated serial device serves the primary side; a driver opens the
/// secondary side's path exactly as it would open /dev/ttyUSB0.
public struct PseudoTerminal: Sendable {
    public let primary: Int32
    /// Held open by the simulator so the line does not hang up between driver connections.
    public let secondary: Int32
    public let path: String

    public static func open() throws(LabError) -> PseudoTerminal {
        var name = [CChar](repeating: 0, count: 128)
        let primary = serendip_open_pty(&name, name.count)
        guard primary >= 0 else {
            throw LabError(.transport, "cannot create a pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let secondary = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard secondary >= 0 else {
            Glibc.close(primary)
            throw LabError(.transport, "cannot open \(path)")
        }
        // Raw on both sides: no echo, no line editing, bytes as sent.
        for fd in [primary, secondary] {
            var tio = termios()
            tcgetattr(fd, &tio)
            cfmakeraw(&tio)
            tcsetattr(fd, TCSANOW, &tio)
        }
        return PseudoTerminal(primary: primary, secondary: secondary, path: path)
    }

    public func close() {
        Glibc.close(secondary)
        Glibc.close(primary)
    }
}
