import Foundation
import Glibc
public import LabCore

/// One daemon owns one database: an exclusive lock on `<database>.lock`, held while the daemon
/// runs and released by the kernel if it dies. SQLite's own locks do not express ownership.
public final class DatabaseLock: Sendable {
    public let path: String
    private let fd: Int32

    public init(database: String) throws(LabError) {
        path = database + ".lock"
        try LocalFilesystem.require((database as NSString).deletingLastPathComponent)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, PrivateFile.mode)
        guard fd >= 0 else { throw LabError(.storage, "cannot create lock file \(path)") }
        // No close() before a throw below: once every property is set, a throwing init still runs
        // deinit, which closes `fd`. A second close would close whatever another thread opened
        // under that number in between (it closed a simulator's listening socket in the tests).
        guard fchmod(fd, PrivateFile.mode) == 0 else {
            throw LabError(.storage, "cannot make lock file \(path) owner-only (mode 0600)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = Self.holder(fd)
            throw LabError(.storage, "another Serendip daemon\(holder.map { " (process \($0))" } ?? "") owns \(database): "
                           + "its lock \(path) is held; stop that one first, or use another data directory")
        }
        // Who holds it, for the next one to be told.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// The process number written in the lock file by its holder.
    private static func holder(_ fd: Int32) -> Int32? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: bytes[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    deinit {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
    }
}
