import KeysmithCore
import KeysmithTestSupport
import Logging
import Synchronization
import Testing

@testable import KeysmithDomain

/// The check-then-act writes, raced for real: many writers at once on one database. SQLite runs its writes one at a
/// time; on PostgreSQL (READ COMMITTED, a pool of connections) the checks hold row locks, constraints catch what
/// slips past a check, and the results must be the same.
@Suite("Store: concurrent writers")
struct ConcurrencyTests {
    /// Runs `count` attempts at once; returns the errors of those that failed (nil for a success), in no order.
    static func race(_ count: Int, _ attempt: @escaping @Sendable (Int) async throws -> Void) async -> [KeysmithError?] {
        await withTaskGroup(of: KeysmithError?.self) { group in
            for index in 0..<count {
                group.addTask {
                    do {
                        try await attempt(index)
                        return nil
                    } catch let error as KeysmithError {
                        return error
                    } catch {
                        Issue.record("unexpected error \(error)")
                        return nil
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test("Twenty users with one email at once: one is added, the others are told the email is taken", arguments: TestEngine.available)
    func uniqueEmail(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let results = await Self.race(20) { index in
                try await fixture.store.createUser(
                    User(
                        id: fixture.ids.make(.user),
                        organizationID: fixture.organizationID,
                        email: index % 2 == 0 ? "race@example.com" : "RACE@example.com",
                        name: nil,
                        role: .reader,
                        addedAt: 1
                    )
                )
            }
            #expect(results.filter { $0 == nil }.count == 1)
            #expect(results.compactMap { $0 }.allSatisfy { if case .emailTaken = $0 { true } else { false } })
            let users = try await fixture.store.listUsers(organizationID: fixture.organizationID, emails: ["race@example.com"], page: PageRequest())
            #expect(users.items.count == 1)
        }
    }

    @Test("Ten owners each demoted or deleted at once: one owner is always left", arguments: TestEngine.available)
    func lastOwner(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            var made: [User] = []
            for index in 0..<10 {
                let user = try await fixture.user("owner\(index)@example.com")
                made.append(try await fixture.store.updateUser(organizationID: fixture.organizationID, id: user.id, role: .owner))
            }
            let owners = made
            let results = await Self.race(10) { index in
                if index % 2 == 0 {
                    try await fixture.store.deleteUser(organizationID: fixture.organizationID, id: owners[index].id)
                } else {
                    _ = try await fixture.store.updateUser(organizationID: fixture.organizationID, id: owners[index].id, role: .reader)
                }
            }
            #expect(results.filter { $0 == nil }.count == 9)
            #expect(results.compactMap { $0 }.allSatisfy { if case .lastOwner = $0 { true } else { false } })
            let users = try await fixture.store.listUsers(organizationID: fixture.organizationID, emails: [], page: PageRequest(limit: 100))
            #expect(users.items.filter { $0.role == .owner }.count == 1)
        }
    }

    @Test("Twenty invites for one email at once: one is sent, the others are told one is pending", arguments: TestEngine.available)
    func uniqueInvite(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let results = await Self.race(20) { index in
                let invite = Invite(
                    id: fixture.ids.make(.invite),
                    organizationID: fixture.organizationID,
                    email: index % 2 == 0 ? "invited@example.com" : "INVITED@example.com",
                    role: .reader,
                    projects: [],
                    createdAt: 1,
                    expiresAt: 1_000
                )
                _ = try await fixture.store.createInvite(invite, joinDefaultProject: false)
            }
            #expect(results.filter { $0 == nil }.count == 1)
            #expect(results.compactMap { $0 }.allSatisfy { if case .inviteExists = $0 { true } else { false } })
            let invites = try await fixture.store.listInvites(organizationID: fixture.organizationID, page: PageRequest())
            #expect(invites.items.count == 1)
        }
    }

    @Test("One user added to a project twenty times at once: one membership, the others already a member", arguments: TestEngine.available)
    func uniqueMembership(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let project = try await fixture.project()
            let user = try await fixture.user("member@example.com")
            let results = await Self.race(20) { _ in
                _ = try await fixture.store.addProjectMember(
                    organizationID: fixture.organizationID,
                    projectID: project.id,
                    userID: user.id,
                    role: .member,
                    at: 1
                )
            }
            #expect(results.filter { $0 == nil }.count == 1)
            #expect(results.compactMap { $0 }.allSatisfy { $0 == .alreadyProjectMember(userID: user.id, projectID: project.id) })
        }
    }

    @Test("The organization's last two admin keys deleted at once: one goes, the last stays", arguments: TestEngine.available)
    func lastAdminKey(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            for round in 0..<5 {
                // A new organization each round, with exactly two admin keys.
                let organization = Organization(id: fixture.ids.make(.organization), name: "Round \(round)", createdAt: 1)
                try await fixture.store.createOrganization(organization)
                let keys = (0..<2).map { index in
                    AdminKey(id: fixture.ids.make(.apiKey), organizationID: organization.id, name: "k\(index)", redactedValue: "r", createdAt: 1)
                }
                for (index, key) in keys.enumerated() {
                    try await fixture.store.createAdminKey(key, secretHash: String(repeating: "\(round)\(index)", count: 32))
                }
                let results = await Self.race(2) { index in
                    try await fixture.store.deleteAdminKey(organizationID: organization.id, id: keys[index].id)
                }
                #expect(results.filter { $0 == nil }.count == 1, "round \(round): \(results)")
                #expect(results.compactMap { $0 }.allSatisfy { if case .lastAdminKey = $0 { true } else { false } })
                let left = try await fixture.store.adminKeyCredentials().filter { $0.key.organizationID == organization.id }
                #expect(left.count == 1)
            }
        }
    }

