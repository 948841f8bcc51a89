public import LabCore

/// A file given to `serendip validate`: a protocol, or a campaign (a top-level `campaign:` key),
/// read and composed once and then checked as what it is.
public enum SpecFile: Sendable {
    case protocolDefinition(ProtocolDefinition)
    case campaign(CampaignSpec)

    /// `drivers` check a protocol; a campaign names its own lab.
    public static func load(path: String, drivers: [String: DriverSpec] = [:]) throws -> SpecFile {
        let context = CompileContext(drivers: drivers)
        let source = context.open(path: path, text: try readUserFile(path))
        let root = source.root()
        if root?.mapping?.contains(where: { $0.key.scalar?.string == "campaign" }) == true {
            return .campaign(try CampaignSpec.compile(root, source: source))
        }
        return .protocolDefinition(try ProtocolParser.compile(root, source: source, context: context))
    }
}
