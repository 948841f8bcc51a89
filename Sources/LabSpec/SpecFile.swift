import Foundation
public import LabCore

/// A file given to `serendip validate`, recognised by its top-level keys, read and composed once
/// and then checked as what it is: a protocol, a campaign, a driver file or a lab config.
public enum SpecFile: Sendable {
    case protocolDefinition(ProtocolDefinition)
    case campaign(CampaignSpec)
    case driver(DriverSpec)
    case lab(LabConfig)

    /// What a person calls this kind of file.
    public var kind: String {
        switch self {
        case .protocolDefinition: "protocol"
        case .campaign: "campaign"
        case .driver: "driver file"
        case .lab: "lab config"
        }
    }

    static let protocolKeys: Set = ["serendip", "name", "description", "instruments", "parameters", "steps", "finally", "outputs"]

    /// `drivers` check a protocol: a lab's (`complete`), or those found near it, where a driver the
    /// protocol names but `drivers` lacks leaves that instrument's channels unchecked rather than wrong.
    /// A campaign names its own lab; driver files and lab configs stand alone.
    public static func load(path: String, drivers: [String: DriverSpec] = [:], complete: Bool = true) throws -> SpecFile {
        let context = CompileContext(drivers: drivers, complete: complete)
        let source = context.open(path: path, text: try readUserFile(path))
        let root = source.root()
        let keys = Set(root?.mapping?.compactMap { $0.key.scalar?.string } ?? [])
        // A campaign also has `serendip:` and `lab:`; a lab config also has `instruments:`.
        if keys.contains("campaign") { return .campaign(try CampaignSpec.compile(root, source: source)) }
        if keys.isDisjoint(with: ["serendip", "steps"]) {
            if keys.contains("driver") { return .driver(try DriverSpec.parse(source.text, path: path)) }
            if keys.contains("lab") { return .lab(try LabConfig.load(path: path)) }
            if root?.mapping != nil && keys.isDisjoint(with: protocolKeys) {
                source.error(root, "this is not a file Serendip knows",
                             hint: "a protocol starts with 'serendip: 1' and has 'steps:', a campaign has 'campaign:', "
                                 + "a driver file 'driver:', a lab config 'lab:'")
                throw ValidationError(source.diagnostics, source: source.text)
            }
        }
        return .protocolDefinition(try ProtocolParser.compile(root, source: source, context: context))
    }

    /// Driver files for a protocol checked without a lab: each driver it names, as `drivers/NAME.yaml`
    /// in the nearest folder above the protocol that has one, or in the current directory. `missing`
    /// names those not found (or that do not load), with why. `workingDirectory` is the current one by default.
    public static func nearbyDrivers(for path: String, workingDirectory: String? = nil)
        -> (found: [String: DriverSpec], missing: [String: String]) {
        guard let text = try? readUserFile(path), let root = YAMLSource(path: path, text: text).root(),
              let instruments = root.mapping?.first(where: { $0.key.scalar?.string == "instruments" })?.value.mapping
        else { return ([:], [:]) }
        var folders: [URL] = []
        var folder = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent()
        while true {
            folders.append(folder.appendingPathComponent("drivers"))
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        folders.append(URL(fileURLWithPath: workingDirectory ?? FileManager.default.currentDirectoryPath).appendingPathComponent("drivers"))
        var found: [String: DriverSpec] = [:], missing: [String: String] = [:]
        for name in Set(instruments.compactMap { $0.value.scalar?.string }) {
            guard let file = folders.map({ $0.appendingPathComponent("\(name).yaml").path })
                .first(where: FileManager.default.fileExists) else {
                missing[name] = "no drivers/\(name).yaml in the protocol's folder, a folder above it or the current one"
                continue
            }
            do {
                let spec = try DriverSpec.load(path: file)
                if spec.name == name { found[name] = spec } else { missing[name] = "\(file) describes '\(spec.name)'" }
            } catch {
                missing[name] = "\(file) does not load"
            }
        }
        return (found, missing)
    }
}