    @Test("Keys created while their project is archived: each succeeds before the archive or is refused after it", arguments: TestEngine.available)
    func archiveDuringCreation(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let results = await Self.race(41) { index in
                if index == 20 {
                    _ = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: project.id, at: 1)
                } else {
                    _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
                }
            }
            let refused = results.compactMap { $0 }
            #expect(refused.allSatisfy { $0 == .projectArchived(projectID: project.id) })
            let stored = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .any,
                page: PageRequest(limit: 100)
            )
            #expect(stored.items.count == results.count - 1 - refused.count)
            // Once archived, nothing more gets in.
            await expectRefusal(.projectArchived(projectID: project.id)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            }
        }
    }

    @Test("Keys created for a service account while it is deleted: none outlives it", arguments: TestEngine.available)
    func serviceAccountDeletedDuringCreation(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let project = try await fixture.project()
            let account = fixture.newServiceAccount(projectID: project.id)
            try await fixture.store.createServiceAccount(account, key: nil)
            let results = await Self.race(31) { index in
                if index == 15 {
                    try await fixture.store.deleteServiceAccount(organizationID: fixture.organizationID, projectID: project.id, id: account.id)
                } else {
                    _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .serviceAccount(id: account.id)))
                }
            }
            #expect(results.compactMap { $0 }.allSatisfy { $0 == .notFound(.serviceAccount, id: account.id) })
            let keys = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .any,
                page: PageRequest(limit: 100)
            )
            #expect(keys.items.isEmpty)
        }
    }

    @Test(
        "A member removed while keys are created for them: every key made is the member's, made before the removal",
        arguments: TestEngine.available
    )
    func memberRemovedDuringCreation(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let results = await Self.race(31) { index in
                if index == 15 {
                    try await fixture.store.removeProjectMember(organizationID: fixture.organizationID, projectID: project.id, userID: member.id)
                } else {
                    _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
                }
            }
            let refused = results.compactMap { $0 }
            #expect(refused.allSatisfy { $0 == .ownerNotProjectMember(userID: member.id, projectID: project.id) })
            let inactive = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .inactive,
                page: PageRequest(limit: 100)
            )
            #expect(inactive.items.count == 30 - refused.count)
        }
    }

    @Test("Four processes starting at once on an empty database: migrations once, one secret, one bootstrap", arguments: TestEngine.available)
    func concurrentStarts(engine: TestEngine) async throws {
        try await withTestDatabase(engine) { url in
            var stores: [SQLStore] = []
            for _ in 0..<4 {
                stores.append(try await SQLStore.open(url, logger: Logger(label: "test")))
            }
            let outcomes = try await withThrowingTaskGroup(of: (applied: [String], secret: [UInt8], bootstrapped: Bool).self) { group in
                for (index, store) in stores.enumerated() {
                    group.addTask {
                        let applied = try await store.migrate()
                        let secret = try await store.serverSecret(override: nil)
                        let organization = Organization(id: OrganizationID(rawValue: "org-start\(index)"), name: "Start \(index)", createdAt: 1)
                        let bootstrapped = try await store.bootstrap(organization: organization, adminKey: nil)
                        return (applied, secret, bootstrapped)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(
                outcomes.map(\.applied).filter { !$0.isEmpty } == [
                    [
                        "0001_create_schema", "0002_add_key_rotation", "0003_create_change_log", "0004_users_invites_audit_log",
                        "0005_index_audit_log_times", "0006_order_change_log_by_transaction", "0007_record_model_usage",
                        "0008_project_model_permissions", "0009_project_rate_limits",
                    ]
                ]
            )
            #expect(Set(outcomes.map(\.secret)).count == 1)
            #expect(outcomes.filter(\.bootstrapped).count == 1)
            for store in stores {
                try await store.close()
            }
        }
    }

    @Test(
        "A reader following the change log while 200 keys are created at once on two replicas misses no entry and reads none twice",
        arguments: TestEngine.available
    )
    func changeLogReaderMissesNothing(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            try await fixture.withReplica { replica in
                let (project, member) = try await fixture.projectWithMember()
                let start = try await fixture.caughtUp()
                let finished = Atomic(false)
                let writers = Task {
                    let results = await Self.race(200) { index in
                        let store = index % 2 == 0 ? fixture.store : replica
                        _ = try await store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
                    }
                    finished.store(true, ordering: .releasing)
                    return results
                }
                // As a replica's change feed reads: everything after where it is, again and again. An entry that
                // became visible behind a position the reader had passed would be skipped for good.
                var followed: [ChangePosition] = []
                var position = start
                var reads = 0
                while true {
                    let writersDone = finished.load(ordering: .acquiring)
                    let batch = try await fixture.store.changes(after: position, limit: 1_000)
                    followed += batch.records.map(\.position)
                    position = batch.position
                    reads += 1
                    if writersDone, position >= (try await fixture.changeLogEnd()) { break }
                }
                #expect(await writers.value.compactMap { $0 }.isEmpty)
                #expect(reads > 2, "the reader read while the writers wrote")
                let everything = try await fixture.store.changes(after: start, limit: 1_000).records.map(\.position)
                #expect(everything.count == 200)
                // Every entry read, each once, in order.
                #expect(Set(everything).subtracting(followed).isEmpty, "entries the reader skipped")
                #expect(followed.count == everything.count, "entries read more than once")
                #expect(followed == everything)
            }
        }
    }
}
