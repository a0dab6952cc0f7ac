import KeysmithCore
import Logging
import Synchronization

/// The whole store: reads and the writes that only the domain layer makes.
///
/// Methods that change data run in one transaction, with the checks that guard them (an archived project, a
/// membership) inside it, and record what they changed in the change log (``KeysmithChange``) and the audit log
/// (``AuditEvent``, with the task's ``AuditContext/actor``) in that same transaction, so that no write can forget to
/// tell verification about itself, and a failed write leaves no event.
protocol KeysmithStore: KeysmithStoreReader, VerificationSource {
    /// This store, what its statements meet logged to `logger` (a request's, so that its lines carry the request id).
    func logging(to logger: Logger) -> any KeysmithStore

    // MARK: Setup

    /// Applies pending migrations; returns the names applied.
    @discardableResult func migrate() async throws -> [String]

    /// The HMAC secret keys are hashed with: `override` if given (checked against the fingerprint recorded on
    /// first start), else the one generated on first start and kept in the database.
    func serverSecret(override: [UInt8]?) async throws -> [UInt8]

    /// On an empty database, creates the default organization and, if given, an admin key in it, in one
    /// transaction, and returns true; on a database that has an organization, does nothing and returns false.
    func bootstrap(organization: Organization, adminKey: (key: AdminKey, secretHash: String)?) async throws -> Bool

    func createOrganization(_ organization: Organization) async throws

    // MARK: Admin keys

    func createAdminKey(_ key: AdminKey, secretHash: String) async throws
    func deleteAdminKey(organizationID: OrganizationID, id: AdminKeyID) async throws

    // MARK: Projects

    func createProject(_ project: Project) async throws
    func updateProject(organizationID: OrganizationID, id: ProjectID, name: String?, externalKeyID: String??) async throws -> Project
    func archiveProject(organizationID: OrganizationID, id: ProjectID, at time: UnixSeconds) async throws -> Project
    /// Sets the model permissions of an active project, replacing any it had; returns them as stored.
    func setModelPermissions(organizationID: OrganizationID, projectID: ProjectID, _ permissions: ModelPermissions) async throws
        -> ModelPermissions
    /// Removes a project's model permissions, if it has any.
    func deleteModelPermissions(organizationID: OrganizationID, projectID: ProjectID) async throws
    /// Changes an active project's rate limit settings for `model` (each value given replaces the stored one); returns
    /// the settings as stored. Audited as `rate_limit.updated` of `rateLimitID`.
    func updateRateLimit(
        organizationID: OrganizationID,
        projectID: ProjectID,
        model: String,
        rateLimitID: String,
        _ changes: RateLimitSettings
    ) async throws -> RateLimitSettings
    /// Changes a key's own rate limits (each value given replaces the stored one; 0: none); returns them as stored.
    func updateAPIKeyRateLimits(organizationID: OrganizationID, projectID: ProjectID, keyID: APIKeyID, _ changes: APIKeyRateLimits)
        async throws -> APIKeyRateLimits

    // MARK: Users and project members

