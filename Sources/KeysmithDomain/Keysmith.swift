public import KeysmithCore
public import Logging

/// Keysmith's domain operations: the one way in for every write, from the HTTP handlers, the dashboard, the
/// command-line tool and the benchmarks' seeder alike. It makes ids, issues key secrets, reads the clock, and calls the
/// store's writes; no caller builds SQL or hashes keys itself. The store is private to this module: outside it, the
/// database is reached through these operations, the read side (``reader``) and the verification state's source
/// (``KeysmithDatabase/verificationSource``), never through a write of the store's own.
///
/// Change reporting has one owner. Each store write records what it changed in the change log, inside its own
/// transaction; in a server, a ``VerificationChangeApplier`` (the server's change feed) is the only thing that applies
/// the log to the verification state, and every write here waits for it to have done so before returning, so that the
/// very next check sees the change. The command-line tool's writes have no applier: the running server picks them up
/// from the log.
public struct Keysmith: Sendable {
    private(set) var store: any KeysmithStore
    public let hasher: KeyHasher
    public let clock: KeysmithClock
    let ids: IDGenerator
    /// What applies a write's changes to this server's verification state; nil in the command-line tool.
    let applier: (any VerificationChangeApplier)?
    /// Who the writes are made by, as the audit log records them (``acting(as:)``).
    public private(set) var actor: AuditActor = .unnamed
    let inviteLifetimeSeconds: Int

    /// A Keysmith for the command-line tool: its writes reach a running server through the change log, and the
    /// audit log records them as made by `command` (say, `keysmith admin-keys create`).
    public init(database: KeysmithDatabase, clock: KeysmithClock = .system, command: String = "keysmith") {
        self.init(store: database.store, hasher: database.hasher, clock: clock, ids: .shared, applier: nil)
        self.actor = .command(command)
    }

    /// A Keysmith for a server: every write returns once `applier` has applied it to the verification state.
    public init(
        database: KeysmithDatabase,
        applier: any VerificationChangeApplier,
        clock: KeysmithClock = .system,
        inviteLifetimeSeconds: Int = 7 * 24 * 3600
    ) {
        self.init(
            store: database.store,
            hasher: database.hasher,
            clock: clock,
            ids: .shared,
            applier: applier,
            inviteLifetimeSeconds: inviteLifetimeSeconds
        )
    }

    init(
        store: any KeysmithStore,
        hasher: KeyHasher,
        clock: KeysmithClock,
        ids: IDGenerator = .shared,
        applier: (any VerificationChangeApplier)?,
        inviteLifetimeSeconds: Int = 7 * 24 * 3600
    ) {
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.ids = ids
        self.applier = applier
        self.inviteLifetimeSeconds = inviteLifetimeSeconds
    }

    /// This Keysmith, what its store calls meet logged to `logger`: a request's, so that a database error in the log
    /// carries the request id.
    public func logging(to logger: Logger) -> Keysmith {
        var copy = self
        copy.store = self.store.logging(to: logger)
        return copy
    }

    /// This Keysmith, its writes recorded in the audit log as made by `actor` (the admin key of a request).
    public func acting(as actor: AuditActor) -> Keysmith {
        var copy = self
        copy.actor = actor
        return copy
    }

    /// What handlers may read directly.
    public var reader: any KeysmithStoreReader { self.store }

    /// Runs a store write as ``actor``, then waits for the applier to apply what it changed (or, if it cannot read
    /// it, to apply it the safe way), so that the write is acknowledged only once this server's checks see it.
    private func write<T>(_ body: () async throws -> T) async throws -> T {
        let receipt = ChangeReceipt()
        let result = try await AuditContext.$actor.withValue(self.actor) { try await receipt.collecting(body) }
        await self.applier?.applyCommittedChanges(receipt.changes, at: receipt.position)
        return result
    }

    /// The secret of a new key, hashed for the store, and its plaintext to return once.
    func issueSecret(_ kind: KeyKind) -> (plaintext: String, secret: NewKeySecret) {
        let plaintext = KeySecret.generate(kind)
        return (plaintext, NewKeySecret(hash: self.hasher.hash(plaintext), redactedValue: KeySecret.redact(plaintext, kind: kind)))
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
        let created = try await self.write {
            try await self.store.bootstrap(organization: organization, adminKey: adminKey)
        }
        return created ? Bootstrap(organization: organization, adminKey: plaintext) : nil
    }

