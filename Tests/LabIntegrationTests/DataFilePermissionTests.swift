import Foundation
import Glibc
import LabCore
import LabServer
import LabStorage
import Testing

@Suite struct DataFilePermissionTests {
    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
    }

    @Test func everyDataFileIsOwnerOnlyAfterARunIsWritten() async throws {
        let previous = umask(0o022)  // the usual umask, which left the database world-readable
        defer { umask(previous) }
        let served = try await ServedDatabase()  // writes a run with measurements and outputs
        defer { served.server.stop() }
        let database = served.database.path
        let lock = try DatabaseLock(database: database)
        for file in [database, database + "-wal", database + "-shm", lock.path, served.path] {
            #expect(Self.mode(file) == 0o600, "\(file) has mode \(String(Self.mode(file) ?? 0, radix: 8))")
        }
    }

    @Test func aDatabaseLeftReadableByOthersIsMadeOwnerOnlyWhenOpened() throws {
        let path = Repository.temporaryDatabase()
        for file in [path, path + ".lock"] {
            #expect(FileManager.default.createFile(atPath: file, contents: nil, attributes: [.posixPermissions: 0o644]))
        }
        let database = try LabDatabase(path: path)
        defer { withExtendedLifetime(database) {} }  // -wal and -shm exist while it is open
        let lock = try DatabaseLock(database: path)
        for file in [path, path + "-wal", path + "-shm", lock.path] {
            #expect(Self.mode(file) == 0o600, "\(file) has mode \(String(Self.mode(file) ?? 0, radix: 8))")
        }
    }
}