    func createUser(_ user: User) async throws
    /// Changes the user's organization role; the organization's last owner cannot stop being one.
    func updateUser(organizationID: OrganizationID, id: UserID, role: OrganizationRole) async throws -> User
    /// Deletes the user and their project memberships; the keys they own stay, inactive. The organization's last
    /// owner cannot be deleted.
    func deleteUser(organizationID: OrganizationID, id: UserID) async throws
    func addProjectMember(
        organizationID: OrganizationID,
        projectID: ProjectID,
        userID: UserID,
        role: ProjectRole,
        at time: UnixSeconds
    ) async throws -> ProjectMember
    func updateProjectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID, role: ProjectRole) async throws -> ProjectMember
    func removeProjectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID) async throws

    // MARK: Invites

    /// Stores a pending invite. With `joinDefaultProject`, its projects are the organization's default project (its
    /// oldest active one) as a member, if it has one; otherwise every project named must be active. Returns the
    /// invite as stored.
    func createInvite(_ invite: Invite, joinDefaultProject: Bool) async throws -> Invite
    /// Deletes a pending or expired invite; an accepted one is refused.
    func deleteInvite(organizationID: OrganizationID, id: InviteID) async throws
    /// Accepts a pending invite: creates the user `userID` with the invite's email and role, and its memberships.
    func acceptInvite(
        organizationID: OrganizationID,
        id: InviteID,
        userID: UserID,
        name: String?,
        at time: UnixSeconds
    ) async throws -> (user: User, invite: Invite)

    // MARK: Service accounts

    /// Creates the account and, if given, its first key, in one transaction. The project must not be archived.
    func createServiceAccount(_ account: ServiceAccount, key: NewAPIKey?) async throws
    func updateServiceAccount(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: ServiceAccountID,
        name: String?,
        role: ProjectRole?
    ) async throws -> ServiceAccount
    /// Deletes the account and every key it owns.
    func deleteServiceAccount(organizationID: OrganizationID, projectID: ProjectID, id: ServiceAccountID) async throws

    // MARK: Project API keys

    /// Stores a key for a project member or a service account of an active project.
    func createAPIKey(_ key: NewAPIKey) async throws -> APIKey
    /// Deletes a user-owned key; a service account's key is refused (delete the service account instead).
    func deleteAPIKey(organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws
    /// Replaces the scopes and/or the expiry (a double optional: `.some(nil)` clears it) of an unexpired key.
    func updateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: APIKeyID,
        scopes: [String]?,
        expiresAt: UnixSeconds??,
        now: UnixSeconds
    ) async throws -> APIKey

    /// Gives the key a new secret. With a grace period, the old secret keeps verifying until `graceEndsAt`; without
    /// one (`graceEndsAt` nil) it is revoked at once. A previous secret still in its grace period is revoked, so a
    /// key has at most one previous secret. Expired keys cannot be rotated.
    func rotateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: APIKeyID,
        secret: NewKeySecret,
        graceEndsAt: UnixSeconds?,
        now: UnixSeconds
    ) async throws -> APIKey

    /// Writes batched uses: each key's `last_used_at` becomes the later of its stored value and the given time.
    func recordUses(apiKeys: [APIKeyID: UnixSeconds], adminKeys: [AdminKeyID: UnixSeconds]) async throws
    /// Adds a batch of the gateway's usage to each minute's counts.
    func recordModelUsage(_ usage: [ModelUsageKey: ModelUsageCounts]) async throws

    // MARK: Upkeep

    /// Deletes change log entries recorded before `time`; returns how many.
    @discardableResult func pruneChanges(before time: UnixSeconds) async throws -> Int
}

/// The changes a write recorded in the change log, gathered while it runs: the domain layer sets one around each
/// write (``ChangeReceipt/collecting(_:)``), and the store adds to it in the write's transaction, so that after the
/// commit the domain knows what to make sure verification has applied, and where in the log it was recorded. A
/// write run again after a deadlock may leave the changes of its rolled-back attempt here too, which is harmless:
/// applying a change reads its object's current state; the position kept is the highest, the attempt that committed.
final class ChangeReceipt: Sendable {
    @TaskLocal static var current: ChangeReceipt?

    private let recorded = Mutex<(changes: [KeysmithChange], position: ChangePosition?)>(([], nil))

    init() {}

    /// What the writes run in this receipt recorded, without repeats.
    var changes: [KeysmithChange] {
        self.recorded.withLock { Array(Set($0.changes)) }
    }

    /// The last position in the change log those writes recorded at; nil when they recorded nothing.
    var position: ChangePosition? {
        self.recorded.withLock { $0.position }
    }

    /// Runs `body`, this receipt collecting the changes its writes record.
    func collecting<T>(_ body: () async throws -> T) async rethrows -> T {
        try await Self.$current.withValue(self) { try await body() }
    }

    func record(_ changes: [KeysmithChange], at position: ChangePosition?) {
        self.recorded.withLock { recorded in
            recorded.changes.append(contentsOf: changes)
            if let position { recorded.position = max(recorded.position ?? position, position) }
        }
    }
}
