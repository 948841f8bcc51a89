import Crypto
import Foundation
public import GRDB

/// What the process recording a run stores about itself with the run: where it ran and exactly
/// which build ran it. A version string can be reused by two builds; a build ID cannot.
enum ProcessProvenance {
    static let host = ProcessInfo.processInfo.hostName

    /// `build-id:` and the executable's GNU build ID, the linker's hash of what it linked (what
    /// debuggers and crash reports name a build by; Swift links every Linux executable with one). It is
    /// read from the ELF headers, a few pages: hashing a 90 MB debug executable would hold up the first
    /// run by a noticeable fraction of a second. Without a build ID, `sha256:` and the file's SHA-256.
    static let build: String = {
        let path = "/proc/self/exe"
        guard let image = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            return "unknown (\(path) cannot be read)"
        }
        if let id = gnuBuildID(image) { return "build-id:" + hex(id) }
        return "sha256:" + hex(Array(SHA256.hash(data: image)))
    }()

    static func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// The NT_GNU_BUILD_ID note of a little-endian ELF64 image, if it has one.
    static func gnuBuildID(_ image: Data) -> [UInt8]? {
        let bytes = [UInt8](image.prefix(64))
        guard bytes.count == 64, bytes[0..<4] == [0x7f, 0x45, 0x4c, 0x46], bytes[4] == 2, bytes[5] == 1 else { return nil }
        func integer(_ at: Int, _ size: Int) -> Int? {
            guard at >= 0, at + size <= image.count else { return nil }
            return (0..<size).reduce(0) { $0 | Int(image[image.startIndex + at + $1]) << (8 * $1) }
        }
        guard let tableAt = integer(0x20, 8), let entrySize = integer(0x36, 2), let entries = integer(0x38, 2) else { return nil }
        for entry in 0..<entries {
            let header = tableAt + entry * entrySize
            guard integer(header, 4) == 4,   // PT_NOTE
                  let start = integer(header + 8, 8), let size = integer(header + 0x20, 8) else { continue }
            var at = start
            while at + 12 <= start + size, let nameSize = integer(at, 4), let descSize = integer(at + 4, 4), let type = integer(at + 8, 4) {
                let name = at + 12, desc = name + (nameSize + 3) / 4 * 4
                if type == 3, nameSize == 4, integer(name, 4) == 0x0055_4e47, desc + descSize <= image.count {   // "GNU\0"
                    return [UInt8](image[(image.startIndex + desc)..<(image.startIndex + desc + descSize)])
                }
                at = desc + (descSize + 3) / 4 * 4
            }
        }
        return nil
    }
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
