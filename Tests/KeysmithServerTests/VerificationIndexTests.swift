import Foundation
import KeysmithCore
import KeysmithTestSupport
import Logging
import Synchronization
import Testing

@testable import KeysmithDomain
@testable import KeysmithServer

/// The verification index and its change feed on a file database, with a second `Keysmith` on the same database
/// that plays another process (the offline `keysmith` commands, or another replica): its writes reach the index
/// only through the change log.
struct VerificationFixture {
    let clock: ManualClock
    let store: SQLStore
    let index: VerificationIndex
    let feed: ChangeFeed
    let verifier: KeyVerifier
    /// This server's domain layer: its writes are applied before they return.
    let keysmith: Keysmith
    /// Another process's: its writes are applied when the feed catches up.
    let elsewhere: Keysmith
    let organization: Organization
    let metrics: ServerMetrics
    private let statements: StatementCounter

    var statementCount: Int { self.statements.count.load(ordering: .relaxed) }

    static func run(_ engine: TestEngine, _ body: (VerificationFixture) async throws -> Void) async throws {
        try await withTestDatabase(engine) { url in
            let clock = ManualClock()
            let statements = StatementCounter()
            let counter = SQLStatementObserver { _, _ in statements.count.add(1, ordering: .relaxed) }
            let database = try await KeysmithDatabase.open(
                url,
                clock: clock.clock,
                logger: Logger(label: "test"),
                observer: counter
            )
            let metrics = ServerMetrics()
            let index = VerificationIndex()
            let feed = ChangeFeed(store: database.store, index: index, logger: Logger(label: "test"), metrics: metrics)
            let keysmith = Keysmith(database: database, applier: feed, clock: clock.clock)
            let elsewhere = Keysmith(database: database, clock: clock.clock)
            do {
                let organization = try await elsewhere.createOrganization(name: "Org")
                try await feed.load()
                try await body(
                    VerificationFixture(
                        clock: clock,
                        store: database.store,
                        index: index,
                        feed: feed,
                        verifier: KeyVerifier(index: index, hasher: database.hasher, clock: clock.clock, metrics: metrics),
                        keysmith: keysmith,
                        elsewhere: elsewhere,
                        organization: organization,
                        metrics: metrics,
                        statements: statements
                    )
                )
            } catch {
                try? await database.store.close()
                throw error
            }
            try await database.store.close()
        }
    }

    func code(_ key: String) -> VerificationCode { self.verifier.verify(key).code }

    /// A project with a member, made through `keysmith`.
    func projectWithMember(_ keysmith: Keysmith) async throws -> (Project, User) {
        let project = try await keysmith.createProject(organizationID: self.organization.id, name: "P", externalKeyID: nil, residency: nil)
        let user = try await keysmith.createUser(
            organizationID: self.organization.id,
            email: "\(UUID().uuidString.prefix(8))@example.com",
            name: nil,
            role: .reader
        )
        _ = try await keysmith.addProjectMember(organizationID: self.organization.id, projectID: project.id, user: .id(user.id), role: .member)
        return (project, user)
    }

    func userKey(_ keysmith: Keysmith, project: Project, user: User) async throws -> (key: APIKey, plaintext: String) {
        try await keysmith.createAPIKey(
            organizationID: self.organization.id,
            projectID: project.id,
            owner: .user(id: user.id),
            name: "k",
            scopes: [],
            expiresInSeconds: nil
        )
    }
}

/// Counts the statements a store runs.
final class StatementCounter: Sendable {
    let count = Atomic(0)
}

