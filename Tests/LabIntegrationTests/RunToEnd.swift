import Foundation

/// Runs a program to its end, synchronously: its exit status and what it printed on standard output
/// (standard error too, when `withStandardError`; otherwise it is dropped).
func runToEnd(_ executable: String, _ arguments: [String], withStandardError: Bool = false) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = withStandardError ? pipe : FileHandle.nullDevice
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
