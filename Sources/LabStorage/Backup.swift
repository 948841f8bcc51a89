import Foundation
import GRDB
import Glibc
public import LabCore

extension LabDatabase {
    /// Copies the database to `destination` as it was at one instant, while a daemon may be writing:
    /// SQLite's online backup copies every page in one read transaction, so the copy holds each run and
    /// step that was committed when it began, whole, and nothing begun after. The pages go to an
    /// owner-only temporary file beside `destination`, reach the disk, and only then take its name: a
    /// failed or killed backup never leaves a half-written file under the name a person will restore from.
    public func backup(to destination: String, replacing: Bool) throws {
        // Renaming a copy over the live database would leave its -wal describing another file.
        guard !Self.sameFile(destination, path) else {
            throw LabError(.conflict, "\(destination) is the database itself: back it up to another file")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory) {
            guard !isDirectory.boolValue else {
                throw LabError(.conflict, "\(destination) is a directory: give the backup's file name, such as \(destination)/serendip-backup.sqlite")
            }
            guard replacing else { throw LabError(.conflict, "\(destination) exists: give --force to replace it, or choose another file") }
        }
        let directory = (destination as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LabError(.storage, "cannot write \(destination): there is no directory \(directory)")
        }
        let temporary = (directory.isEmpty ? "." : directory) + "/.\((destination as NSString).lastPathComponent).\(UUID().uuidString).partial"
        defer { for file in [temporary, temporary + "-journal"] { unlink(file) } }
        do {
            try PrivateFile.create(temporary)
            let copy = try DatabaseQueue(path: temporary)
            try pool.backup(to: copy)
            try copy.close()
        } catch {
            throw LabError(.storage, "cannot back up \(path) to \(destination)", cause: error)
        }
        try Self.sync(temporary)
        // link() refuses an existing name, so a file that appeared meanwhile is not replaced either.
        let placed = replacing ? rename(temporary, destination) : link(temporary, destination)
        guard placed == 0 else {
            let reason = errno == EEXIST ? "it exists: give --force to replace it" : String(cString: strerror(errno))
            throw LabError(.storage, "cannot write \(destination): \(reason)")
        }
        try Self.sync(directory.isEmpty ? "." : directory)
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    /// Flushes a file or a directory (a new name) to the disk.
    private static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        guard fd >= 0, fsync(fd) == 0 else {
            throw LabError(.storage, "cannot flush \(path) to disk: \(String(cString: strerror(errno)))")
        }
    }
}
