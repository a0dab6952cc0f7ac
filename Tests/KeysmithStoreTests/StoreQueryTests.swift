import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

/// Every query of a type of its own (``StoreQuery``) run on each engine, its rows decoded and compared with what
/// was written: the SQL, its bindings and its decoding live in one type, and this proves that they agree, on
/// SQLite's text and on PostgreSQL's prepared statement alike. A query added as a type is added here (the change
/// log's read, ChangeLogRead, is run by ChangeLogTests and ConcurrencyTests; PostgreSQL's one-statement key creation,
/// CreateAPIKey, by StoreKeyTests).
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
                    FirstPage(list: SQLStore.APIKeyList(organizationID: organizationID, projectID: project.id, access: .any), limit: 10)
                )
            }
            #expect(first.map(\.id) == [key.id, second.id])
            let written = try #require(first.first)
            #expect(written.name == key.name && written.redactedValue == key.secret.redactedValue)
            #expect(written.createdAt == key.createdAt && written.expiresAt == key.expiresAt && written.lastUsedAt == nil)
            #expect(written.owner == .user(member, role: .member))
            let after = try await engine.unsafeRead { database in
                try await database.rows(
                    PageAfter(
                        list: SQLStore.APIKeyList(organizationID: organizationID, projectID: project.id, access: .active),
                        after: key.id.rawValue,
                        limit: 10
                    )
                )
            }
            #expect(after == [second])
            let inactive = try await engine.unsafeRead { database in
                try await database.rows(
                    FirstPage(list: SQLStore.APIKeyList(organizationID: organizationID, projectID: project.id, access: .inactive), limit: 10)
                )
            }
            #expect(inactive.isEmpty)
        }
    }

    @Test("Every read of a type of its own decodes what was written, on each engine", arguments: TestEngine.available)
    func everyReadDecodes(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let store = fixture.store
            let engine = store.engine
            let organizationID = fixture.organizationID
            let organization = fixture.organization
            let (project, member) = try await fixture.projectWithMember()
            fixture.clock.advance(by: 1)
            let archived = try await store.archiveProject(
                organizationID: organizationID,
                id: try await fixture.project("Archived").id,
                at: fixture.clock.now
            )
            fixture.clock.advance(by: 1)
            let second = try await fixture.user("second@example.com")
            let account = fixture.newServiceAccount(projectID: project.id)
            try await store.createServiceAccount(account, key: nil)
            let newKey = fixture.newKey(projectID: project.id, owner: .user(id: member.id))
            let key = try await store.createAPIKey(newKey)
            let rotated = try await store.rotateAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                id: key.id,
                secret: NewKeySecret(hash: "rotated-hash", redactedValue: "sk-proj-***new"),
                graceEndsAt: nil,
                now: fixture.clock.now
            )
            let invite = try await store.createInvite(
                Invite(
                    id: fixture.ids.make(.invite),
                    organizationID: organizationID,
                    email: "invited@example.com",
                    role: .reader,
                    projects: [Invite.ProjectGrant(projectID: project.id, role: .owner)],
                    createdAt: fixture.clock.now,
                    expiresAt: fixture.clock.now + 3_600
                ),
                joinDefaultProject: false
            )
            var adminKeys: [AdminKey] = []
            for index in 0..<2 {
                let adminKey = AdminKey(
                    id: fixture.ids.make(.apiKey),
                    organizationID: organizationID,
                    name: "admin \(index)",
                    redactedValue: "sk-admin-***\(index)",
                    createdAt: fixture.clock.now + index
                )
                try await store.createAdminKey(adminKey, secretHash: "admin-hash-\(index)")
                adminKeys.append(adminKey)
            }

            func read<Query: StoreQuery>(_ query: Query) async throws -> [Query.Row] {
                try await engine.unsafeRead { try await $0.rows(query) }
            }

            // One object each, by its id, and nothing for an id that is not there.
            #expect(try await read(SQLStore.OrganizationByID(id: organizationID)) == [organization])
            #expect(try await read(SQLStore.DefaultOrganization()) == [organization])
            #expect(try await read(SQLStore.ProjectByID(organizationID: organizationID, id: project.id)) == [project])
            #expect(try await read(SQLStore.ProjectByID(organizationID: organizationID, id: "proj_missing")).isEmpty)
            #expect(try await read(SQLStore.UserByID(organizationID: organizationID, id: member.id)) == [member])
            let membership = try await read(SQLStore.MemberByID(organizationID: organizationID, projectID: project.id, userID: member.id))
            #expect(membership.map(\.user) == [member] && membership.map(\.role) == [.member])
            #expect(
                try await read(SQLStore.ServiceAccountByID(organizationID: organizationID, projectID: project.id, id: account.id))
                    == [account]
            )
            #expect(try await read(SQLStore.APIKeyByID(organizationID: organizationID, projectID: project.id, id: key.id)) == [rotated])
            #expect(try await read(SQLStore.InviteByID(organizationID: organizationID, id: invite.id)) == [invite])
            #expect(try await read(SQLStore.AdminKeyByID(organizationID: organizationID, id: adminKeys[0].id)) == [adminKeys[0]])
            let credentials = try await read(SQLStore.AdminKeyCredentials())
            #expect(credentials.map(\.key) == adminKeys && credentials.map(\.secretHash) == ["admin-hash-0", "admin-hash-1"])
            #expect(try await read(SQLStore.AdminKeyCredentialByID(id: adminKeys[1].id)) == [credentials[1]])

            // The same under a row lock, in a transaction, as the writes read them.
            let (locked, shared) = try await engine.write { database in
                (
                    try await database.rows(ForUpdate(query: SQLStore.ProjectByID(organizationID: organizationID, id: project.id))),
                    try await database.rows(ForShare(query: SQLStore.UserByID(organizationID: organizationID, id: member.id)))
                )
            }
            #expect(locked == [project] && shared == [member])

            // The verification state's reads agree with the batched read by id.
            let states = try await read(SQLStore.KeyVerificationStatesAfter(after: "", limit: 10))
            #expect(states == (try await store.keyVerificationStates(keyIDs: [key.id])))
            #expect(states.first?.secretHash == "rotated-hash")
            #expect(try await read(SQLStore.KeyVerificationStatesAfter(after: key.id.rawValue, limit: 10)).isEmpty)
            #expect(try await read(SQLStore.KeyVerificationStateByID(id: key.id)) == states)
            #expect(states.first?.rateLimits == nil)
            // A key's own limits: none (0), then set, and carried by its verification state (0 read as none).
            let keyLimits = SQLStore.APIKeyRateLimitsInProject(keyID: key.id, projectID: project.id, organizationID: organizationID)
            #expect(try await read(keyLimits) == [APIKeyRateLimits(requestsPerMinute: 0, tokensPerMinute: 0, concurrentRequests: 0)])
            #expect(try await read(SQLStore.APIKeyRateLimitsInProject(keyID: key.id, projectID: archived.id, organizationID: organizationID)).isEmpty)
            let setLimits = try await store.updateAPIKeyRateLimits(
                organizationID: organizationID,
                projectID: project.id,
                keyID: key.id,
                APIKeyRateLimits(requestsPerMinute: 5, tokensPerMinute: 0, concurrentRequests: 2)
            )
            #expect(setLimits == APIKeyRateLimits(requestsPerMinute: 5, tokensPerMinute: 0, concurrentRequests: 2))
            #expect(try await read(keyLimits) == [setLimits])
            let limitedState = try await read(SQLStore.KeyVerificationStateByID(id: key.id)).first
            #expect(limitedState?.rateLimits == APIKeyRateLimits(requestsPerMinute: 5, concurrentRequests: 2))
            #expect(try await read(SQLStore.KeyVerificationStatesAfter(after: "", limit: 10)).first?.rateLimits == limitedState?.rateLimits)
            #expect(try await read(SQLStore.RevokedSecretHashes(keyID: key.id)) == [newKey.secret.hash])
            let revoked = try await read(SQLStore.RevokedSecretByHash(secretHash: newKey.secret.hash))
            #expect(revoked == [RevokedSecret(keyID: key.id, organizationID: organizationID, projectID: project.id, revokedAt: fixture.clock.now)])
            #expect(try await read(SQLStore.ProjectArchived(projectID: archived.id)) == [true])
            #expect(try await read(SQLStore.ProjectArchived(projectID: project.id)) == [false])
            #expect(try await read(SQLStore.Membership(projectID: project.id, userID: member.id)).count == 1)
            #expect(try await read(SQLStore.Membership(projectID: project.id, userID: second.id)).isEmpty)

            // Each list: its first page, the page after its first item, and its cursor check.
            func checkList<List: StoreList>(_ list: List, _ expected: [List.Item], id: (List.Item) -> String) async throws
            where List.Item: Equatable {
                #expect(try await read(FirstPage(list: list, limit: 10)) == expected, "\(List.self)")
                #expect(try await read(FirstPage(list: list, limit: 1)) == Array(expected.prefix(1)), "\(List.self)")
                guard let first = expected.first else { return }
                #expect(try await read(PageAfter(list: list, after: id(first), limit: 10)) == Array(expected.dropFirst()), "\(List.self)")
                #expect(try await read(ListCursor(list: list, after: id(first))).count == 1, "\(List.self)")
                #expect(try await read(ListCursor(list: list, after: "unknown")).isEmpty, "\(List.self)")
            }
            let projects = [project, archived]
            try await checkList(SQLStore.ProjectList(organizationID: organizationID, includeArchived: true), projects) { $0.id.rawValue }
            try await checkList(SQLStore.ProjectList(organizationID: organizationID, includeArchived: false), [project]) { $0.id.rawValue }
            try await checkList(SQLStore.UserList(organizationID: organizationID), [member, second]) { $0.id.rawValue }
            let members = try await read(FirstPage(list: SQLStore.MemberList(organizationID: organizationID, projectID: project.id), limit: 10))
            #expect(members == membership)
            try await checkList(SQLStore.ServiceAccountList(organizationID: organizationID, projectID: project.id), [account]) {
                $0.id.rawValue
            }
            try await checkList(SQLStore.APIKeyList(organizationID: organizationID, projectID: project.id, access: .any), [rotated]) {
                $0.id.rawValue
            }
            try await checkList(SQLStore.InviteList(organizationID: organizationID), [invite]) { $0.id.rawValue }
            try await checkList(SQLStore.AdminKeyList(organizationID: organizationID), adminKeys) { $0.id.rawValue }
            try await checkList(NewestFirst(list: SQLStore.AdminKeyList(organizationID: organizationID)), adminKeys.reversed()) { $0.id.rawValue }

            // Model permissions: a project without any, one that does not exist, then one with a policy.
            let projectPermissions = SQLStore.ProjectModelPermissions(projectID: project.id, organizationID: organizationID)
            #expect(try await read(projectPermissions) == [nil])
            #expect(try await read(SQLStore.ProjectModelPermissions(projectID: "proj_missing", organizationID: organizationID)).isEmpty)
            #expect(try await read(SQLStore.ModelPermissionsForVerification(projectID: project.id)).isEmpty)
            let policy = ModelPermissions(mode: .allowList, modelIDs: ["gemma-3", "meta/llama 3, 8B", "gemma-3"])
            #expect(policy.modelIDs == ["gemma-3", "meta/llama 3, 8B"])
            #expect(try await store.setModelPermissions(organizationID: organizationID, projectID: project.id, policy) == policy)
            #expect(try await read(projectPermissions) == [policy])
            #expect(try await read(SQLStore.ModelPermissionsForVerification(projectID: project.id)) == [policy])
            let every = try await read(SQLStore.EveryProjectsModelPermissions())
            #expect(every.map(\.0) == [project.id] && every.map(\.1) == [policy])
            let empty = ModelPermissions(mode: .denyList, modelIDs: [])
            _ = try await store.setModelPermissions(organizationID: organizationID, projectID: project.id, empty)
            #expect(try await read(projectPermissions) == [empty])

            // Rate limits: a project without settings, one that does not exist, then settings changed twice.
            let projectLimits = SQLStore.ProjectRateLimitSettings(projectID: project.id, organizationID: organizationID)
            let noLimits = try await read(projectLimits)
            #expect(noLimits.count == 1 && noLimits[0] == nil)
            #expect(try await read(SQLStore.ProjectRateLimitSettings(projectID: "proj_missing", organizationID: organizationID)).isEmpty)
            let set = RateLimitSettings(requestsPerMinute: 30, requestsPerDay: 0)
            let model = "meta/llama 3, 8B"
            #expect(
                try await store.updateRateLimit(organizationID: organizationID, projectID: project.id, model: model, rateLimitID: "rl-x", set) == set
            )
            let more = try await store.updateRateLimit(
                organizationID: organizationID,
                projectID: project.id,
                model: model,
                rateLimitID: "rl-x",
                RateLimitSettings(tokensPerMinute: 1000)
            )
            let merged = RateLimitSettings(requestsPerMinute: 30, tokensPerMinute: 1000, requestsPerDay: 0)
            #expect(more == merged)
            #expect(try await read(projectLimits).compactMap { $0?.1 } == [merged])
            #expect(try await read(SQLStore.RateLimitSettingsForVerification(projectID: project.id)).map(\.1) == [merged])
            let everyLimit = try await read(SQLStore.EveryProjectsRateLimitSettings())
            #expect(everyLimit.map(\.0) == [project.id] && everyLimit.map(\.1) == [model] && everyLimit.map(\.2) == [merged])

            // The ledger: leases never pass the limit, give-backs return allowance, old windows go.
            let window = RateLimitWindow(subject: project.id.rawValue, model: model, measure: .requestsPerMinute, start: 1_750_000_020)
            let firstLease = try await engine.write { try await $0.rows(SQLStore.LeaseRateLimitWindow(window: window, wanted: 6, limit: 10)) }
            #expect(firstLease.map(\.granted) == [6] && firstLease.map(\.total) == [6])
            do {
                let lease = try await store.lease(window, wanted: 6, limit: 10)
                #expect(lease.granted == 4 && lease.total == 10)
            }
            do {
                let lease = try await store.lease(window, wanted: 6, limit: 10)
                #expect(lease.granted == 0 && lease.total == 10)
            }
            try await store.giveBack(window, amount: 3)
            do {
                let lease = try await store.lease(window, wanted: 6, limit: 10)
                #expect(lease.granted == 3 && lease.total == 10)
            }
            // A lower limit set meanwhile grants nothing more.
            do {
                let lease = try await store.lease(window, wanted: 6, limit: 5)
                #expect(lease.granted == 0 && lease.total == 10)
            }
            try await store.pruneRateLimitWindows(endedBefore: 1_750_000_081)
            do {
                let lease = try await store.lease(window, wanted: 6, limit: 10)
                #expect(lease.granted == 6 && lease.total == 6)
            }
        }
    }
}