@Suite("Verification index and change feed")
struct VerificationIndexTests {
    @Test("Forged, revoked and good keys are all answered from memory: no database read per check", arguments: TestEngine.available)
    func checksNeverReadTheDatabase(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let (project, user) = try await fixture.projectWithMember(fixture.keysmith)
            let good = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            let revoked = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            try await fixture.keysmith.deleteAPIKey(organizationID: fixture.organization.id, projectID: project.id, keyID: revoked.key.id)

            let before = fixture.statementCount
            for _ in 0..<1_000 {
                #expect(fixture.code(KeySecret.generate(.project)) == .notFound)
            }
            #expect(fixture.code(good.plaintext) == .valid)
            #expect(fixture.code(revoked.plaintext) == .notFound)
            #expect(fixture.code("sk-proj-not-a-key") == .malformed)
            #expect(fixture.statementCount == before)
            // Nothing is remembered about forged keys either: the index holds exactly the issued secrets.
            #expect(fixture.index.counts.current == 1)
        }
    }

    @Test("Changes made by another process apply when the feed catches up", arguments: TestEngine.available)
    func changesFromElsewhere(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let organizationID = fixture.organization.id
            let (project, user) = try await fixture.projectWithMember(fixture.elsewhere)
            let created = try await fixture.userKey(fixture.elsewhere, project: project, user: user)
            #expect(fixture.code(created.plaintext) == .notFound)
            try await fixture.feed.catchUp()
            #expect(fixture.code(created.plaintext) == .valid)

            // The user leaves the project and comes back.
            try await fixture.elsewhere.removeProjectMember(organizationID: organizationID, projectID: project.id, userID: user.id)
            try await fixture.feed.catchUp()
            #expect(fixture.code(created.plaintext) == .ownerInactive)
            _ = try await fixture.elsewhere.addProjectMember(organizationID: organizationID, projectID: project.id, user: .id(user.id), role: .member)
            try await fixture.feed.catchUp()
            #expect(fixture.code(created.plaintext) == .valid)

            // A rotation with a grace period: both secrets verify until it ends.
            let rotated = try await fixture.elsewhere.rotateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                keyID: created.key.id,
                gracePeriodSeconds: 60
            )
            try await fixture.feed.catchUp()
            #expect(fixture.code(rotated.plaintext) == .valid)
            #expect(fixture.code(created.plaintext) == .valid)
            fixture.clock.advance(by: 60)
            #expect(fixture.code(created.plaintext) == .revoked)
            #expect(fixture.code(rotated.plaintext) == .valid)

            // Rotating again ends the previous secret at once; without a grace period, the current one too.
            let again = try await fixture.elsewhere.rotateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                keyID: created.key.id,
                gracePeriodSeconds: 0
            )
            try await fixture.feed.catchUp()
            #expect(fixture.code(rotated.plaintext) == .notFound)
            #expect(fixture.code(created.plaintext) == .notFound)
            #expect(fixture.code(again.plaintext) == .valid)

            _ = try await fixture.elsewhere.updateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                keyID: created.key.id,
                scopes: nil,
                expiresInSeconds: 5
            )
            try await fixture.feed.catchUp()
            fixture.clock.advance(by: 5)
            #expect(fixture.code(again.plaintext) == .expired)

            let account = try await fixture.elsewhere.createServiceAccount(
                organizationID: organizationID,
                projectID: project.id,
                name: "bot",
                withoutKey: false
            )
            let accountKey = try #require(account.key)
            try await fixture.feed.catchUp()
            #expect(fixture.code(accountKey.plaintext) == .valid)
            _ = try await fixture.elsewhere.archiveProject(organizationID: organizationID, projectID: project.id)
            try await fixture.feed.catchUp()
            #expect(fixture.code(accountKey.plaintext) == .projectArchived)
            try await fixture.elsewhere.deleteServiceAccount(organizationID: organizationID, projectID: project.id, accountID: account.account.id)
            try await fixture.feed.catchUp()
            #expect(fixture.code(accountKey.plaintext) == .notFound)
            #expect(String(decoding: fixture.metrics.exposition(), as: UTF8.self).contains("keysmith_change_log_entries_applied_total"))
        }
    }

    @Test("A write through this server is applied before it returns", arguments: TestEngine.available)
    func localWritesApplyAtOnce(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let (project, user) = try await fixture.projectWithMember(fixture.keysmith)
            let created = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            #expect(fixture.code(created.plaintext) == .valid)
            try await fixture.keysmith.deleteAPIKey(organizationID: fixture.organization.id, projectID: project.id, keyID: created.key.id)
            #expect(fixture.code(created.plaintext) == .notFound)
            // The admin keys are in the index too.
            _ = try await fixture.keysmith.createAdminKey(name: "keeper", organizationID: fixture.organization.id)
            let admin = try await fixture.keysmith.createAdminKey(name: "ops", organizationID: fixture.organization.id)
            #expect(fixture.index.adminKey(fixture.verifier.hasher.digest(admin.plaintext))?.id == admin.key.id)
            try await fixture.keysmith.deleteAdminKey(organizationID: fixture.organization.id, keyID: admin.key.id)
            #expect(fixture.index.adminKey(fixture.verifier.hasher.digest(admin.plaintext)) == nil)
        }
    }

    @Test("A change replaces only what it touches: other keys' entries stay; archiving flips one shared flag", arguments: TestEngine.available)
    func changesAreProportional(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let (project, user) = try await fixture.projectWithMember(fixture.keysmith)
            let first = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            let second = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            let firstEntry = try #require(fixture.verifier.verify(first.plaintext).key)
            let secondEntry = try #require(fixture.verifier.verify(second.plaintext).key)

            _ = try await fixture.keysmith.updateAPIKey(
                organizationID: fixture.organization.id,
                projectID: project.id,
                keyID: second.key.id,
                scopes: ["api.model.read"],
                expiresInSeconds: nil
            )
            #expect(fixture.verifier.verify(first.plaintext).key === firstEntry)
            #expect(fixture.verifier.verify(second.plaintext).key !== secondEntry)
            #expect(fixture.verifier.verify(second.plaintext).key?.scopes == ["api.model.read"])

            _ = try await fixture.keysmith.archiveProject(organizationID: fixture.organization.id, projectID: project.id)
            #expect(fixture.verifier.verify(first.plaintext).key === firstEntry)
            #expect(fixture.code(first.plaintext) == .projectArchived)
            #expect(fixture.code(second.plaintext) == .projectArchived)
            #expect(firstEntry.project === fixture.verifier.verify(second.plaintext).key?.project)
        }
    }

    @Test("A feed that fell behind a pruned change log loads everything again", arguments: TestEngine.available)
    func prunedLogReloads(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let (project, user) = try await fixture.projectWithMember(fixture.elsewhere)
            try await fixture.feed.catchUp()
            var keys: [String] = []
            for _ in 0..<3 {
                keys.append(try await fixture.userKey(fixture.elsewhere, project: project, user: user).plaintext)
            }
            fixture.clock.advance(by: 10)
            // Everything but the newest entry is gone before this server read it.
            #expect(try await fixture.store.pruneChanges(before: fixture.clock.now) > 0)
            try await fixture.feed.catchUp()
            for key in keys {
                #expect(fixture.code(key) == .valid)
            }
            #expect(String(decoding: fixture.metrics.exposition(), as: UTF8.self).contains("keysmith_change_feed_reloads_total 1"))
        }
    }

    @Test("With the database gone, checks keep answering from the last known state", arguments: TestEngine.available)
    func answersWithoutTheDatabase(engine: TestEngine) async throws {
        try await VerificationFixture.run(engine) { fixture in
            let (project, user) = try await fixture.projectWithMember(fixture.keysmith)
            let created = try await fixture.userKey(fixture.keysmith, project: project, user: user)
            try await fixture.store.close()
            #expect(fixture.code(created.plaintext) == .valid)
            #expect(fixture.code(KeySecret.generate(.project)) == .notFound)
            await #expect(throws: (any Error).self) { try await fixture.feed.catchUp() }
            #expect(fixture.code(created.plaintext) == .valid)
        }
    }
}
