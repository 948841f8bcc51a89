public import LabCore

/// The host's side of an out-of-process driver (docs/plugins.md): starts the plugin, asks it to
/// `describe` itself and to `connect`, then sends one request at a time and waits for its answer,
/// never longer than the timeout. Whatever the plugin does wrong (exits, hangs, prints something
/// that is not a reply, a line past `maxLineBytes`) it is killed and the request fails with
/// `.instrumentLost` (`.timeout` for no reply); it is started again on a later request, no sooner
/// than a backoff that doubles with each failure in a row. Runs on its own serial queue: reads block.
public actor PluginLink {
    public struct Settings: Sendable {
        public var command: [String]
        public var directory: String
        /// Seconds per request; nil takes the one `validate` found in the plugin's `describe`.
        public var timeout: Double?
        /// Seconds for `describe` and `connect` (an interpreter may take a while to start).
        public var startTimeout: Double = 10
        public var maxLineBytes: Int = 1 << 20
        /// Seconds before the first restart, doubling to the upper bound while the plugin keeps failing.
        public var backoff: ClosedRange<Double> = 0.1...5
        /// Sent as the params of `connect`.
        public var options: [String: PluginValue] = [:]

        public init(command: [String], directory: String, timeout: Double? = nil) {
            self.command = command; self.directory = directory; self.timeout = timeout
        }
    }

    public nonisolated let name: String
    public nonisolated let settings: Settings
    /// Checks the plugin's `describe` result; returns the request timeout it declares, if any.
    private let validate: @Sendable (PluginValue) throws(LabError) -> Double?
    private let stderr: @Sendable (String) -> Void
    private let executor: SerialQueueExecutor
    private var process: PluginProcess?
    private var timeout: Double = 1
    private var nextID = 0
    private var delay: Double
    private var notBefore = 0.0
    private var lastFailure = ""
    /// How many times a plugin process was started.
    public private(set) var starts = 0

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(name: String, settings: Settings, stderr: @escaping @Sendable (String) -> Void = { _ in },
                validate: @escaping @Sendable (PluginValue) throws(LabError) -> Double? = { _ in nil }) {
        self.name = name
        self.settings = settings
        self.stderr = stderr
        self.validate = validate
        delay = settings.backoff.lowerBound
        executor = SerialQueueExecutor(label: "serendip.plugin.\(name)")
    }

    /// Sends `method` and returns the plugin's `result`. An `error` reply is thrown as the code the
    /// plugin gave (`lost`, `timeout`, `refused`, or any other as `.protocolViolation`).
    public func request(_ method: String, _ params: [String: PluginValue] = [:]) throws(LabError) -> PluginValue {
        let process = try running()
        let reply = try exchange(process, method, params, timeout: timeout)
        delay = settings.backoff.lowerBound
        return try reply.get()
    }

    /// Ends every plugin of this process, each link busy or not: for a process about to exit.
    public static func endEveryPlugin(grace: Double = 1) { PluginProcess.endAll(grace: grace) }

    /// Stops the plugin: end of file on its stdin, a second to exit, then SIGKILL. The next request starts it again.
    public func stop() {
        process?.finish(grace: 1)
        process = nil
    }

    private func running() throws(LabError) -> PluginProcess {
        if let process {
            guard let ended = process.exitStatus() else { return process }
            fail("\(ended) between requests")
        }
        let wait = notBefore - PluginProcess.now()
        if wait > 0 {
            throw LabError(.instrumentLost, "\(name): plugin \(lastFailure); starting it again in \(Self.seconds(wait))")
        }
        starts += 1
        let started = try PluginProcess(command: settings.command, directory: settings.directory, stderr: stderr)
        process = started
        do {
            let description = try exchange(started, "describe", [:], timeout: settings.startTimeout).get()
            let declared = try validate(description)
            timeout = settings.timeout ?? declared ?? 1
            _ = try exchange(started, "connect", settings.options, timeout: settings.startTimeout).get()
        } catch {
            if process != nil { fail("failed to start: \(error.message)") }
            throw error
        }
        return started
    }

    /// One request and its reply. A fault of the plugin kills it and throws; an `error` reply is a failure result.
    private func exchange(_ process: PluginProcess, _ method: String, _ params: [String: PluginValue],
                          timeout: Double) throws(LabError) -> Result<PluginValue, LabError> {
        nextID += 1
        let id = nextID
        let deadline = PluginProcess.now() + timeout
        let line = "{\"id\":\(id),\"method\":\"\(method)\",\"params\":\(PluginValue.object(params).json)}"
        guard process.send(line, deadline: deadline) else {
            throw fault(.instrumentLost, "\(process.exitStatus(within: 0.5) ?? "stopped reading its input") before '\(method)'")
        }
        while true {
            let text: ArraySlice<UInt8>
            do {
                text = try process.readLine(deadline: deadline, maxBytes: settings.maxLineBytes)
            } catch .timedOut {
                throw fault(.timeout, "gave no reply to '\(method)' within \(Self.seconds(timeout)); killed it")
            } catch .tooLong {
                throw fault(.instrumentLost, "sent a line longer than \(settings.maxLineBytes) bytes in reply to '\(method)'; killed it")
            } catch {
                throw fault(.instrumentLost, "\(process.exitStatus(within: 0.5) ?? "closed its output") during '\(method)'")
            }
            guard let reply = PluginValue.parse(text), case .object(let fields) = reply else {
                let shown = String(decoding: text.prefix(80), as: UTF8.self)
                throw fault(.instrumentLost, "answered '\(method)' with something that is not a JSON object (\"\(shown)\"); killed it")
            }
            // A line without our id (a reply that came too late, a notice) is not the answer.
            guard case .number(let got)? = fields["id"], got == Double(id) else { continue }
            if let result = fields["result"] { return .success(result) }
            if let error = fields["error"] { return .failure(refusal(error, method)) }
            throw fault(.instrumentLost, "replied to '\(method)' with neither 'result' nor 'error'; killed it")
        }
    }

    private func refusal(_ error: PluginValue, _ method: String) -> LabError {
        let message = error["message"]?.string ?? error.string ?? error.json
        let code: LabError.Code = switch error["code"]?.string {
        case "lost": .instrumentLost
        case "timeout": .timeout
        case "refused": .outOfLimits
        default: .protocolViolation
        }
        return LabError(code, "\(name): \(method): plugin says: \(message)")
    }

    private func fault(_ code: LabError.Code, _ what: String) -> LabError {
        fail(what)
        return LabError(code, "\(name): plugin \(what); starting it again in \(Self.seconds(notBefore - PluginProcess.now()))")
    }

    /// Kills the plugin and holds its restart back by the current delay, which doubles for the next failure.
    private func fail(_ reason: String) {
        process?.kill()
        process = nil
        lastFailure = reason
        notBefore = PluginProcess.now() + delay
        delay = min(delay * 2, settings.backoff.upperBound)
    }

    private static func seconds(_ s: Double) -> String {
        let ms = Int((max(0, s) * 1000).rounded())
        return ms < 1000 ? "\(ms) ms" : "\(Double((ms + 50) / 100) / 10) s"
    }
}
