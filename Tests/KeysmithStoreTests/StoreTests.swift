import Foundation
import KeysmithCore
import KeysmithTestSupport
import Logging
import SQLKit
import Synchronization
import Testing

@testable import KeysmithDomain

@Suite("Store: setup")
struct StoreSetupTests {
    @Test("Migrations apply once, in order, under the same names on each engine, and a second run applies nothing", arguments: TestEngine.available)
    func migrationsAreIdempotent(engine: TestEngine) async throws {
        try await withTestDatabase(engine) { url in
            let store = try await SQLStore.open(url, logger: Logger(label: "test"))
            await #expect(throws: (any Error).self) { try await store.checkReadiness() }
            #expect(
                try await store.migrate() == [
                    "0001_create_schema", "0002_add_key_rotation", "0003_create_change_log", "0004_users_invites_audit_log",
                    "0005_index_audit_log_times",
                    "0006_order_change_log_by_transaction", "0007_record_model_usage", "0008_project_model_permissions", "0009_project_rate_limits",
                ]
            )
            try await store.checkReadiness()
            #expect(try await store.migrate() == [])
            try await store.close()
        }
    }

    @Test("The server secret is generated once and kept; a different override is refused", arguments: TestEngine.available)
    func serverSecret(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let first = try await fixture.store.serverSecret(override: nil)
            #expect(first.count == 32)
            #expect(try await fixture.store.serverSecret(override: nil) == first)
            #expect(try await fixture.store.serverSecret(override: first) == first)
            await #expect(throws: SecretMismatchError.self) {
                _ = try await fixture.store.serverSecret(override: Array(repeating: 1, count: 32))
            }
        }
    }

    @Test("A database started with KEYSMITH_SECRET refuses to start without it", arguments: TestEngine.available)
    func overrideIsRemembered(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let configured: [UInt8] = Array("0123456789abcdef0123456789abcdef".utf8)
            let secret = try await fixture.store.serverSecret(override: configured)
            #expect(secret == configured)
            await #expect(throws: SecretMismatchError.self) {
                _ = try await fixture.store.serverSecret(override: nil)
            }
        }
    }

    @Test("Bootstrap creates the default organization only on an empty database", arguments: TestEngine.available)
    func bootstrap(engine: TestEngine) async throws {
        try await withTestDatabase(engine) { url in
            try await self.bootstrap(url)
        }
    }

    private func bootstrap(_ url: DatabaseURL) async throws {
        let store = try await SQLStore.open(url, logger: Logger(label: "test"))
        try await store.migrate()
        #expect(try await store.defaultOrganization() == nil)
        let organization = Organization(id: "org-first", name: "Default", createdAt: 1)
        let key = AdminKey(id: "key_admin", organizationID: organization.id, name: "boot", redactedValue: "sk-admin-***", createdAt: 1)
        #expect(try await store.bootstrap(organization: organization, adminKey: (key, "hash")))
        #expect(try await store.defaultOrganization() == organization)
        #expect(try await store.adminKeyCredentials() == [AdminKeyCredential(key: key, secretHash: "hash")])
        let other = Organization(id: "org-second", name: "Other", createdAt: 2)
        #expect(try await !store.bootstrap(organization: other, adminKey: nil))
        #expect(try await store.defaultOrganization() == organization)
        try await store.close()
    }

    @Test("A file database keeps its data and secret across reopening, in WAL mode")
    func fileDatabase() async throws {
        try await withTemporaryDirectory { directory in
            let url = DatabaseURL.sqliteFile(path: directory.appendingPathComponent("k.sqlite").path)

            let first = try await SQLStore.open(url, logger: Logger(label: "test"))
            try await first.migrate()
            let secret = try await first.serverSecret(override: nil)
            let organization = Organization(id: "org-a", name: "A", createdAt: 1)
            try await first.createOrganization(organization)
            try await first.close()

            let second = try await SQLStore.open(url, logger: Logger(label: "test"))
            #expect(try await second.migrate() == [])
            #expect(try await second.serverSecret(override: nil) == secret)
            #expect(try await second.defaultOrganization() == organization)
            // WAL mode: the log sits beside the database while it is open.
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("k.sqlite-wal").path))
            try await second.close()
        }
    }

    @Test("A file that is not a database, or a path that cannot be created, is a clear error")
    func unreadableDatabase() async throws {
        try await withTemporaryDirectory { directory in
            let garbage = directory.appendingPathComponent("garbage.sqlite")
            try Data(repeating: 0x41, count: 4096).write(to: garbage)
            await #expect(throws: SQLiteOpenError.self) {
                _ = try await SQLStore.open(.sqliteFile(path: garbage.path), logger: Logger(label: "test"))
            }
            await #expect(throws: SQLiteOpenError.self) {
                _ = try await SQLStore.open(.sqliteFile(path: "/nonexistent-dir/x/k.sqlite"), logger: Logger(label: "test"))
            }
        }
    }

    @Test("Database URLs parse as documented, and never show a password")
    func databaseURLs() throws {
        #expect(try DatabaseURL(parsing: "sqlite:keysmith.sqlite") == .sqliteFile(path: "keysmith.sqlite"))
        #expect(try DatabaseURL(parsing: "sqlite:data/k.sqlite") == .sqliteFile(path: "data/k.sqlite"))
        #expect(try DatabaseURL(parsing: "sqlite:///var/lib/k.sqlite") == .sqliteFile(path: "/var/lib/k.sqlite"))
        #expect(try DatabaseURL(parsing: "sqlite::memory:") == .sqliteMemory)
        for bad in ["", "mysql://x", "sqlite:", "sqlite://host/x", "sqlite::other:", "keysmith.sqlite"] {
            #expect(throws: DatabaseURLError.self) { try DatabaseURL(parsing: bad) }
        }

        let full = try DatabaseURL(parsing: "postgres://keys%40mith:p%3Ass%2Fword@db.internal:6432/keys?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(
            full
                == .postgres(
                    PostgresSettings(
                        host: "db.internal",
                        port: 6432,
                        username: "keys@mith",
                        password: "p:ss/word",
                        database: "keys",
                        tlsMode: .verifyFull,
                        rootCertificatePath: "/etc/ca.pem"
                    )
                )
        )
        #expect(!full.description.contains("p:ss") && !full.description.contains("p%3Ass"))
        #expect(full.description == "postgres://keys@mith@db.internal:6432/keys?sslmode=verify-full")
        #expect(
            try DatabaseURL(parsing: "postgresql://u@localhost/k")
                == .postgres(PostgresSettings(host: "localhost", username: "u", password: nil, database: "k"))
        )
        let ipv6 = try DatabaseURL(parsing: "postgres://u:p@[::1]:5433/k?sslmode=disable")
        #expect(ipv6 == .postgres(PostgresSettings(host: "::1", port: 5433, username: "u", password: "p", database: "k", tlsMode: .disable)))
        #expect(
            try DatabaseURL(parsing: "postgres://u:p@h/k?sslmode=allow")
                == .postgres(PostgresSettings(host: "h", username: "u", password: "p", database: "k", tlsMode: .prefer))
        )

        for (bad, reason) in [
            ("postgres://u:secret@h:99999/k", "port"),
            ("postgres://u:secret@h/", "no database"),
            ("postgres://h/k", "no user"),
            ("postgres://u:secret@/k", "no host"),
            ("postgres://u:secret@h/k?sslmode=maybe", "sslmode"),
            ("postgres://u:secret@h/k?pool=3", "pool"),
            ("postgres://u:secret@h/k%zz", "%"),
        ] {
            let error = #expect(throws: DatabaseURLError.self) { try DatabaseURL(parsing: bad) }
            #expect(error?.description.contains(reason) == true, "\(bad): \(error?.description ?? "")")
            #expect(error?.description.contains("secret") == false, "\(bad): the password shows in \(error?.description ?? "")")
        }
    }
}