    public func createOrganization(name: String) async throws -> Organization {
        let organization = Organization(id: self.ids.make(.organization), name: name, createdAt: self.clock.now())
        try await self.write { try await self.store.createOrganization(organization) }
        return organization
    }

    /// A new admin key for `organizationID`, or for the default organization when nil.
    public func createAdminKey(
        name: String,
        organizationID: OrganizationID?,
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
        try await self.write { try await self.store.createAdminKey(key, secretHash: issued.secret.hash) }
        return (key, issued.plaintext)
    }

    public func deleteAdminKey(organizationID: OrganizationID, keyID: AdminKeyID) async throws {
        try await self.write { try await self.store.deleteAdminKey(organizationID: organizationID, id: keyID) }
    }

    private func resolveOrganization(_ organizationID: OrganizationID?) async throws -> OrganizationID {
        if let organizationID {
            return try await self.store.organization(id: organizationID).id
        }
        if let organization = try await self.store.defaultOrganization() {
            return organization.id
        }
        _ = try await self.bootstrapIfEmpty(adminKeyName: nil)
        guard let organization = try await self.store.defaultOrganization() else {
            throw KeysmithError.notFound(.organization, id: "default")
        }
        return organization.id
    }

    // MARK: Projects

    public func createProject(organizationID: OrganizationID, name: String, externalKeyID: String?, residency: String?) async throws -> Project {
        let project = Project(
            id: self.ids.make(.project),
            organizationID: organizationID,
            name: name,
            createdAt: self.clock.now(),
            externalKeyID: externalKeyID,
            residency: residency
        )
        try await self.write { try await self.store.createProject(project) }
        return project
    }

    /// Renames the project and/or sets its external key id (a double optional: `.some(nil)` clears it).
    public func updateProject(organizationID: OrganizationID, projectID: ProjectID, name: String?, externalKeyID: String??) async throws -> Project {
        try await self.write {
            try await self.store.updateProject(organizationID: organizationID, id: projectID, name: name, externalKeyID: externalKeyID)
        }
    }

    public func archiveProject(organizationID: OrganizationID, projectID: ProjectID) async throws -> Project {
        try await self.write {
            try await self.store.archiveProject(organizationID: organizationID, id: projectID, at: self.clock.now())
        }
    }

    // MARK: Model permissions

    /// Sets the project's model permissions, replacing any it had; the gateway and the checks enforce them once this
    /// returns.
    public func setModelPermissions(organizationID: OrganizationID, projectID: ProjectID, _ permissions: ModelPermissions) async throws
        -> ModelPermissions
    {
        try await self.write {
            try await self.store.setModelPermissions(organizationID: organizationID, projectID: projectID, permissions)
        }
    }

    /// Removes the project's model permissions: every model is permitted again.
    public func deleteModelPermissions(organizationID: OrganizationID, projectID: ProjectID) async throws {
        try await self.write {
            try await self.store.deleteModelPermissions(organizationID: organizationID, projectID: projectID)
        }
    }

    // MARK: Rate limits

    /// Changes the project's rate limit settings for `model`: each value `changes` holds replaces the project's own
    /// (0: no limit; a value left nil keeps what it had). The gateway and the checks enforce them once this returns.
    public func updateRateLimit(
        organizationID: OrganizationID,
        projectID: ProjectID,
        model: String,
        rateLimitID: String,
        _ changes: RateLimitSettings
    ) async throws -> RateLimitSettings {
        try await self.write {
            try await self.store.updateRateLimit(
                organizationID: organizationID,
                projectID: projectID,
                model: model,
                rateLimitID: rateLimitID,
                changes
            )
        }
    }

    /// Changes a key's own rate limits (a Keysmith extension): each value `changes` holds replaces the key's (0: none).
    public func updateAPIKeyRateLimits(
        organizationID: OrganizationID,
        projectID: ProjectID,
        keyID: APIKeyID,
        _ changes: APIKeyRateLimits
    ) async throws -> APIKeyRateLimits {
        try await self.write {
            try await self.store.updateAPIKeyRateLimits(organizationID: organizationID, projectID: projectID, keyID: keyID, changes)
        }
    }

    // MARK: Users and project members

    public func createUser(organizationID: OrganizationID, email: String, name: String?, role: OrganizationRole) async throws -> User {
        let user = User(
            id: self.ids.make(.user),
            organizationID: organizationID,
            email: email,
            name: name,
            role: role,
            addedAt: self.clock.now()
        )
        try await self.write { try await self.store.createUser(user) }
        return user
    }

