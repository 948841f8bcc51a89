import Foundation
public import LabCore

/// SQLite's locks and WAL shared memory do not work reliably over a network filesystem: two
/// machines can both believe they hold the write lock, and a database can be corrupted silently.
/// The daemon's data directory must be on a local disk; this says which filesystem it found.
public enum LocalFilesystem {
    /// Filesystem types (as /proc/self/mountinfo names them) that are remote or clustered, and the
    /// FUSE filesystems that reach other machines.
    static let remote: Set<String> = [
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "afs", "coda", "lustre", "gpfs", "gfs2", "ocfs2", "glusterfs",
        "beegfs", "orangefs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.glusterfs", "fuse.cephfs",
        "fuse.davfs", "fuse.goofys", "fuse.juicefs",
    ]

    /// Whether a filesystem of this type is remote.
    public static func isRemote(type: String) -> Bool { remote.contains(type) }

    /// The type of the filesystem holding `path` (an absolute path with no symbolic links), by the
    /// deepest mount point above it in a mountinfo text.
    static func type(of path: String, mountinfo: String) -> String? {
        var best: (mountPoint: String, type: String)?
        for line in mountinfo.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let fields = halves[0].split(separator: " "), tail = halves[1].split(separator: " ")
            guard fields.count >= 5, let type = tail.first else { continue }
            let mountPoint = String(fields[4]).replacingOccurrences(of: "\\040", with: " ")
            let inside = mountPoint == "/" || path == mountPoint || path.hasPrefix(mountPoint + "/")
            if inside, mountPoint.count >= (best?.mountPoint.count ?? -1) { best = (mountPoint, String(type)) }
        }
        return best?.type
    }

    /// Refuses a directory on a network filesystem, naming it and saying what to do.
    public static func require(_ directory: String) throws(LabError) {
        let path = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        guard let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8),
              let type = type(of: path, mountinfo: mountinfo), isRemote(type: type) else { return }
        throw LabError(.storage, "\(directory) is on a network filesystem (\(type)): SQLite cannot lock a database "
                       + "reliably there, and a run's data could be lost or corrupted; use a directory on a local disk "
                       + "(and copy backups to the network with `serendip backup`)")
    }
}
