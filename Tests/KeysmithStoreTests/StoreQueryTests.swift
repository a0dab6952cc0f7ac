import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

/// Every query of a type of its own (``StoreQuery``) run on each engine, its rows decoded and compared with what
/// was written: the SQL, its bindings and its decoding live in one type, and this proves that they agree, on
/// SQLite's text and on PostgreSQL's prepared statement alike. A query added as a type is added here (the change
/// log's read, ChangeLogRead, is run by ChangeLogTests and ConcurrencyTests).
@Suite("Store: queries as types")
struct StoreQueryTests {
    @Test("Each StoreQuery runs and decodes on each engine, the same way", arguments: TestEngine.available)
    func everyQueryDecodes(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let engine = fixture.store.engine
            let organizationID = fixture.organizationID

            // Writes: a key, its audit event, its change log entry, in one transaction.
            let key = fixture.newKey(projectID: project.id, owner: .user(id: member.id), expiresAt: fixture.clock.now + 60)
            let position = try await engine.write { database -> ChangePosition? in
                _ = try await database.rows(SQLStore.InsertAPIKey(key: key, userID: member.id, serviceAccountID: nil))
                _ = try await database.rows(
                    SQLStore.InsertAuditEvent(
                        id: IDGenerator.shared.makeText(.auditLog),
                        organizationID: organizationID,
                        event: SQLStore.keyCreatedEvent(key),
                        time: fixture.clock.now,
                        actorID: "key-actor",
                        actorJSON: #"{"type":"api_key"}"#
                    )
                )
                return try await database.rows(RecordChange(change: .apiKey(id: key.id), time: fixture.clock.now)).first
            }
            let recorded = try #require(position)
            #expect(recorded > .start)
            let audit = try await fixture.store.listAuditLogs(
                organizationID: organizationID,
                filter: AuditLogFilter(),
                limit: 1,
                after: nil,
                before: nil
            )
            #expect(audit.items.first?.type == .apiKeyCreated && audit.items.first?.projectName == project.name)

            // Reads, in transactions as the writes use them (their row locks need one on PostgreSQL).
            let (shared, membership) = try await engine.write { database in
                (
                    try await database.rows(SQLStore.SharedProject(id: project.id, organizationID: organizationID)),
                    try await database.rows(
                        SQLStore.SharedMembership(projectID: project.id, organizationID: organizationID, userID: member.id)
                    )
                )
            }
            #expect(shared == [project])
            #expect(membership.map(\.user) == [member] && membership.map(\.role) == [.member])

            let second = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            let first = try await engine.unsafeRead { database in
                try await database.rows(
                    SQLStore.APIKeyFirstPage(projectID: project.id, organizationID: organizationID, access: .any, limit: 10)
                )
            }
            #expect(first.map(\.id) == [key.id, second.id])
            let written = try #require(first.first)
            #expect(written.name == key.name && written.redactedValue == key.secret.redactedValue)
            #expect(written.createdAt == key.createdAt && written.expiresAt == key.expiresAt && written.lastUsedAt == nil)
            #expect(written.owner == .user(member, role: .member))
            let after = try await engine.unsafeRead { database in
                try await database.rows(
                    SQLStore.APIKeyPageAfter(
                        projectID: project.id,
                        organizationID: organizationID,
                        access: .active,
                        after: key.id.rawValue,
                        limit: 10
                    )
                )
            }
            #expect(after == [second])
            let inactive = try await engine.unsafeRead { database in
                try await database.rows(
                    SQLStore.APIKeyFirstPage(projectID: project.id, organizationID: organizationID, access: .inactive, limit: 10)
                )
            }
            #expect(inactive.isEmpty)
        }
    }
}
