import Foundation
import KeysmithCore
import KeysmithTestSupport
import Logging
import Testing

@testable import KeysmithDomain

/// A migrated store on a database of its own (a SQLite file in WAL mode with reader connections, as production runs
/// it, or a new PostgreSQL database), with one organization and a manual clock.
struct StoreFixture: Sendable {
    let store: SQLStore
    let url: DatabaseURL
    let clock: ManualClock
    let organization: Organization
    let ids = IDGenerator()

    /// Runs `body` with a fresh fixture and closes the database afterwards, whatever happens.
    static func run(
        _ engine: TestEngine,
        observer: SQLStatementObserver? = nil,
        _ body: @escaping @Sendable (StoreFixture) async throws -> Void
    ) async throws {
        try await withTestDatabase(engine) { url in
            let clock = ManualClock()
            let store = try await SQLStore.open(url, clock: clock.clock, logger: Logger(label: "test"), observer: observer)
            do {
                try await store.migrate()
                let organization = Organization(id: IDGenerator.shared.make(.organization), name: "Org", createdAt: clock.now)
                try await store.createOrganization(organization)
                // As in the server: PostgreSQL's pool runs (many connections, so the concurrency tests race for
                // real); SQLite's run() returns at once.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await store.run() }
                    try await body(StoreFixture(store: store, url: url, clock: clock, organization: organization))
                    group.cancelAll()
                }
            } catch {
                try await store.close()
                throw error
            }
            try await store.close()
        }
    }

    var organizationID: OrganizationID { self.organization.id }

    /// Runs `body` with a second store on the same database, as another replica has, its pool running.
    func withReplica(_ body: @escaping @Sendable (SQLStore) async throws -> Void) async throws {
        let replica = try await SQLStore.open(self.url, clock: self.clock.clock, logger: Logger(label: "test"))
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await replica.run() }
                try await body(replica)
                group.cancelAll()
            }
        } catch {
            try await replica.close()
            throw error
        }
        try await replica.close()
    }

    func project(_ name: String = "Project") async throws -> Project {
        let project = Project(id: self.ids.make(.project), organizationID: self.organizationID, name: name, createdAt: self.clock.now)
        try await self.store.createProject(project)
        return project
    }

    func user(_ email: String) async throws -> User {
        let user = User(
            id: self.ids.make(.user),
            organizationID: self.organizationID,
            email: email,
            name: nil,
            role: .reader,
            addedAt: self.clock.now
        )
        try await self.store.createUser(user)
        return user
    }

    func newKey(projectID: ProjectID, owner: NewAPIKey.Owner, name: String = "key", expiresAt: Int? = nil) -> NewAPIKey {
        let plaintext = KeySecret.generate(owner.kind)
        return NewAPIKey(
            id: self.ids.make(.apiKey),
            organizationID: self.organizationID,
            projectID: projectID,
            owner: owner,
            name: name,
            secret: NewKeySecret(hash: Hex.encode(Array(plaintext.utf8.prefix(32))), redactedValue: KeySecret.redact(plaintext, kind: owner.kind)),
            scopes: [],
            createdAt: self.clock.now,
            expiresAt: expiresAt
        )
    }

    /// A service account named "bot", not yet stored.
    func newServiceAccount(projectID: ProjectID) -> ServiceAccount {
        ServiceAccount(
            id: self.ids.make(.serviceAccount),
            organizationID: self.organizationID,
            projectID: projectID,
            name: "bot",
            role: .member,
            createdAt: self.clock.now
        )
    }

    /// A project with a member whose keys can be created.
    func projectWithMember() async throws -> (Project, User) {
        let project = try await self.project()
        let user = try await self.user("\(UUID().uuidString.prefix(8))@example.com")
        _ = try await self.store.addProjectMember(
            organizationID: self.organizationID,
            projectID: project.id,
            userID: user.id,
            role: .member,
            at: self.clock.now
        )
        return (project, user)
    }
}

/// Expects `body` to fail with exactly `expected`.
func expectRefusal(
    _ expected: KeysmithError,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("expected \(expected)", sourceLocation: sourceLocation)
    } catch let error as KeysmithError {
        #expect(error == expected, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected), got \(error)", sourceLocation: sourceLocation)
    }
}

/// The engine's calls as the engine tests make them: logging to a test logger, as a store logs to its own.
extension SQLEngine {
    func unsafeRead<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.unsafeRead(logger: engineTestLogger, body)
    }

    func snapshot<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.snapshot(logger: engineTestLogger, body)
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.write(logger: engineTestLogger, body)
    }
}

private let engineTestLogger = Logger(label: "test")
