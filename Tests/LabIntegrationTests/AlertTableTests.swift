import Foundation
import GRDB
import LabCore
import LabStorage
import Testing

/// Alerts on a real SQLite file: one latched alert per kind and subject, acknowledged only after
/// its condition has cleared, and only once.
@Suite struct AlertTableTests {
    @Test func raisingAnAlertThatIsStillLatchedReturnsItWithTheNewRunAdded() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let first = try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "reactor.temperature read 141 degC, above 140 degC",
                                                  run: 7, instrument: "reactor")
        let again = try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "read 150 degC", run: 8)
        let repeated = try await database.raiseAlert(.interlock, subject: "reactor-hot", message: "read 150 degC", run: 7)
        #expect(again.id == first.id && repeated.id == first.id)
        #expect(repeated.runIDs == [7, 8])
        #expect(repeated.message == "reactor.temperature read 141 degC, above 140 degC")
        #expect(repeated.instrument == "reactor")
        let other = try await database.raiseAlert(.instrumentLost, subject: "reactor", message: "no reply")
        #expect(other.id != first.id && other.runIDs.isEmpty && other.instrument == nil)
        // A later raise may name the instrument the first one could not.
        #expect(try await database.raiseAlert(.instrumentLost, subject: "reactor", message: "no reply", instrument: "reactor").instrument == "reactor")
        #expect(try await database.alerts().map(\.id) == [other.id, first.id])
    }

    @Test func anAlertCannotBeAcknowledgedWhileItsConditionHolds() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let alert = try await database.raiseAlert(.interlock, subject: "sash", message: "hood.sash_closed read false", run: 3)
        let refusal = await #expect(throws: LabError.self) { try await database.acknowledgeAlert(alert.id, by: "alice") }
        #expect(refusal?.code == .conflict)
        #expect(refusal?.message.contains("cannot be acknowledged while its condition still holds: hood.sash_closed read false") == true)
        #expect(try await database.alert(alert.id)?.isLatched == true)
    }

    @Test func aClearedAlertIsAcknowledgedOnceWithWhoAndWhen() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let alert = try await database.raiseAlert(.interlock, subject: "sash", message: "hood.sash_closed read false")
        let cleared = try #require(try await database.markAlertCleared(.interlock, subject: "sash"))
        #expect(cleared.id == alert.id && cleared.isCleared && cleared.isLatched)
        let acknowledged = try await database.acknowledgeAlert(alert.id, by: "alice")
        #expect(acknowledged.acknowledgedBy == "alice" && acknowledged.acknowledgedAt != nil && !acknowledged.isLatched)
        let second = await #expect(throws: LabError.self) { try await database.acknowledgeAlert(alert.id, by: "bob") }
        #expect(second?.code == .conflict)
        #expect(second?.message.hasPrefix("alert \(alert.id) was already acknowledged by alice at ") == true)
        #expect(try await database.alerts(latchedOnly: true).isEmpty)
        #expect(try await database.alerts(latchedOnly: false).map(\.id) == [alert.id])
        // A new trip after the acknowledgement is a new alert.
        let next = try await database.raiseAlert(.interlock, subject: "sash", message: "hood.sash_closed read false")
        #expect(next.id != alert.id)
    }

    @Test func aConditionThatReturnsBeforeTheAcknowledgementHoldsTheAlertAgain() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        let alert = try await database.raiseAlert(.interlock, subject: "sash", message: "hood.sash_closed read false")
        try await database.markAlertCleared(.interlock, subject: "sash")
        let again = try await database.raiseAlert(.interlock, subject: "sash", message: "hood.sash_closed read false")
        #expect(again.id == alert.id && !again.isCleared)
        await #expect(throws: LabError.self) { try await database.acknowledgeAlert(alert.id, by: "alice") }
    }

    @Test func clearingWhenNothingIsLatchedOrAcknowledgingAnUnknownAlertChangesNothing() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        #expect(try await database.markAlertCleared(.watchdog, subject: "reactor") == nil)
        let missing = await #expect(throws: LabError.self) { try await database.acknowledgeAlert(42, by: "alice") }
        #expect(missing?.code == .notFound)
    }

    @Test func alertsSurviveReopeningTheDatabase() async throws {
        let path = Repository.temporaryDatabase()
        let id: Int64
        do {
            let database = try LabDatabase(path: path)
            id = try await database.raiseAlert(.readBack, subject: "reactor", message: "wrote 60, device holds 0", run: 5,
                                               instrument: "reactor").id
            try await database.markAlertCleared(.readBack, subject: "reactor")
        }
        let reopened = try LabDatabase(path: path)
        let alert = try #require(try await reopened.alert(id))
        #expect(alert.kind == .readBack && alert.subject == "reactor" && alert.runIDs == [5] && alert.isCleared && alert.isLatched)
        #expect(try await reopened.acknowledgeAlert(id, by: "carol").acknowledgedBy == "carol")
    }

    @Test func sqliteItselfRefusesASecondLatchedAlertOfOneKindAndSubject() async throws {
        let database = try LabDatabase(path: Repository.temporaryDatabase())
        try await database.raiseAlert(.interlock, subject: "sash", message: "m")
        #expect(throws: DatabaseError.self) {
            try database.pool.write { db in
                try db.execute(sql: "INSERT INTO alert (kind, subject, message, raised_at) VALUES ('interlock', 'sash', 'm', 'now')")
            }
        }
    }
}
