import ArgumentParser
import LabDaemon
import LabStorage

/// `serendip backup`: a consistent copy of the database, taken while the daemon runs.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the data directory's database to FILE, consistent while the daemon writes (no daemon needed).",
        discussion: "The copy holds every run and step committed when the backup began, each whole. It is written beside FILE "
            + "and renamed into place, owner-only (mode 0600) like the database. Restore by stopping the daemon and copying "
            + "FILE over DIR/serendip.sqlite (removing any serendip.sqlite-wal and -shm).")

    @Option(help: ArgumentHelp("The file to write the backup to.", valueName: "FILE")) var to: String
    @Flag(help: "Replace FILE if it exists.") var force = false
    @OptionGroup var data: DataDirectory

    func run() throws {
        do {
            try data.openDatabase().backup(to: to, replacing: force)
        } catch { throw data.fail(error) }
        say("backed up \(Daemon.Layout(data.path).database) to \(to)")
    }
}
