import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Logging
import PostgresNIO
import Synchronization
import Testing

@testable import KeysmithDomain
@testable import KeysmithServer

/// The store's reads that the change feed uses, with a switch that makes every one of them fail: the database gone
/// right after a write committed.
final class FaultySource: VerificationSource {
    let store: SQLStore
    let isFailing = Atomic(false)
    /// How many times the change log has been read.
    let changeReads = Atomic(0)
    /// While set, reads of the change log wait here until ``releaseReads()``.
    private let heldReads = Mutex<[CheckedContinuation<Void, Never>]?>(nil)

    init(_ store: SQLStore) {
        self.store = store
    }

    struct Outage: Error {}

    private func check() throws {
        if self.isFailing.load(ordering: .relaxed) { throw Outage() }
    }

    func latestChangePosition() async throws -> ChangePosition {
        try self.check()
        return try await self.store.latestChangePosition()
    }
    func changes(after position: ChangePosition, limit: Int) async throws -> ChangeBatch {
        try self.check()
        self.changeReads.add(1, ordering: .relaxed)
        await withCheckedContinuation { continuation in
            let held = self.heldReads.withLock { held -> Bool in
                guard held != nil else { return false }
                held?.append(continuation)
                return true
            }
            if !held { continuation.resume() }
        }
        return try await self.store.changes(after: position, limit: limit)
    }

    func holdReads() {
        self.heldReads.withLock { $0 = [] }
    }

    var readsHeld: Int { self.heldReads.withLock { $0?.count ?? 0 } }

    func releaseReads() {
        let held = self.heldReads.withLock { held in
            defer { held = nil }
            return held ?? []
        }
        for continuation in held { continuation.resume() }
    }
    func keyVerificationStates(after keyID: APIKeyID?, limit: Int) async throws -> [KeyVerificationState] {
        try self.check()
        return try await self.store.keyVerificationStates(after: keyID, limit: limit)
    }
    func keyVerificationStates(keyIDs: [APIKeyID]) async throws -> [KeyVerificationState] {
        try self.check()
        return try await self.store.keyVerificationStates(keyIDs: keyIDs)
    }
    func revokedSecretHashes(keyIDs: [APIKeyID]) async throws -> [APIKeyID: [String]] {
        try self.check()
        return try await self.store.revokedSecretHashes(keyIDs: keyIDs)
    }
    func isProjectArchived(projectID: ProjectID) async throws -> Bool? {
        try self.check()
        return try await self.store.isProjectArchived(projectID: projectID)
    }
    func isProjectMember(projectID: ProjectID, userID: UserID) async throws -> Bool {
        try self.check()
        return try await self.store.isProjectMember(projectID: projectID, userID: userID)
    }
    func modelPermissions(projectID: ProjectID) async throws -> ModelPermissions? {
        try self.check()
        return try await self.store.modelPermissions(projectID: projectID)
    }
    func everyProjectsModelPermissions() async throws -> [ProjectID: ModelPermissions] {
        try self.check()
        return try await self.store.everyProjectsModelPermissions()
    }
    func rateLimitSettings(projectID: ProjectID) async throws -> [String: RateLimitSettings] {
        try self.check()
        return try await self.store.rateLimitSettings(projectID: projectID)
    }
    func everyProjectsRateLimitSettings() async throws -> [ProjectID: [String: RateLimitSettings]] {
        try self.check()
        return try await self.store.everyProjectsRateLimitSettings()
    }
    func adminKeyCredentials() async throws -> [AdminKeyCredential] {
        try self.check()
        return try await self.store.adminKeyCredentials()
    }
    func adminKeyCredential(id: AdminKeyID) async throws -> AdminKeyCredential? {
        try self.check()
        return try await self.store.adminKeyCredential(id: id)
    }
    var pushesChanges: Bool { self.store.pushesChanges }
    func listenForChanges(
        onListening: @escaping @Sendable () async -> Void,
        onNotification: @escaping @Sendable () async -> Void
    ) async throws {
        try await self.store.listenForChanges(onListening: onListening, onNotification: onNotification)
    }
}

/// A Keysmith whose change feed reads through a ``FaultySource``, on a fresh database of `engine`, loaded.
struct FaultyFeedFixture {
    let database: KeysmithDatabase
    let source: FaultySource
    let index: VerificationIndex
    let feed: ChangeFeed
    let keysmith: Keysmith
    let verifier: KeyVerifier

    static func run(_ engine: TestEngine, _ body: (FaultyFeedFixture) async throws -> Void) async throws {
        try await withTestDatabase(engine) { url in
            let database = try await KeysmithDatabase.open(url, logger: Harness.quietLogger)
            let clock = ManualClock()
            let source = FaultySource(database.store)
            let index = VerificationIndex()
            let feed = ChangeFeed(store: source, index: index, logger: Harness.quietLogger, metrics: nil)
            let fixture = FaultyFeedFixture(
                database: database,
                source: source,
                index: index,
                feed: feed,
                keysmith: Keysmith(database: database, applier: feed, clock: clock.clock),
                verifier: KeyVerifier(index: index, hasher: database.hasher, clock: clock.clock, metrics: nil)
            )
            do {
                try await feed.load()
                try await body(fixture)
            } catch {
                source.releaseReads()
                try? await database.close()
                throw error
            }
            try await database.close()
        }
    }
}

