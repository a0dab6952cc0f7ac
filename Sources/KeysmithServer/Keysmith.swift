public import KeysmithCore
public import KeysmithStore
public import Logging

/// Keysmith's domain operations over the store: everything that makes ids, issues key secrets or reads the clock.
/// The HTTP handlers and the command-line tool both go through it; neither builds SQL or hashes keys itself.
public struct Keysmith: Sendable {
    public let store: any KeysmithStore
    public let hasher: KeyHasher
    public let clock: KeysmithClock
    let ids: IDGenerator
    /// The running server's verification cache, told about every change that affects a key's validity.
    let verifier: KeyVerifier?

    public init(store: any KeysmithStore, hasher: KeyHasher, clock: KeysmithClock = .system, ids: IDGenerator = .shared) {
        self.init(store: store, hasher: hasher, clock: clock, ids: ids, verifier: nil)
    }

    init(store: any KeysmithStore, hasher: KeyHasher, clock: KeysmithClock, ids: IDGenerator, verifier: KeyVerifier?) {
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.ids = ids
        self.verifier = verifier
    }

    /// This Keysmith, telling `verifier` about changes.
    func reporting(to verifier: KeyVerifier) -> Keysmith {
        Keysmith(store: self.store, hasher: self.hasher, clock: self.clock, ids: self.ids, verifier: verifier)
    }