@Suite("Store: projects and pagination")
struct StoreProjectTests {
    @Test("Lists page in (creation time, id) order with exact has_more, also when times tie", arguments: TestEngine.available)
    func pagination(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            var created: [ProjectID] = []
            for index in 0..<25 {
                created.append(try await fixture.project("p\(index)").id)
                if index % 10 == 9 { fixture.clock.advance(by: 1) }
            }
            var seen: [ProjectID] = []
            var after: String?
            var pages = 0
            while true {
                let page = try await fixture.store.listProjects(
                    organizationID: fixture.organizationID,
                    includeArchived: false,
                    page: PageRequest(limit: 10, after: after)
                )
                pages += 1
                seen += page.items.map(\.id)
                #expect(page.hasMore == (seen.count < 25))
                guard page.hasMore else { break }
                after = page.items.last?.id.rawValue
            }
            #expect(pages == 3)
            #expect(seen == created)

            let exact = try await fixture.store.listProjects(
                organizationID: fixture.organizationID,
                includeArchived: false,
                page: PageRequest(limit: 25)
            )
            #expect(exact.items.count == 25 && !exact.hasMore)
        }
    }

    @Test("An unknown or foreign after cursor is an invalid request naming 'after'", arguments: TestEngine.available)
    func unknownCursor(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            _ = try await fixture.project()
            await expectRefusal(.unknownCursor("proj_missing")) {
                _ = try await fixture.store.listProjects(
                    organizationID: fixture.organizationID,
                    includeArchived: false,
                    page: PageRequest(after: "proj_missing")
                )
            }
        }
    }

    @Test("Archived projects are listed only on request, and refuse updates", arguments: TestEngine.available)
    func archive(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let kept = try await fixture.project("kept")
            let archived = try await fixture.project("gone")
            fixture.clock.advance(by: 5)
            let result = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: archived.id, at: fixture.clock.now)
            #expect(result.archivedAt == fixture.clock.now)
            // Archiving again keeps the first time.
            fixture.clock.advance(by: 5)
            let again = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: archived.id, at: fixture.clock.now)
            #expect(again.archivedAt == result.archivedAt)

            let active = try await fixture.store.listProjects(organizationID: fixture.organizationID, includeArchived: false, page: PageRequest())
            #expect(active.items.map(\.id) == [kept.id])
            let all = try await fixture.store.listProjects(organizationID: fixture.organizationID, includeArchived: true, page: PageRequest())
            #expect(all.items.map(\.id) == [kept.id, archived.id])

            await expectRefusal(.projectArchived(projectID: archived.id)) {
                _ = try await fixture.store.updateProject(organizationID: fixture.organizationID, id: archived.id, name: "x", externalKeyID: nil)
            }
        }
    }

    @Test("Updating a project changes only the fields given; a null external key id clears it", arguments: TestEngine.available)
    func update(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let project = try await fixture.project("before")
            var updated = try await fixture.store.updateProject(
                organizationID: fixture.organizationID,
                id: project.id,
                name: nil,
                externalKeyID: .some("ext-1")
            )
            #expect(updated.name == "before" && updated.externalKeyID == "ext-1")
            updated = try await fixture.store.updateProject(
                organizationID: fixture.organizationID,
                id: project.id,
                name: "after",
                externalKeyID: .some(nil)
            )
            #expect(updated.name == "after" && updated.externalKeyID == nil)
            #expect(try await fixture.store.project(organizationID: fixture.organizationID, id: project.id) == updated)
        }
    }

    @Test("Another organization's objects are not found", arguments: TestEngine.available)
    func organizationIsolation(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, _) = try await fixture.projectWithMember()
            let other = Organization(id: "org-other", name: "Other", createdAt: 1)
            try await fixture.store.createOrganization(other)
            await expectRefusal(.notFound(.project, id: project.id)) {
                _ = try await fixture.store.project(organizationID: other.id, id: project.id)
            }
            await expectRefusal(.notFound(.project, id: project.id)) {
                _ = try await fixture.store.listAPIKeys(organizationID: other.id, projectID: project.id, access: .any, page: PageRequest())
            }
            let list = try await fixture.store.listProjects(organizationID: other.id, includeArchived: true, page: PageRequest())
            #expect(list.items.isEmpty)
        }
    }
}

