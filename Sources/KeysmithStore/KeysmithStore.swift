public import KeysmithCore
import Synchronization

/// Everything Keysmith reads, behind one `Sendable` seam. Every method is organization-scoped where the data is: an
/// id from another organization is as unknown as an id that never existed. Lookups of a single object by path throw
/// ``KeysmithError/notFound(_:id:)``.
///
/// The server's route handlers hold only this view of the store: every write goes through the domain layer
/// (`Keysmith`), which holds the whole ``KeysmithStore``.
public protocol KeysmithStoreReader: VerificationStateReader {
    // MARK: Organizations and admin keys

    func defaultOrganization() async throws -> Organization?
    func organization(id: String) async throws -> Organization
    func adminKey(id: String, organizationID: String) async throws -> AdminKey
    func listAdminKeys(organizationID: String, descending: Bool, page: PageRequest) async throws -> Page<AdminKey>

    // MARK: Projects, users, members, service accounts, keys

    func project(id: String, organizationID: String) async throws -> Project
    func listProjects(organizationID: String, includeArchived: Bool, page: PageRequest) async throws -> Page<Project>
    func user(id: String, organizationID: String) async throws -> User
    /// Users in added order; with `emails`, only those (compared case-insensitively).
    func listUsers(organizationID: String, emails: [String], page: PageRequest) async throws -> Page<User>
    func projectMember(projectID: String, organizationID: String, userID: String) async throws -> ProjectMember
    func listProjectMembers(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ProjectMember>
    func serviceAccount(id: String, projectID: String, organizationID: String) async throws -> ServiceAccount
    func listServiceAccounts(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ServiceAccount>
    func apiKey(id: String, projectID: String, organizationID: String) async throws -> APIKey
    func listAPIKeys(
        projectID: String,
        organizationID: String,
        access: OwnerProjectAccess,
        page: PageRequest
    ) async throws -> Page<APIKey>

    // MARK: Invites and the audit log

    func invite(id: String, organizationID: String) async throws -> Invite
    /// Invites in the order they were sent.
    func listInvites(organizationID: String, page: PageRequest) async throws -> Page<Invite>
    /// The audit log, newest first: `after` pages towards older events, `before` towards newer ones.
    func listAuditLogs(
        organizationID: String,
        filter: AuditLogFilter,
        limit: Int,
        after: String?,
        before: String?
    ) async throws -> Page<AuditLogEntry>

    // MARK: Verification

    /// What is known about a secret that is not a current or previous secret of any key: revoked, or never issued.
    func revokedSecret(secretHash: String) async throws -> RevokedSecret?

    // MARK: Health

    /// Runs a trivial statement and checks that every migration this build knows is applied; throws otherwise.
    func checkReadiness() async throws
}

/// The whole store: reads and the writes that only the domain layer makes.
///
/// Methods that change data run in one transaction, with the checks that guard them (an archived project, a
/// membership) inside it, and record what they changed in the change log (``KeysmithChange``) and the audit log
/// (``AuditEvent``, with the task's ``AuditContext/actor``) in that same transaction, so that no write can forget to
/// tell verification about itself, and a failed write leaves no event.
public protocol KeysmithStore: KeysmithStoreReader, VerificationSource {
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
    func deleteAdminKey(id: String, organizationID: String) async throws

    // MARK: Projects

    func createProject(_ project: Project) async throws
    func updateProject(id: String, organizationID: String, name: String?, externalKeyID: String??) async throws -> Project
    func archiveProject(id: String, organizationID: String, at time: UnixSeconds) async throws -> Project

    // MARK: Users and project members

    func createUser(_ user: User) async throws
    /// Changes the user's organization role; the organization's last owner cannot stop being one.
    func updateUser(id: String, organizationID: String, role: OrganizationRole) async throws -> User
    /// Deletes the user and their project memberships; the keys they own stay, inactive. The organization's last
    /// owner cannot be deleted.
    func deleteUser(id: String, organizationID: String) async throws
    func addProjectMember(
        projectID: String,
        organizationID: String,
        userID: String,
        role: ProjectRole,
        at time: UnixSeconds
    ) async throws -> ProjectMember
    func updateProjectMember(projectID: String, organizationID: String, userID: String, role: ProjectRole) async throws -> ProjectMember
    func removeProjectMember(projectID: String, organizationID: String, userID: String) async throws

    // MARK: Invites

    /// Stores a pending invite. With `joinDefaultProject`, its projects are the organization's default project (its
    /// oldest active one) as a member, if it has one; otherwise every project named must be active. Returns the
    /// invite as stored.
    func createInvite(_ invite: Invite, joinDefaultProject: Bool) async throws -> Invite
    /// Deletes a pending or expired invite; an accepted one is refused.
    func deleteInvite(id: String, organizationID: String) async throws
    /// Accepts a pending invite: creates the user `userID` with the invite's email and role, and its memberships.
    func acceptInvite(
        id: String,
        organizationID: String,
        userID: String,
        name: String?,
        at time: UnixSeconds
    ) async throws -> (user: User, invite: Invite)

    // MARK: Service accounts

    /// Creates the account and, if given, its first key, in one transaction. The project must not be archived.
    func createServiceAccount(_ account: ServiceAccount, key: NewAPIKey?) async throws
    func updateServiceAccount(
        id: String,
        projectID: String,
        organizationID: String,
        name: String?,
        role: ProjectRole?
    ) async throws -> ServiceAccount
    /// Deletes the account and every key it owns.
    func deleteServiceAccount(id: String, projectID: String, organizationID: String) async throws

    // MARK: Project API keys

    /// Stores a key for a project member or a service account of an active project.
    func createAPIKey(_ key: NewAPIKey) async throws -> APIKey
    /// Deletes a user-owned key; a service account's key is refused (delete the service account instead).
    func deleteAPIKey(id: String, projectID: String, organizationID: String) async throws
    /// Replaces the scopes and/or the expiry (a double optional: `.some(nil)` clears it) of an unexpired key.
    func updateAPIKey(
        id: String,
        projectID: String,
        organizationID: String,
        scopes: [String]?,
        expiresAt: UnixSeconds??,
        now: UnixSeconds
    ) async throws -> APIKey

    /// Gives the key a new secret. With a grace period, the old secret keeps verifying until `graceEndsAt`; without
    /// one (`graceEndsAt` nil) it is revoked at once. A previous secret still in its grace period is revoked, so a
    /// key has at most one previous secret. Expired keys cannot be rotated.
    func rotateAPIKey(
        id: String,
        projectID: String,
        organizationID: String,
        secret: NewKeySecret,
        graceEndsAt: UnixSeconds?,
        now: UnixSeconds
    ) async throws -> APIKey

    /// Writes batched uses: each key's `last_used_at` becomes the later of its stored value and the given time.
    func recordUses(apiKeys: [String: UnixSeconds], adminKeys: [String: UnixSeconds]) async throws
}

/// The verification state and the change log that keeps it current: what the change feed reads, and the store's
/// readers too.
public protocol VerificationStateReader: Sendable {
    /// How far the change log can be read now. Read it before loading the verification state, then apply every
    /// change after it: the state is then never older than the log.
    func latestChangePosition() async throws -> ChangePosition
    /// Up to `limit` entries after `position`, in order, from one snapshot of the log (see ``ChangeBatch``).
    func changes(after position: ChangePosition, limit: Int) async throws -> ChangeBatch
    /// Every project key's verification state, in pages ordered by key id (`after`: the last id of the previous page).
    func keyVerificationStates(after keyID: String?, limit: Int) async throws -> [KeyVerificationState]
    /// The verification states of those of `keyIDs` that exist (at most a few hundred ids), in one read.
    func keyVerificationStates(keyIDs: [String]) async throws -> [KeyVerificationState]
    /// For each of `keyIDs` that has any, the digests of its secrets that no longer verify (deleted, or rotated out),
    /// in one read.
    func revokedSecretHashes(keyIDs: [String]) async throws -> [String: [String]]
    /// Whether the project is archived; nil when it does not exist.
    func isProjectArchived(projectID: String) async throws -> Bool?
    func isProjectMember(projectID: String, userID: String) async throws -> Bool
    /// Every admin key with its secret's digest.
    func adminKeyCredentials() async throws -> [AdminKeyCredential]
    func adminKeyCredential(id: String) async throws -> AdminKeyCredential?
}

/// What the change feed works from: the reads of ``VerificationStateReader``, and the change log's own upkeep
/// (pruning, notifications). ``SQLStore`` is one; a test can put faults in front of it.
public protocol VerificationSource: VerificationStateReader {
    /// Deletes change log entries recorded before `time`; returns how many.
    @discardableResult func pruneChanges(before time: UnixSeconds) async throws -> Int
    /// Whether other processes' writes are pushed to this one as they commit (PostgreSQL's LISTEN/NOTIFY); when
    /// not (SQLite), the change feed polls.
    var pushesChanges: Bool { get }
    /// Listens for committed changes on a connection of its own: calls `onListening` once the connection listens,
    /// then `onNotification` for each notification, until the task is cancelled (returns) or the connection fails
    /// (throws).
    func listenForChanges(
        onListening: @escaping @Sendable () async -> Void,
        onNotification: @escaping @Sendable () async -> Void
    ) async throws
}

/// The changes a write recorded in the change log, gathered while it runs: the domain layer sets one around each
/// write (``ChangeReceipt/collecting(_:)``), and the store adds to it in the write's transaction, so that after the
/// commit the domain knows what to make sure verification has applied, and where in the log it was recorded. A
/// write run again after a deadlock may leave the changes of its rolled-back attempt here too, which is harmless:
/// applying a change reads its object's current state; the position kept is the highest, the attempt that committed.
public final class ChangeReceipt: Sendable {
    @TaskLocal static var current: ChangeReceipt?

    private let recorded = Mutex<(changes: [KeysmithChange], position: ChangePosition?)>(([], nil))

    public init() {}

    /// What the writes run in this receipt recorded, without repeats.
    public var changes: [KeysmithChange] {
        self.recorded.withLock { Array(Set($0.changes)) }
    }

    /// The last position in the change log those writes recorded at; nil when they recorded nothing.
    public var position: ChangePosition? {
        self.recorded.withLock { $0.position }
    }

    /// Runs `body`, this receipt collecting the changes its writes record.
    public func collecting<T>(_ body: () async throws -> T) async rethrows -> T {
        try await Self.$current.withValue(self) { try await body() }
    }

    func record(_ changes: [KeysmithChange], at position: ChangePosition?) {
        self.recorded.withLock { recorded in
            recorded.changes.append(contentsOf: changes)
            if let position { recorded.position = max(recorded.position ?? position, position) }
        }
    }
}