    /// Opens the database, applies pending migrations and loads (or on first start, makes) the server secret.
    public static func open(
        _ url: DatabaseURL,
        secret: [UInt8]? = nil,
        clock: KeysmithClock = .system,
        logger: Logger
    ) async throws -> (keysmith: Keysmith, store: SQLStore) {
        let store = try await SQLStore.open(url, clock: clock, logger: logger)
        do {
            let applied = try await store.migrate()
            if !applied.isEmpty {
                logger.info("Applied database migrations", metadata: ["migrations": "\(applied.joined(separator: ", "))"])
            }
            let secret = try await store.serverSecret(override: secret)
            return (Keysmith(store: store, hasher: KeyHasher(secret: secret), clock: clock), store)
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// The secret of a new key, hashed for the store, and its plaintext to return once.
    func issueSecret(_ kind: KeyKind) -> (plaintext: String, secret: NewKeySecret, digest: KeyDigest) {
        let plaintext = KeySecret.generate(kind)
        let digest = self.hasher.digest(plaintext)
        return (plaintext, NewKeySecret(hash: digest.hex, redactedValue: KeySecret.redact(plaintext, kind: kind)), digest)
    }

    // MARK: Organizations and admin keys

    /// What a first start on an empty database created.
    public struct Bootstrap: Sendable {
        public var organization: Organization
        /// The first admin key's plaintext, if one was asked for: shown once, never again.
        public var adminKey: String?
    }

    /// On an empty database, creates the default organization and, if `adminKeyName` is given, its first admin
    /// key. Returns nil when the database already has an organization.
    public func bootstrapIfEmpty(adminKeyName: String?) async throws -> Bootstrap? {
        let now = self.clock.now()
        let organization = Organization(id: self.ids.make(.organization), name: "Default Organization", createdAt: now)
        var adminKey: (key: AdminKey, secretHash: String)?
        var plaintext: String?
        if let adminKeyName {
            let issued = self.issueSecret(.admin)
            plaintext = issued.plaintext
            adminKey = (
                AdminKey(
                    id: self.ids.make(.apiKey),
                    organizationID: organization.id,
                    name: adminKeyName,
                    redactedValue: issued.secret.redactedValue,
                    createdAt: now
                ),
                issued.secret.hash
            )
        }
        guard try await self.store.bootstrap(organization: organization, adminKey: adminKey) else { return nil }
        return Bootstrap(organization: organization, adminKey: plaintext)
    }

    public func createOrganization(name: String) async throws -> Organization {
        let organization = Organization(id: self.ids.make(.organization), name: name, createdAt: self.clock.now())
        try await self.store.createOrganization(organization)
        return organization
    }

    /// A new admin key for `organizationID`, or for the default organization when nil.
    public func createAdminKey(
        name: String,
        organizationID: String?,
        expiresInSeconds: Int? = nil
    ) async throws -> (key: AdminKey, plaintext: String) {
        let organizationID = try await self.resolveOrganization(organizationID)
        let now = self.clock.now()
        let issued = self.issueSecret(.admin)
        let key = AdminKey(
            id: self.ids.make(.apiKey),
            organizationID: organizationID,
            name: name,
            redactedValue: issued.secret.redactedValue,
            createdAt: now,
            expiresAt: expiresInSeconds.map { now + $0 }
        )
        try await self.store.createAdminKey(key, secretHash: issued.secret.hash)
        return (key, issued.plaintext)
    }

    private func resolveOrganization(_ organizationID: String?) async throws -> String {
        if let organizationID {
            return try await self.store.organization(id: organizationID).id
        }
        if let organization = try await self.store.defaultOrganization() {
            return organization.id
        }
        _ = try await self.bootstrapIfEmpty(adminKeyName: nil)
        guard let organization = try await self.store.defaultOrganization() else {
            throw KeysmithError.notFound(resource: "organization", id: "default")
        }
        return organization.id
    }

    // MARK: Projects, users, members

    public func createProject(organizationID: String, name: String, externalKeyID: String?, residency: String?) async throws -> Project {
        let project = Project(
            id: self.ids.make(.project),
            organizationID: organizationID,
            name: name,
            createdAt: self.clock.now(),
            externalKeyID: externalKeyID,
            residency: residency
        )
        try await self.store.createProject(project)
        return project
    }

    public func createUser(organizationID: String, email: String, name: String?, role: String) async throws -> User {
        let user = User(
            id: self.ids.make(.user),
            organizationID: organizationID,
            email: email,
            name: name,
            role: role,
            addedAt: self.clock.now()
        )
        try await self.store.createUser(user)
        return user
    }

    public func addProjectMember(organizationID: String, projectID: String, userID: String, role: String) async throws -> ProjectMember {
        let member = try await self.store.addProjectMember(
            projectID: projectID,
            organizationID: organizationID,
            userID: userID,
            role: role,
            at: self.clock.now()
        )
        // Keys the user kept from an earlier membership are active again.
        self.verifier?.invalidate(.membership(projectID: projectID, userID: userID))
        return member
    }

    public func removeProjectMember(organizationID: String, projectID: String, userID: String) async throws {
        try await self.store.removeProjectMember(projectID: projectID, organizationID: organizationID, userID: userID)
        self.verifier?.invalidate(.membership(projectID: projectID, userID: userID))
    }

    public func archiveProject(organizationID: String, projectID: String) async throws -> Project {
        let project = try await self.store.archiveProject(id: projectID, organizationID: organizationID, at: self.clock.now())
        self.verifier?.invalidate(.project(id: projectID))
        return project
    }

    // MARK: Service accounts and keys

    /// A new service account and, unless `withoutKey`, its first key, whose plaintext is returned once.
    public func createServiceAccount(
        organizationID: String,
        projectID: String,
        name: String,
        withoutKey: Bool
    ) async throws -> (account: ServiceAccount, key: (key: APIKey, plaintext: String)?) {
        let now = self.clock.now()
        let account = ServiceAccount(
            id: self.ids.make(.serviceAccount),
            organizationID: organizationID,
            projectID: projectID,
            name: name,
            role: withoutKey ? "none" : "member",
            createdAt: now
        )
        guard !withoutKey else {
            try await self.store.createServiceAccount(account, key: nil)
            return (account, nil)
        }
        let issued = self.issueSecret(.serviceAccount)
        let newKey = NewAPIKey(
            id: self.ids.make(.apiKey),
            organizationID: organizationID,
            projectID: projectID,
            owner: .serviceAccount(id: account.id),
            name: "Secret Key",
            secret: issued.secret,
            scopes: [],
            createdAt: now,
            expiresAt: nil
        )
        try await self.store.createServiceAccount(account, key: newKey)
        self.verifier?.invalidate(.newSecret(issued.digest))
        let key = APIKey(
            id: newKey.id,
            organizationID: organizationID,
            projectID: projectID,
            name: newKey.name,
            redactedValue: issued.secret.redactedValue,
            createdAt: now,
            lastUsedAt: nil,
            expiresAt: nil,
            scopes: [],
            owner: .serviceAccount(account)
        )
        return (account, (key, issued.plaintext))
    }

    /// A new project key for a project member or a service account; its plaintext is returned once.
    public func createAPIKey(
        organizationID: String,
        projectID: String,
        owner: NewAPIKey.Owner,
        name: String,
        scopes: [String],
        expiresInSeconds: Int?
    ) async throws -> (key: APIKey, plaintext: String) {
        let now = self.clock.now()
        let issued = self.issueSecret(owner.kind)
        let key = try await self.store.createAPIKey(
            NewAPIKey(
                id: self.ids.make(.apiKey),
                organizationID: organizationID,
                projectID: projectID,
                owner: owner,
                name: name,
                secret: issued.secret,
                scopes: scopes,
                createdAt: now,
                expiresAt: expiresInSeconds.map { now + $0 }
            )
        )
        self.verifier?.invalidate(.newSecret(issued.digest))
        return (key, issued.plaintext)
    }

    public func deleteServiceAccount(organizationID: String, projectID: String, accountID: String) async throws {
        try await self.store.deleteServiceAccount(id: accountID, projectID: projectID, organizationID: organizationID)
        self.verifier?.invalidate(.serviceAccount(id: accountID))
    }

    public func deleteAPIKey(organizationID: String, projectID: String, keyID: String) async throws {
        try await self.store.deleteAPIKey(id: keyID, projectID: projectID, organizationID: organizationID)
        self.verifier?.invalidate(.key(id: keyID))
    }

    /// Replaces scopes and/or sets the expiry to `expiresInSeconds` from now.
    public func updateAPIKey(
        organizationID: String,
        projectID: String,
        keyID: String,
        scopes: [String]?,
        expiresInSeconds: Int?
    ) async throws -> APIKey {
        let now = self.clock.now()
        let key = try await self.store.updateAPIKey(
            id: keyID,
            projectID: projectID,
            organizationID: organizationID,
            scopes: scopes,
            expiresAt: expiresInSeconds.map { .some(now + $0) },
            now: now
        )
        self.verifier?.invalidate(.key(id: keyID))
        return key
    }

    /// Gives a key a new secret, returned once. The old one keeps verifying for `gracePeriodSeconds` (0: never).
    public func rotateAPIKey(
        organizationID: String,
        projectID: String,
        keyID: String,
        gracePeriodSeconds: Int
    ) async throws -> (key: APIKey, plaintext: String, previousSecretExpiresAt: UnixSeconds?) {
        let now = self.clock.now()
        let current = try await self.store.apiKey(id: keyID, projectID: projectID, organizationID: organizationID)
        let issued = self.issueSecret(current.owner.kind)
        let graceEndsAt = gracePeriodSeconds > 0 ? now + gracePeriodSeconds : nil
        let key = try await self.store.rotateAPIKey(
            id: keyID,
            projectID: projectID,
            organizationID: organizationID,
            secret: issued.secret,
            graceEndsAt: graceEndsAt,
            now: now
        )
        self.verifier?.invalidate(.key(id: keyID))
        self.verifier?.invalidate(.newSecret(issued.digest))
        return (key, issued.plaintext, graceEndsAt)
    }
}