@Suite("Store: users, service accounts and keys")
struct StoreKeyTests {
    @Test("Emails are unique per organization, case-insensitively", arguments: TestEngine.available)
    func uniqueEmails(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            _ = try await fixture.user("Ada@Example.com")
            await expectRefusal(.emailTaken("ada@example.COM")) {
                _ = try await fixture.user("ada@example.COM")
            }
            let found = try await fixture.store.listUsers(organizationID: fixture.organizationID, emails: ["ADA@example.com"], page: PageRequest())
            #expect(found.items.map(\.email) == ["Ada@Example.com"])
        }
    }

    @Test("Only project members can own user keys, only in active projects", arguments: TestEngine.available)
    func keyCreationRules(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let outsider = try await fixture.user("outsider@example.com")
            await expectRefusal(.ownerNotProjectMember(userID: outsider.id, projectID: project.id)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: outsider.id)))
            }
            let key = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            #expect(key.owner == .user(member, role: .member))
            #expect(key.lastUsedAt == nil)

            _ = try await fixture.store.archiveProject(organizationID: fixture.organizationID, id: project.id, at: fixture.clock.now)
            await expectRefusal(.projectArchived(projectID: project.id)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            }
            let account = fixture.newServiceAccount(projectID: project.id)
            await expectRefusal(.projectArchived(projectID: project.id)) {
                try await fixture.store.createServiceAccount(account, key: nil)
            }
        }
    }

    @Test(
        "A key's creation is one statement in its transaction on PostgreSQL, with its audit event and change log entry; refusals insert nothing",
        arguments: TestEngine.available
    )
    func keyCreationInOneStatement(engine: TestEngine) async throws {
        let statements = Mutex(0)
        let observer = SQLStatementObserver { _, _ in statements.withLock { $0 += 1 } }
        try await StoreFixture.run(engine, observer: observer) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let account = fixture.newServiceAccount(projectID: project.id)
            try await fixture.store.createServiceAccount(account, key: nil)
            for owner in [NewAPIKey.Owner.user(id: member.id), .serviceAccount(id: account.id)] {
                let before = statements.withLock { $0 }
                let receipt = ChangeReceipt()
                let newKey = fixture.newKey(projectID: project.id, owner: owner)
                let key = try await receipt.collecting { try await fixture.store.createAPIKey(newKey) }
                if engine == .postgres {
                    // BEGIN, the statement, COMMIT.
                    #expect(statements.withLock { $0 } - before == 3)
                }
                switch owner {
                case .user: #expect(key.owner == .user(member, role: .member))
                case .serviceAccount: #expect(key.owner == .serviceAccount(account))
                }
                #expect(receipt.changes == [.apiKey(id: key.id)])
                let position = try #require(receipt.position)
                // Read where the receipt says, not through the feed's read, which stops below transactions still in
                // progress on the whole server (other tests' too).
                let logged = try await fixture.store.engine.unsafeRead(logger: Logger(label: "test")) { database in
                    try await database.raw(
                        """
                        SELECT subject, subject_id FROM keysmith_changes
                        WHERE transaction_id = \(bind: Int(position.transaction)) AND sequence = \(bind: Int(position.sequence))
                        """
                    ).all()
                }
                #expect(try logged.map { [try $0.string(at: 0), try $0.string(at: 1)] } == [["api_key", key.id.rawValue]])
                let audit = try await fixture.store.listAuditLogs(
                    organizationID: fixture.organizationID,
                    filter: AuditLogFilter(),
                    limit: 1,
                    after: nil,
                    before: nil
                )
                #expect(audit.items.first?.type == .apiKeyCreated && audit.items.first?.details == SQLStore.keyCreatedEvent(newKey).details)
                #expect(audit.items.first?.projectName == project.name)
                #expect(try await fixture.store.apiKey(organizationID: fixture.organizationID, projectID: project.id, id: key.id) == key)
            }

            let countBefore = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .any,
                page: PageRequest(limit: 100)
            )
            let unknownProject = ProjectID(rawValue: "proj_unknown")
            await expectRefusal(.notFound(.project, id: unknownProject)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: unknownProject, owner: .user(id: member.id)))
            }
            let unknownAccount = ServiceAccountID(rawValue: "user-unknown")
            await expectRefusal(.notFound(.serviceAccount, id: unknownAccount)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .serviceAccount(id: unknownAccount)))
            }
            // Another project's account is not this project's.
            let other = try await fixture.project("Other")
            let otherAccount = fixture.newServiceAccount(projectID: other.id)
            try await fixture.store.createServiceAccount(otherAccount, key: nil)
            await expectRefusal(.notFound(.serviceAccount, id: otherAccount.id)) {
                _ = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .serviceAccount(id: otherAccount.id)))
            }
            let countAfter = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .any,
                page: PageRequest(limit: 100)
            )
            #expect(countAfter.items.map(\.id) == countBefore.items.map(\.id))
        }
    }

    @Test("A member who leaves keeps their keys, listed as inactive", arguments: TestEngine.available)
    func ownerProjectAccess(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let stays = try await fixture.user("stays@example.com")
            _ = try await fixture.store.addProjectMember(
                organizationID: fixture.organizationID,
                projectID: project.id,
                userID: stays.id,
                role: .owner,
                at: fixture.clock.now
            )
            let leaving = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id)))
            let staying = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: stays.id)))
            try await fixture.store.removeProjectMember(organizationID: fixture.organizationID, projectID: project.id, userID: member.id)

            func ids(_ access: OwnerProjectAccess) async throws -> [APIKeyID] {
                try await fixture.store.listAPIKeys(
                    organizationID: fixture.organizationID,
                    projectID: project.id,
                    access: access,
                    page: PageRequest()
                )
                .items.map(\.id)
            }
            #expect(try await ids(.active) == [staying.id])
            #expect(try await ids(.inactive) == [leaving.id])
            #expect(try await ids(.any) == [leaving.id, staying.id])
            let inactive = try await fixture.store.apiKey(organizationID: fixture.organizationID, projectID: project.id, id: leaving.id)
            #expect(!inactive.owner.hasProjectAccess)
        }
    }

    @Test("Deleting a service account deletes its keys; its keys cannot be deleted one by one", arguments: TestEngine.available)
    func serviceAccountKeys(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let project = try await fixture.project()
            let account = fixture.newServiceAccount(projectID: project.id)
            let first = fixture.newKey(projectID: project.id, owner: .serviceAccount(id: account.id))
            try await fixture.store.createServiceAccount(account, key: first)
            let second = try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .serviceAccount(id: account.id)))
            await expectRefusal(.serviceAccountKey(keyID: second.id, serviceAccountID: account.id)) {
                try await fixture.store.deleteAPIKey(organizationID: fixture.organizationID, projectID: project.id, id: second.id)
            }
            try await fixture.store.deleteServiceAccount(organizationID: fixture.organizationID, projectID: project.id, id: account.id)
            let revoked = try await fixture.store.revokedSecret(secretHash: first.secret.hash)
            #expect(
                revoked == RevokedSecret(keyID: first.id, organizationID: fixture.organizationID, projectID: project.id, revokedAt: fixture.clock.now)
            )
            #expect(try await fixture.store.keyVerificationState(keyID: first.id) == nil)
            #expect(try await fixture.store.keyVerificationState(keyID: second.id) == nil)
            let keys = try await fixture.store.listAPIKeys(
                organizationID: fixture.organizationID,
                projectID: project.id,
                access: .any,
                page: PageRequest()
            )
            #expect(keys.items.isEmpty)
            await expectRefusal(.notFound(.serviceAccount, id: account.id)) {
                _ = try await fixture.store.serviceAccount(organizationID: fixture.organizationID, projectID: project.id, id: account.id)
            }
        }
    }

    @Test("Updating a key replaces scopes and expiry; an expired key cannot be updated", arguments: TestEngine.available)
    func updateKey(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let key = try await fixture.store.createAPIKey(
                fixture.newKey(projectID: project.id, owner: .user(id: member.id), expiresAt: fixture.clock.now + 60)
            )
            let updated = try await fixture.store.updateAPIKey(
                organizationID: fixture.organizationID,
                projectID: project.id,
                id: key.id,
                scopes: ["api.model.read", "api.model.request"],
                expiresAt: nil,
                now: fixture.clock.now
            )
            #expect(updated.scopes == ["api.model.read", "api.model.request"])
            #expect(updated.expiresAt == fixture.clock.now + 60)
            fixture.clock.advance(by: 60)
            await expectRefusal(.keyExpired(keyID: key.id, operation: .update)) {
                _ = try await fixture.store.updateAPIKey(
                    organizationID: fixture.organizationID,
                    projectID: project.id,
                    id: key.id,
                    scopes: [],
                    expiresAt: nil,
                    now: fixture.clock.now
                )
            }
        }
    }

    @Test("Deleting a user key removes it; a second delete is not found", arguments: TestEngine.available)
    func deleteKey(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let (project, member) = try await fixture.projectWithMember()
            let new = fixture.newKey(projectID: project.id, owner: .user(id: member.id))
            let key = try await fixture.store.createAPIKey(new)
            let state = try #require(try await fixture.store.keyVerificationState(keyID: key.id))
            #expect(state.secretHash == new.secret.hash && state.ownerID == member.id.rawValue && state.ownerHasProjectAccess)
            #expect(try await fixture.store.revokedSecret(secretHash: new.secret.hash) == nil)
            try await fixture.store.deleteAPIKey(organizationID: fixture.organizationID, projectID: project.id, id: key.id)
            let revoked = try await fixture.store.revokedSecret(secretHash: new.secret.hash)
            #expect(revoked?.keyID == key.id && revoked?.projectID == project.id)
            #expect(try await fixture.store.revokedSecretHashes(keyID: key.id) == [new.secret.hash])
            #expect(try await fixture.store.keyVerificationState(keyID: key.id) == nil)
            await expectRefusal(.notFound(.apiKey, id: key.id)) {
                try await fixture.store.deleteAPIKey(organizationID: fixture.organizationID, projectID: project.id, id: key.id)
            }
        }
    }

    @Test("Admin keys list in both orders and delete", arguments: TestEngine.available)
    func adminKeys(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            var ids: [AdminKeyID] = []
            for index in 0..<5 {
                let key = AdminKey(
                    id: fixture.ids.make(.apiKey),
                    organizationID: fixture.organizationID,
                    name: "a\(index)",
                    redactedValue: "sk-admin-***",
                    createdAt: fixture.clock.now
                )
                try await fixture.store.createAdminKey(key, secretHash: "hash\(index)")
                ids.append(key.id)
            }
            let ascending = try await fixture.store.listAdminKeys(
                organizationID: fixture.organizationID,
                descending: false,
                page: PageRequest(limit: 3)
            )
            #expect(ascending.items.map(\.id) == Array(ids.prefix(3)) && ascending.hasMore)
            let descending = try await fixture.store.listAdminKeys(
                organizationID: fixture.organizationID,
                descending: true,
                page: PageRequest(limit: 3, after: ids[3].rawValue)
            )
            #expect(descending.items.map(\.id) == [ids[2], ids[1], ids[0]] && !descending.hasMore)
            try await fixture.store.deleteAdminKey(organizationID: fixture.organizationID, id: ids[0])
            #expect(try await fixture.store.adminKeyCredential(id: ids[0]) == nil)
            #expect(try await fixture.store.adminKeyCredential(id: ids[1])?.secretHash == "hash1")
            #expect(try await fixture.store.adminKeyCredentials().map(\.key.id).sorted() == Array(ids.dropFirst()).sorted())
        }
    }

    @Test("A batch of uses is one statement per table; last_used_at only moves forward; unknown ids are ignored")
    func batchedUses() async throws {
        try await withTemporaryDirectory { directory in
            let statements = Mutex(0)
            let store = try await SQLStore.open(
                .sqliteFile(path: directory.appendingPathComponent("uses.sqlite").path),
                logger: Logger(label: "test"),
                observer: SQLStatementObserver { _, _ in statements.withLock { $0 += 1 } }
            )
            try await store.migrate()
            let organization = Organization(id: "org-uses", name: "Uses", createdAt: 1)
            try await store.createOrganization(organization)
            let project = Project(id: "proj_uses", organizationID: organization.id, name: "P", createdAt: 1)
            try await store.createProject(project)
            let account = ServiceAccount(
                id: "svc_acct_uses",
                organizationID: organization.id,
                projectID: project.id,
                name: "b",
                role: .member,
                createdAt: 1
            )
            try await store.createServiceAccount(account, key: nil)
            var ids: [APIKeyID] = []
            for index in 0..<300 {
                let id = APIKeyID(rawValue: "key_uses\(index)")
                _ = try await store.createAPIKey(
                    NewAPIKey(
                        id: id,
                        organizationID: organization.id,
                        projectID: project.id,
                        owner: .serviceAccount(id: account.id),
                        name: "k",
                        secret: NewKeySecret(hash: String(format: "%064d", index), redactedValue: "r"),
                        scopes: [],
                        createdAt: 1,
                        expiresAt: nil
                    )
                )
                ids.append(id)
            }
            let admin = AdminKey(id: "key_admin_uses", organizationID: organization.id, name: "a", redactedValue: "r", createdAt: 1)
            try await store.createAdminKey(admin, secretHash: String(repeating: "a", count: 64))

            var uses = Dictionary(uniqueKeysWithValues: ids.map { ($0, 100) })
            uses["key_missing"] = 100
            let before = statements.withLock { $0 }
            try await store.recordUses(apiKeys: uses, adminKeys: [admin.id: 50])
            // BEGIN, one UPDATE per table, COMMIT.
            #expect(statements.withLock { $0 } - before == 4)
            // An older time (from a slower batch, or another process) never moves a time back.
            try await store.recordUses(apiKeys: [ids[0]: 90, ids[1]: 110], adminKeys: [admin.id: 40])
            let first = try await store.apiKey(organizationID: organization.id, projectID: project.id, id: ids[0])
            let second = try await store.apiKey(organizationID: organization.id, projectID: project.id, id: ids[1])
            let last = try await store.apiKey(organizationID: organization.id, projectID: project.id, id: ids[299])
            #expect(first.lastUsedAt == 100 && second.lastUsedAt == 110 && last.lastUsedAt == 100)
            #expect(try await store.adminKey(organizationID: organization.id, id: admin.id).lastUsedAt == 50)
            try await store.close()
        }
    }
}