@Suite("Writes that fail fast and never acknowledge what is not applied")
struct WriteFaultTests {
    @Test(
        "Writes that wait while a catch-up runs share the next one: one more read of the log for ten, each applied before it returns",
        arguments: TestEngine.available
    )
    func concurrentWritesShareCatchUps(engine: TestEngine) async throws {
        try await FaultyFeedFixture.run(engine) { fixture in
            let (source, feed, keysmith, verifier) = (fixture.source, fixture.feed, fixture.keysmith, fixture.verifier)
            let bootstrap = try #require(try await keysmith.bootstrapIfEmpty(adminKeyName: "first"))
            let organizationID = bootstrap.organization.id
            let project = try await keysmith.createProject(organizationID: organizationID, name: "p", externalKeyID: nil, residency: nil)
            let writesBefore = feed.committedWrites
            let readsBefore = source.changeReads.load(ordering: .relaxed)
            // The first write's catch-up waits in its read of the log while the nine others commit behind it.
            source.holdReads()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for number in 0..<10 {
                    group.addTask {
                        let created = try await keysmith.createServiceAccount(
                            organizationID: organizationID,
                            projectID: project.id,
                            name: "account \(number)",
                            withoutKey: false
                        )
                        // Applied before the write returned, shared catch-up or not.
                        #expect(verifier.verify(try #require(created.key).plaintext).code == .valid)
                    }
                }
                let deadline = ContinuousClock.now + .seconds(20)
                while feed.committedWrites < writesBefore + 10 || source.readsHeld < 1 {
                    #expect(ContinuousClock.now < deadline, "the writes never all committed")
                    if ContinuousClock.now >= deadline { break }
                    try await Task.sleep(for: .milliseconds(5))
                }
                source.releaseReads()
                try await group.waitForAll()
            }
            // The held catch-up, and one more for every write that waited: not one read per write.
            #expect(source.changeReads.load(ordering: .relaxed) - readsBefore == 2)
        }
    }

    @Test(
        "A revocation committed while the change log cannot be read takes effect at once; what it granted follows when it can",
        arguments: TestEngine.available
    )
    func revocationsHoldWhenTheFeedFails(engine: TestEngine) async throws {
        try await FaultyFeedFixture.run(engine) { fixture in
            let (database, source, index, feed, keysmith, verifier) = (
                fixture.database, fixture.source, fixture.index, fixture.feed, fixture.keysmith, fixture.verifier
            )
            func code(_ key: String) -> VerificationCode { verifier.verify(key).code }
            let bootstrap = try #require(try await keysmith.bootstrapIfEmpty(adminKeyName: "first"))
            let organizationID = bootstrap.organization.id
            let admin = try await keysmith.createAdminKey(name: "second", organizationID: organizationID)
            let project = try await keysmith.createProject(organizationID: organizationID, name: "p", externalKeyID: nil, residency: nil)
            let archived = try await keysmith.createProject(organizationID: organizationID, name: "q", externalKeyID: nil, residency: nil)
            func account(_ projectID: ProjectID, _ name: String) async throws -> (id: ServiceAccountID, keyID: APIKeyID, value: String) {
                let created = try await keysmith.createServiceAccount(
                    organizationID: organizationID,
                    projectID: projectID,
                    name: name,
                    withoutKey: false
                )
                let key = try #require(created.key)
                return (created.account.id, key.key.id, key.plaintext)
            }
            let deleted = try await account(project.id, "deleted")
            let rotated = try await account(project.id, "rotated")
            let narrowed = try await account(project.id, "narrowed")
            let inArchived = try await account(archived.id, "archived")
            let user = try await keysmith.createUser(organizationID: organizationID, email: "m@example.com", name: nil, role: .reader)
            _ = try await keysmith.addProjectMember(organizationID: organizationID, projectID: project.id, user: .id(user.id), role: .member)
            let member = try await keysmith.createAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                owner: .user(id: user.id),
                name: "member",
                scopes: [],
                expiresInSeconds: nil
            )
            for key in [deleted.value, rotated.value, narrowed.value, inArchived.value, member.plaintext] {
                #expect(code(key) == .valid)
            }
            #expect(index.adminKey(database.hasher.digest(admin.plaintext)) != nil)

            // The database answers the writes, but not the feed's reads after them.
            source.isFailing.store(true, ordering: .relaxed)
            try await keysmith.deleteServiceAccount(organizationID: organizationID, projectID: project.id, accountID: deleted.id)
            let rotation = try await keysmith.rotateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                keyID: rotated.keyID,
                gracePeriodSeconds: 0
            )
            _ = try await keysmith.updateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                keyID: narrowed.keyID,
                scopes: ["api.model.read"],
                expiresInSeconds: nil
            )
            try await keysmith.removeProjectMember(organizationID: organizationID, projectID: project.id, userID: user.id)
            _ = try await keysmith.archiveProject(organizationID: organizationID, projectID: archived.id)
            try await keysmith.deleteAdminKey(organizationID: organizationID, keyID: admin.key.id)
            let granted = try await account(project.id, "granted")

            // Each was acknowledged; what each revoked is refused here at once, and nothing it granted is let
            // through before the feed can read it.
            for key in [deleted.value, rotated.value, rotation.plaintext, narrowed.value, inArchived.value, member.plaintext, granted.value] {
                #expect(code(key) != .valid)
            }
            #expect(index.adminKey(database.hasher.digest(admin.plaintext)) == nil)
            // What the writes did not touch is as it was.
            #expect(index.adminKey(database.hasher.digest(try #require(bootstrap.adminKey))) != nil)

            // Once the log can be read, every suspended change is applied as it is.
            source.isFailing.store(false, ordering: .relaxed)
            try await feed.catchUp()
            #expect(code(deleted.value) == .notFound)
            #expect(code(rotated.value) == .notFound)
            #expect(code(rotation.plaintext) == .valid)
            #expect(code(narrowed.value) == .valid)
            #expect(verifier.verify(narrowed.value).key?.scopes == ["api.model.read"])
            #expect(code(inArchived.value) == .projectArchived)
            #expect(code(member.plaintext) == .ownerInactive)
            #expect(code(granted.value) == .valid)
            #expect(index.adminKey(database.hasher.digest(admin.plaintext)) == nil)
        }
    }

    @Test("PostgreSQL: a write kept from a row lock it needs for 15 s answers 503 with Retry-After, and changes nothing")
    func lockedOut() async throws {
        guard TestEngine.available.contains(.postgres) else { return }
        let capture = LogCapture()
        try await Harness.run(.postgres, logger: capture.logger(level: .warning)) { app in
            let projectID = try await app.project()
            // Another session holds the project's row in its open transaction, as a replica stopped in the middle
            // of its transaction would: the write is refused after the lock timeout, and the lock let go.
            try await withTestConnection(app.databaseURL) { connection in
                try await connection.query("BEGIN", logger: Harness.quietLogger)
                try await connection.query("SELECT 1 FROM projects WHERE id = \(projectID) FOR UPDATE", logger: Harness.quietLogger)
                let started = ContinuousClock.now
                let refused = try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"waits"}"#)
                let waited = ContinuousClock.now - started
                refused.expectError(.serviceUnavailable, code: "database_busy")
                #expect(refused.headers[.retryAfter] == "1")
                #expect(waited >= .seconds(14) && waited < .seconds(25), "waited \(waited)")
                try await connection.query("ROLLBACK", logger: Harness.quietLogger)
            }
            let accounts = try await app.get("/projects/\(projectID)/service_accounts")
            #expect(accounts.data.isEmpty)
            #expect(try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"now"}"#).status == .ok)
            // Logged as what it is, a busy database, not a bug, with the request's id.
            let busy = capture.captured.filter { $0.message == "Database busy" }
            #expect(busy.count == 1 && busy.allSatisfy { $0.metadata["hb.request.id"] != nil }, "\(capture.captured.map(\.message))")
        }
    }

    @Test(
        "PostgreSQL: writers take no turn at the change log: while another transaction that wrote stays open, writes go through, and each is checked as written at once"
    )
    func noTurnAtTheLog() async throws {
        guard TestEngine.available.contains(.postgres) else { return }
        try await Harness.run(.postgres) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "held@example.com")
            try await withTestConnection(app.databaseURL) { connection in
                // A transaction that has written (it holds a transaction id) and stops: until it ends, the log can be
                // read only up to it, and (before this design) every write waited for it at the log's turn.
                try await connection.query("BEGIN", logger: Harness.quietLogger)
                try await connection.query("SELECT pg_current_xact_id()", logger: Harness.quietLogger)
                let started = ContinuousClock.now
                let key = try await app.userKey(projectID: projectID, userID: userID)
                #expect(try await app.check(key.value).status == .ok)
                let account = try await app.serviceAccount(projectID: projectID)
                #expect(try await app.check(account.value).status == .ok)
                #expect(try await app.delete("/projects/\(projectID)/api_keys/\(key.id)").status == .ok)
                #expect(try await app.check(key.value).status == .unauthorized)
                let took = ContinuousClock.now - started
                #expect(took < .seconds(5), "the writes took \(took)")
                try await connection.query("ROLLBACK", logger: Harness.quietLogger)
            }
        }
    }
}
