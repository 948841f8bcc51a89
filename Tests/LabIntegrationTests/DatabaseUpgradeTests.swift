import Foundation
import GRDB
import LabCore
import LabStorage
import Testing

/// A database made by an older build opens with a newer one and works: its migrations bring it up
/// to date without losing what it holds.
@Suite struct DatabaseUpgradeTests {
    /// Databases made on 2026-11-30 by a v4 migration without `budget` could start no campaign.
    @Test func aDatabaseWhoseV4LackedTheBudgetGetsItAndCanStartACampaign() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("serendip.sqlite").path
        let source = SourceText(path: "c.yaml", text: "name: c", sha256: "0")
        // The old database: every migration but the last applied, the column missing, one campaign in it.
        do {
            let old = try LabDatabase(path: path)
            _ = try old.createDaemonCampaign(name: "before", spec: source, protocolSource: source, objective: nil,
                                              direction: nil, seed: 1, owner: "ana", needsApproval: false)
            try old.pool.write { db in
                try db.execute(sql: "ALTER TABLE campaign DROP COLUMN budget")
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier LIKE 'v13:%'")
            }
        }
        let upgraded = try LabDatabase(path: path)
        let id = try upgraded.createDaemonCampaign(name: "after", spec: source, protocolSource: source, objective: nil,
                                                   direction: nil, seed: 2, owner: "ana", needsApproval: false, budget: 12)
        #expect(try upgraded.daemonCampaign(id)?.budget == 12)
        #expect(try upgraded.daemonCampaigns().map(\.name) == ["before", "after"])
    }
}
