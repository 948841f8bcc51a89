import Foundation
import Glibc
import LabCore
import Synchronization

/// One running plugin process: its stdin (a socket, so that writing to a dead plugin is an error
/// and never a SIGPIPE), its stdout (read in bounded lines) and its stderr (drained by a thread of
/// its own, so a chatty plugin never blocks on a full pipe). It runs in a process group of its own,
/// so that killing it also kills whatever it started. Not thread-safe: `PluginLink` owns it.
final class PluginProcess {
    let pid: pid_t
    private var input: Int32
    private var output: Int32
    private var buffer: [UInt8] = []
    private var head = 0
    private var chunk = [UInt8](repeating: 0, count: 65536)
    private var finished = false

    /// Starts `command` in `directory`; each stderr line (cut at 1,000 bytes) goes to `stderr`.
    init(command: [String], directory: String, stderr: @escaping @Sendable (String) -> Void) throws(LabError) {
        // Socket pairs rather than pipes: created close-on-exec atomically (pipe2 is not visible
        // from Swift), and a send to a dead plugin is EPIPE with MSG_NOSIGNAL, never a SIGPIPE.
        var stdinPair: [Int32] = [-1, -1], stdoutPipe: [Int32] = [-1, -1], stderrPipe: [Int32] = [-1, -1]
        for index in 0..<3 {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                let reason = String(cString: strerror(errno))
                (stdinPair + stdoutPipe).filter { $0 >= 0 }.forEach { _ = close($0) }
                throw LabError(.transport, "cannot start plugin: socketpair: \(reason)")
            }
            switch index {
            case 0: stdinPair = pair
            case 1: stdoutPipe = [pair[0], pair[1]]
            default: stderrPipe = [pair[0], pair[1]]
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own group (killed as one); default signal handlers and an empty mask, whatever ours are.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attributes, 0)
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        // posix_spawn_file_actions_addchdir_np is not visible from Swift either: a shell changes
        // folder, then `exec` puts the plugin in its place (same pid, same group).
        let wrapped = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + command
        let argv = wrapped.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, argv[0]!, &actions, &attributes, argv, environ)
        // The child's ends are the child's now (or nobody's).
        [stdinPair[1], stdoutPipe[1], stderrPipe[1]].forEach { _ = close($0) }
        guard status == 0 else {
            [stdinPair[0], stdoutPipe[0], stderrPipe[0]].forEach { _ = close($0) }
            throw LabError(.instrumentLost, "cannot start plugin '\(command.joined(separator: " "))' in \(directory): \(String(cString: strerror(status)))")
        }
        self.pid = pid
        Self.running.withLock { $0[pid] = stdinPair[0] }
        input = stdinPair[0]
        output = stdoutPipe[0]
        _ = fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK)
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
        let errorOutput = stderrPipe[0]
        Thread.detachNewThread { Self.drain(errorOutput, to: stderr) }
    }

    deinit { finish(grace: 1) }

    /// Every plugin this process started and has not killed: its pid (and process group) and stdin.
    private static let running = Mutex<[pid_t: Int32]>([:])

    /// Ends every plugin at once, from any thread, also one stuck in a request its link still waits
    /// on: end of file on each stdin, `grace` seconds for all of them, then SIGKILL to each group
    /// (which takes whatever a plugin started along). For a process about to exit: a plugin left
    /// running would keep its device. The links learn of it on their next request.
    static func endAll(grace: Double) {
        // Under the lock: a link's `kill` leaves the table before it closes the socket and reaps the
        // pid, so neither number here can belong to something else yet.
        let pids = running.withLock { plugins in
            for input in plugins.values { _ = shutdown(input, Int32(SHUT_WR)) }
            return Array(plugins.keys)
        }
        let deadline = now() + grace
        for pid in pids {
            while now() < deadline, exitInfo(pid) == nil { usleep(2000) }
        }
        running.withLock { plugins in
            for pid in pids where plugins[pid] != nil { _ = Glibc.kill(-pid, SIGKILL) }
        }
    }

    /// How `pid` ended, if it has, without reaping it: its pid, and so its group, stay ours until `kill`.
    private static func exitInfo(_ pid: pid_t) -> siginfo_t? {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0, info._sifields._sigchld.si_pid == pid else { return nil }
        return info
    }

    /// Ends the plugin the polite way: closes its stdin (end of file is its cue to close the device
    /// and exit), gives it `grace` seconds, then kills it.
    func finish(grace: Double) {
        guard !finished else { return }
        _ = shutdown(input, Int32(SHUT_WR))
        _ = exitStatus(within: grace)
        kill()
    }

    /// Sends one line; false if the plugin no longer reads (it exited, or its input is full until `deadline`).
    func send(_ line: String, deadline: Double) -> Bool {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(input, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            guard n < 0, errno == EAGAIN || errno == EINTR, wait(input, for: Int16(POLLOUT), until: deadline) else { return false }
        }
        return true
    }

    enum LineFailure: Error { case timedOut, closed, tooLong }

    /// The next line of stdout, without its newline.
    func readLine(deadline: Double, maxBytes: Int) throws(LineFailure) -> ArraySlice<UInt8> {
        var scanned = head
        while true {
            if let end = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[head..<end]
                head = end + 1
                return line
            }
            // Lines already taken are dropped only now, so a flood of short lines costs no quadratic copying.
            buffer.removeSubrange(..<head)
            head = 0
            scanned = buffer.count
            guard buffer.count <= maxBytes else { throw .tooLong }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
            if n > 0 { buffer += chunk[..<n]; continue }
            if n == 0 { throw .closed }
            guard errno == EAGAIN || errno == EINTR else { throw .closed }
            guard wait(output, for: Int16(POLLIN), until: deadline) else { throw .timedOut }
        }
    }

    /// How the process ended, waiting up to `seconds` for it: its output closes a moment before it is gone.
    func exitStatus(within seconds: Double) -> String? {
        let deadline = Self.now() + seconds
        while true {
            if let status = exitStatus() { return status }
            guard Self.now() < deadline else { return nil }
            usleep(2000)
        }
    }

    /// How the process ended, if it has (without reaping it).
    func exitStatus() -> String? {
        guard let info = Self.exitInfo(pid) else { return nil }
        let code = info._sifields._sigchld.si_status
        guard Int(info.si_code) == Int(CLD_EXITED) else { return "was killed by signal \(code)" }
        // The shell that starts the plugin says 127 and 126 when it cannot run the command.
        let hint = code == 127 ? " (command not found; see its stderr in the log)" : code == 126 ? " (command not executable)" : ""
        return "exited with status \(code)" + hint
    }

    /// Kills the process group, reaps the plugin and closes our ends. Safe to call twice.
    func kill() {
        guard !finished else { return }
        finished = true
        Self.running.withLock { _ = $0.removeValue(forKey: pid) }
        _ = Glibc.kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        _ = close(input)
        _ = close(output)
        input = -1; output = -1
        buffer = []
        head = 0
    }

    private func wait(_ fd: Int32, for events: Int16, until deadline: Double) -> Bool {
        while true {
            let remaining = deadline - Self.now()
            guard remaining > 0 else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&entry, 1, Int32(min(remaining * 1000, 60_000).rounded(.up)))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Reads stderr until every writer is gone, then closes it. Memory stays bounded however much
    /// comes (lines cut at 1,000 bytes); only the first 200 lines of one process are logged.
    private static func drain(_ fd: Int32, to sink: @Sendable (String) -> Void) {
        var line: [UInt8] = [], logged = 0, dropped = 0
        var chunk = [UInt8](repeating: 0, count: 16384)
        func emit() {
            if logged < 200 { sink(String(decoding: line, as: UTF8.self)); logged += 1 } else { dropped += 1 }
            line.removeAll(keepingCapacity: true)
        }
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            for byte in chunk[..<n] {
                if byte == UInt8(ascii: "\n") { emit() } else if line.count < 1000 { line.append(byte) }
            }
        }
        if !line.isEmpty { emit() }
        if dropped > 0 { sink("(\(dropped) further lines of stderr not logged)") }
        close(fd)
    }
}