    public func updateUser(organizationID: OrganizationID, userID: UserID, role: OrganizationRole) async throws -> User {
        try await self.write { try await self.store.updateUser(organizationID: organizationID, id: userID, role: role) }
    }

    /// Deletes the user and their memberships; their keys stay listed, inactive, and stop verifying everywhere.
    public func deleteUser(organizationID: OrganizationID, userID: UserID) async throws {
        try await self.write { try await self.store.deleteUser(organizationID: organizationID, id: userID) }
    }

    // MARK: Invites

    /// A pending invite that expires after the configured lifetime. `projects` nil: the default project, as a
    /// member (OpenAI's legacy behaviour); empty: no project.
    public func createInvite(
        organizationID: OrganizationID,
        email: String,
        role: OrganizationRole,
        projects: [Invite.ProjectGrant]?
    ) async throws -> Invite {
        let now = self.clock.now()
        let invite = Invite(
            id: self.ids.make(.invite),
            organizationID: organizationID,
            email: email,
            role: role,
            projects: projects ?? [],
            createdAt: now,
            expiresAt: now + self.inviteLifetimeSeconds
        )
        return try await self.write { try await self.store.createInvite(invite, joinDefaultProject: projects == nil) }
    }

    public func deleteInvite(organizationID: OrganizationID, inviteID: InviteID) async throws {
        try await self.write { try await self.store.deleteInvite(organizationID: organizationID, id: inviteID) }
    }

    /// Accepts a pending invite: the user, with the invite's email and role, joins the organization and its projects.
    public func acceptInvite(organizationID: OrganizationID, inviteID: InviteID, name: String?) async throws -> (user: User, invite: Invite) {
        let userID: UserID = self.ids.make(.user)
        let now = self.clock.now()
        return try await self.write {
            try await self.store.acceptInvite(organizationID: organizationID, id: inviteID, userID: userID, name: name, at: now)
        }
    }

    /// Who to add to a project: a user of the organization by id, or by email.
    public enum UserReference: Sendable {
        case id(UserID)
        case email(String)
    }

    public func addProjectMember(
        organizationID: OrganizationID,
        projectID: ProjectID,
        user: UserReference,
        role: ProjectRole
    ) async throws -> ProjectMember {
        let userID: UserID
        switch user {
        case .id(let id):
            userID = id
        case .email(let email):
            let page = try await self.store.listUsers(organizationID: organizationID, emails: [email], page: PageRequest(limit: 1))
            guard let found = page.items.first else { throw KeysmithError.noUserWithEmail(email) }
            userID = found.id
        }
        return try await self.write {
            try await self.store.addProjectMember(
                organizationID: organizationID,
                projectID: projectID,
                userID: userID,
                role: role,
                at: self.clock.now()
            )
        }
    }

