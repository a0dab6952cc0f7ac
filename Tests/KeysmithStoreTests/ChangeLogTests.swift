import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Store: the change log")
struct ChangeLogTests {
    /// The changes recorded since `position`, all of them: read until the log can be read past its newest entry
    /// (on PostgreSQL, other tests' transactions in progress on the same server can hold the horizon back for a
    /// moment); `position` becomes where the reader is.
    static func changes(_ fixture: StoreFixture, since position: inout ChangePosition) async throws -> [KeysmithChange] {
        let end = try await fixture.changeLogEnd()
        var changes: [KeysmithChange] = []
        while true {
            let batch = try await fixture.store.changes(after: position, limit: 1_000)
            #expect(!batch.missedPrunedEntries)
            changes += batch.records.map(\.change)
            position = batch.position
            if position >= end { return changes }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("Every write that affects verification records exactly what it changed; other writes record nothing", arguments: TestEngine.available)
    func writesRecordChanges(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            var sequence = try await fixture.caughtUp()
            let (project, member) = try await fixture.projectWithMember()
            #expect(try await Self.changes(fixture, since: &sequence) == [.membership(projectID: project.id, userID: member.id)])

            let key = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            #expect(try await Self.changes(fixture, since: &sequence) == [.apiKey(id: key.id)])

            _ = try await fixture.store.updateAPIKey(
                organizationID: fixture.organizationID,
                projectID: project.id,
                id: key.id,
                scopes: ["api.model.read"],
                expiresAt: nil,
                now: fixture.clock.now
            )
            _ = try await fixture.store.rotateAPIKey(
                organizationID: fixture.organizationID,
                projectID: project.id,
                id: key.id,
                secret: NewKeySecret(hash: String(repeating: "ab", count: 32), redactedValue: "sk-proj-***"),
                graceEndsAt: nil,
                now: fixture.clock.now
            )
            #expect(try await Self.changes(fixture, since: &sequence) == [.apiKey(id: key.id), .apiKey(id: key.id)])

            // A role change and a rename change nothing verification knows.
            _ = try await fixture.store.updateProjectMember(
                organizationID: fixture.organizationID,
                projectID: project.id,
                userID: member.id,
                role: .owner
            )
            _ = try await fixture.store.updateProject(organizationID: fixture.organizationID, id: project.id, name: "renamed", externalKeyID: nil)
            #expect(try await Self.changes(fixture, since: &sequence) == [])

            try await fixture.store.removeProjectMember(organizationID: fixture.organizationID, projectID: project.id, userID: member.id)
            #expect(try await Self.changes(fixture, since: &sequence) == [.membership(projectID: project.id, userID: member.id)])

            let account = fixture.newServiceAccount(projectID: project.id)
            let first = fixture.newKey(projectID: project.id, owner: .serviceAccount(id: account.id))
            try await fixture.store.createServiceAccount(account, key: first)
            let second = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .serviceAccount(id: account.id)))
            #expect(try await Self.changes(fixture, since: &sequence) == [.apiKey(id: first.id), .apiKey(id: second.id)])
            try await fixture.store.deleteServiceAccount(organizationID: fixture.organizationID, projectID: project.id, id: account.id)
            #expect(Set(try await Self.changes(fixture, since: &sequence)) == [.apiKey(id: first.id), .apiKey(id: second.id)])

            try await fixture.store.deleteAPIKey(organizationID: fixture.organizationID, projectID: project.id, id: key.id)
            #expect(try await Self.changes(fixture, since: &sequence) == [.apiKey(id: key.id)])

            _ = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: project.id, at: fixture.clock.now)
            _ = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: project.id, at: fixture.clock.now)
            #expect(try await Self.changes(fixture, since: &sequence) == [.project(id: project.id)])

            let adminKey = AdminKey(
                id: fixture.ids.make(.apiKey),
                organizationID: fixture.organizationID,
                name: "a",
                redactedValue: "r",
                createdAt: 1
            )
            let otherAdminKey = AdminKey(
                id: fixture.ids.make(.apiKey),
                organizationID: fixture.organizationID,
                name: "b",
                redactedValue: "r",
                createdAt: 1
            )
            try await fixture.store.createAdminKey(adminKey, secretHash: String(repeating: "cd", count: 32))
            try await fixture.store.createAdminKey(otherAdminKey, secretHash: String(repeating: "ce", count: 32))
            try await fixture.store.deleteAdminKey(organizationID: fixture.organizationID, id: adminKey.id)
            #expect(
                try await Self.changes(fixture, since: &sequence) == [
                    .adminKey(id: adminKey.id), .adminKey(id: otherAdminKey.id), .adminKey(id: adminKey.id),
                ]
            )
            // The organization's last admin key stays; a refused write records nothing.
            await expectRefusal(.lastAdminKey(keyID: otherAdminKey.id)) {
                try await fixture.store.deleteAdminKey(organizationID: fixture.organizationID, id: otherAdminKey.id)
            }
            #expect(try await Self.changes(fixture, since: &sequence) == [])
        }
    }

    @Test("A refused write records no change", arguments: TestEngine.available)
    func refusedWritesRecordNothing(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, _) = try await fixture.projectWithMember()
            let outsider = try await fixture.user("outsider@example.com")
            var sequence = try await fixture.caughtUp()
            await expectRefusal(.ownerNotProjectMember(userID: outsider.id, projectID: project.id)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: outsider.id)))
            }
            await expectRefusal(.notFound(.projectUser, id: outsider.id)) {
                try await fixture.store.removeProjectMember(organizationID: fixture.organizationID, projectID: project.id, userID: outsider.id)
            }
            #expect(try await Self.changes(fixture, since: &sequence) == [])
        }
    }

    @Test("Verification states page by key id and carry what a check needs", arguments: TestEngine.available)
    func verificationStates(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            var created: [NewAPIKey] = []
            for _ in 0..<7 {
                let key = fixture.newKey(projectID: project.id, owner: .user(id: member.id), expiresAt: fixture.clock.now + 100)
                _ = try await fixture.store.createAPIKey(key)
                created.append(key)
            }
            var states: [KeyVerificationState] = []
            var after: APIKeyID?
            while true {
                let page = try await fixture.store.keyVerificationStates(after: after, limit: 3)
                states += page
                guard page.count == 3 else { break }
                after = page.last?.keyID
            }
            #expect(states.map(\.keyID) == created.map(\.id).sorted())
            let first = try #require(states.first { $0.keyID == created[0].id })
            #expect(first.secretHash == created[0].secret.hash)
            #expect(first.organizationID == fixture.organizationID && first.projectID == project.id)
            #expect(first.ownerType == .user && first.ownerID == member.id.rawValue && first.ownerHasProjectAccess)
            #expect(first.expiresAt == fixture.clock.now + 100 && !first.isProjectArchived)
            #expect(first.previousSecretHash == nil && first.previousSecretExpiresAt == nil)

            _ = try await fixture.store.rotateAPIKey(
                organizationID: fixture.organizationID,
                projectID: project.id,
                id: created[0].id,
                secret: NewKeySecret(hash: String(repeating: "ef", count: 32), redactedValue: "sk-proj-***"),
                graceEndsAt: fixture.clock.now + 60,
                now: fixture.clock.now
            )
            let rotated = try #require(try await fixture.store.keyVerificationState(keyID: created[0].id))
            #expect(rotated.secretHash == String(repeating: "ef", count: 32))
            #expect(rotated.previousSecretHash == created[0].secret.hash)
            #expect(rotated.previousSecretExpiresAt == fixture.clock.now + 60)
            #expect(try await fixture.store.isProjectMember(projectID: project.id, userID: member.id))
            #expect(try await fixture.store.isProjectArchived(projectID: project.id) == false)
            #expect(try await fixture.store.isProjectArchived(projectID: "proj_missing") == nil)
        }
    }

    @Test(
        "Pruning deletes old entries, keeps the newest, and tells a reader behind what it deleted that it missed entries",
        arguments: TestEngine.available
    )
    func pruning(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let before = try await fixture.caughtUp()
            var read = before
            for _ in 0..<3 {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            }
            _ = try await Self.changes(fixture, since: &read)
            fixture.clock.advance(by: 10)
            let newest = try await fixture.changeLogEnd()
            // Four entries: the membership and the three keys; the newest stays.
            #expect(try await fixture.store.pruneChanges(before: fixture.clock.now) == 3)
            #expect(try await fixture.changeLogEnd() == newest)
            // A reader that had read everything missed nothing; one from before the writes missed what was deleted.
            #expect(try await fixture.store.changes(after: read, limit: 10).missedPrunedEntries == false)
            let behind = try await fixture.store.changes(after: before, limit: 10)
            #expect(behind.missedPrunedEntries)
            // A reader that loads everything again starts where it has missed nothing.
            let reloaded = try await fixture.store.latestChangePosition()
            #expect(try await fixture.store.changes(after: reloaded, limit: 10).missedPrunedEntries == false)
            // The log goes on after the newest entry, and a reader at the end sees what follows.
            let key = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            #expect(try await Self.changes(fixture, since: &read) == [.apiKey(id: key.id)])
            #expect(try await fixture.changeLogEnd() > newest)
            // Pruning that deletes nothing leaves the mark where it was.
            #expect(try await fixture.store.pruneChanges(before: 0) == 0)
            #expect(try await fixture.store.changes(after: before, limit: 10).missedPrunedEntries)
        }
    }
}

extension StoreFixture {
    /// Where a reader is once it has read every entry committed so far.
    func caughtUp() async throws -> ChangePosition {
        var position = ChangePosition.start
        _ = try await ChangeLogTests.changes(self, since: &position)
        return position
    }

    /// The position of the newest entry in the change log.
    func changeLogEnd() async throws -> ChangePosition {
        try await self.store.newestChangePosition()
    }
}
