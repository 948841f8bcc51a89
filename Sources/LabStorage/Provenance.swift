import Crypto
import Foundation
public import GRDB

/// What the process recording a run stores about itself with the run: where it ran and exactly
/// which build ran it. A version string can be reused by two builds; the executable's hash cannot.
enum ProcessProvenance {
    static let host = ProcessInfo.processInfo.hostName

    /// `sha256:` and the hex SHA-256 of the running executable, computed once per process.
    static let build: String = {
        let path = "/proc/self/exe"
        guard let bytes = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            return "unknown (\(path) cannot be read)"
        }
        return "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }()
}

extension LabDatabase {
    /// Runs gain where and by which build they ran and the project they were run for (until now only
    /// on their queue entry: filled in from it); each run's instruments gain the device's own answer
    /// to its driver's identity query.
    static func registerProvenance(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v10: provenance: host, build, project, device identity") { db in
            try db.execute(sql: """
                ALTER TABLE run ADD COLUMN host TEXT;
                ALTER TABLE run ADD COLUMN software_build TEXT;
                ALTER TABLE run ADD COLUMN project TEXT;
                UPDATE run SET project = (SELECT project FROM queue_entry WHERE queue_entry.run_id = run.id LIMIT 1);
                ALTER TABLE run_instrument ADD COLUMN device_query TEXT;
                ALTER TABLE run_instrument ADD COLUMN device_answer TEXT;
                """)
        }
    }
}