    public func updateProjectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID, role: ProjectRole) async throws
        -> ProjectMember
    {
        try await self.write {
            try await self.store.updateProjectMember(organizationID: organizationID, projectID: projectID, userID: userID, role: role)
        }
    }

    /// Removes the membership; the user's keys in the project stay, inactive, and stop verifying.
    public func removeProjectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID) async throws {
        try await self.write {
            try await self.store.removeProjectMember(organizationID: organizationID, projectID: projectID, userID: userID)
        }
    }

    // MARK: Service accounts and keys

    /// A new service account and, unless `withoutKey`, its first key, whose plaintext is returned once.
    public func createServiceAccount(
        organizationID: OrganizationID,
        projectID: ProjectID,
        name: String,
        withoutKey: Bool,
        expiresInSeconds: Int? = nil
    ) async throws -> (account: ServiceAccount, key: (key: APIKey, plaintext: String)?) {
        let now = self.clock.now()
        let account = ServiceAccount(
            id: self.ids.make(.serviceAccount),
            organizationID: organizationID,
            projectID: projectID,
            name: name,
            role: withoutKey ? .none : .member,
            createdAt: now
        )
        guard !withoutKey else {
            try await self.write { try await self.store.createServiceAccount(account, key: nil) }
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
            expiresAt: expiresInSeconds.map { now + $0 }
        )
        try await self.write { try await self.store.createServiceAccount(account, key: newKey) }
        let key = APIKey(
            id: newKey.id,
            organizationID: organizationID,
            projectID: projectID,
            name: newKey.name,
            redactedValue: issued.secret.redactedValue,
            createdAt: now,
            lastUsedAt: nil,
            expiresAt: newKey.expiresAt,
            scopes: [],
            owner: .serviceAccount(account)
        )
        return (account, (key, issued.plaintext))
    }

    public func updateServiceAccount(
        organizationID: OrganizationID,
        projectID: ProjectID,
        accountID: ServiceAccountID,
        name: String?,
        role: ProjectRole?
    ) async throws -> ServiceAccount {
        try await self.write {
            try await self.store.updateServiceAccount(
                organizationID: organizationID,
                projectID: projectID,
                id: accountID,
                name: name,
                role: role
            )
        }
    }

    /// Deletes the account and every key it owns.
    public func deleteServiceAccount(organizationID: OrganizationID, projectID: ProjectID, accountID: ServiceAccountID) async throws {
        try await self.write {
            try await self.store.deleteServiceAccount(organizationID: organizationID, projectID: projectID, id: accountID)
        }
    }

    /// A new project key for a project member or a service account; its plaintext is returned once.
    public func createAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        owner: NewAPIKey.Owner,
        name: String,
        scopes: [String],
        expiresInSeconds: Int?
    ) async throws -> (key: APIKey, plaintext: String) {
        let now = self.clock.now()
        let issued = self.issueSecret(owner.kind)
        let key = try await self.write {
            try await self.store.createAPIKey(
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
        }
        return (key, issued.plaintext)
    }

    public func deleteAPIKey(organizationID: OrganizationID, projectID: ProjectID, keyID: APIKeyID) async throws {
        try await self.write {
            try await self.store.deleteAPIKey(organizationID: organizationID, projectID: projectID, id: keyID)
        }
    }

    /// Replaces scopes and/or sets the expiry to `expiresInSeconds` from now.
    public func updateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        keyID: APIKeyID,
        scopes: [String]?,
        expiresInSeconds: Int?
    ) async throws -> APIKey {
        let now = self.clock.now()
        return try await self.write {
            try await self.store.updateAPIKey(
                organizationID: organizationID,
                projectID: projectID,
                id: keyID,
                scopes: scopes,
                expiresAt: expiresInSeconds.map { .some(now + $0) },
                now: now
            )
        }
    }

    /// Gives a key a new secret, returned once. The old one keeps verifying for `gracePeriodSeconds` (0: never).
    public func rotateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        keyID: APIKeyID,
        gracePeriodSeconds: Int
    ) async throws -> (key: APIKey, plaintext: String, previousSecretExpiresAt: UnixSeconds?) {
        let now = self.clock.now()
        let current = try await self.store.apiKey(organizationID: organizationID, projectID: projectID, id: keyID)
        let issued = self.issueSecret(current.owner.kind)
        let graceEndsAt = gracePeriodSeconds > 0 ? now + gracePeriodSeconds : nil
        let key = try await self.write {
            try await self.store.rotateAPIKey(
                organizationID: organizationID,
                projectID: projectID,
                id: keyID,
                secret: issued.secret,
                graceEndsAt: graceEndsAt,
                now: now
            )
        }
        return (key, issued.plaintext, graceEndsAt)
    }

    // MARK: Usage

    /// Writes batched uses (the server's usage recorder): each key's `last_used_at` becomes the later of its stored
    /// value and the given time. Not a change verification cares about: no change log entry.
    public func recordUses(apiKeys: [APIKeyID: UnixSeconds], adminKeys: [AdminKeyID: UnixSeconds]) async throws {
        try await self.store.recordUses(apiKeys: apiKeys, adminKeys: adminKeys)
    }

    /// Adds the gateway's batched usage (its usage recorder's) to what each minute has recorded: counts add up, so
    /// every replica writes its own batches. Not a change verification cares about: no change log entry, no audit
    /// event.
    public func recordModelUsage(_ usage: [ModelUsageKey: ModelUsageCounts]) async throws {
        try await self.store.recordModelUsage(usage)
    }

    // MARK: Upkeep

    /// Deletes change log entries recorded more than `retention` seconds ago; returns how many. A replica cut off for
    /// longer than that reloads its verification state when it comes back.
    @discardableResult
    public func pruneChangeLog(retention: Int) async throws -> Int {
        try await self.store.pruneChanges(before: self.clock.now() - retention)
    }
}
