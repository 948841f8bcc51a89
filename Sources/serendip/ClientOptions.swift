import ArgumentParser
import Foundation

/// `--data DIR` (or SERENDIP_DATA): the data directory of one daemon, shared by `serve` and every client command.
struct DataDirectory: ParsableArguments {
    @Option(name: .customLong("data"), help: ArgumentHelp(
        "The daemon's data directory (its database and socket); default: $SERENDIP_DATA.", valueName: "DIR"))
    var option: String?

    var path: String { option ?? ProcessInfo.processInfo.environment["SERENDIP_DATA"] ?? "" }

    func validate() throws {
        guard !path.isEmpty else {
            throw ValidationError("say which data directory: --data DIR, or set SERENDIP_DATA=DIR")
        }
    }
}

/// What every client command shares: the daemon to ask and how to print its answer. The one gate
/// where a failed call becomes a message on standard error and an exit status.
struct ClientOptions: ParsableArguments {
    @OptionGroup var data: DataDirectory

    @Flag(help: "Print the daemon's result as one JSON object or array (sorted keys) instead of text.")
    var json = false

    func call(_ method: String, _ params: some Encodable = Empty()) throws -> Data {
        do { return try DaemonClient(directory: data.path).call(method, params) } catch { throw fail(error) }
    }

    /// Prints the result: as JSON with --json, otherwise as `human` renders it.
    func show<Result: Decodable>(_ result: Data, as type: Result.Type, _ human: (Result) -> String) throws {
        if json {
            let object = try JSONSerialization.jsonObject(with: result, options: [.fragmentsAllowed])
            let sorted = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
            say(String(decoding: sorted, as: UTF8.self))
            return
        }
        let value: Result
        do { value = try JSONDecoder().decode(Result.self, from: result) } catch {
            throw fail(ClientFailure("the daemon's result is not what this client expects (\(error)); try --json", status: 1))
        }
        say(human(value))
    }

    func fail(_ failure: ClientFailure) -> ExitCode {
        Output.error(failure.description)
        return ExitCode(failure.status)
    }

    struct Empty: Encodable {}
}
