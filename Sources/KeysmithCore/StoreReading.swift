// What the domain layer and the server read from the database, and the verification state's sources: the store
// (in KeysmithDomain, internal to it) implements these; the server sees the database only through them and the
// domain's operations, so that no handler can reach a write.

/// Everything Keysmith reads, behind one `Sendable` seam. Every method is organization-scoped where the data is: an
/// id from another organization is as unknown as an id that never existed. Lookups of a single object by path throw
/// ``KeysmithError/notFound(_:id:)``.
///
/// The server's route handlers hold only this view of the store: every write goes through the domain layer
/// (`Keysmith`), which holds the whole ``KeysmithStore``.
public protocol KeysmithStoreReader: VerificationStateReader {
    // MARK: Organizations and admin keys

    func defaultOrganization() async throws -> Organization?
    func organization(id: OrganizationID) async throws -> Organization
    func adminKey(organizationID: OrganizationID, id: AdminKeyID) async throws -> AdminKey
    func listAdminKeys(organizationID: OrganizationID, descending: Bool, page: PageRequest) async throws -> Page<AdminKey>

    // MARK: Projects, users, members, service accounts, keys

    func project(organizationID: OrganizationID, id: ProjectID) async throws -> Project
    func listProjects(organizationID: OrganizationID, includeArchived: Bool, page: PageRequest) async throws -> Page<Project>
    /// The project's model permissions; nil when it has none (every model is permitted).
    func modelPermissions(organizationID: OrganizationID, projectID: ProjectID) async throws -> ModelPermissions?
    /// The project's own rate limit settings, by model (what it changed from the operator's defaults).
    func rateLimitSettings(organizationID: OrganizationID, projectID: ProjectID) async throws -> [String: RateLimitSettings]
    /// A key's own rate limits (0 for none); a key not in the project is not found.
    func apiKeyRateLimits(organizationID: OrganizationID, projectID: ProjectID, keyID: APIKeyID) async throws -> APIKeyRateLimits
    func user(organizationID: OrganizationID, id: UserID) async throws -> User
    /// Users in added order; with `emails`, only those (compared case-insensitively).
    func listUsers(organizationID: OrganizationID, emails: [String], page: PageRequest) async throws -> Page<User>
    func projectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID) async throws -> ProjectMember
    func listProjectMembers(organizationID: OrganizationID, projectID: ProjectID, page: PageRequest) async throws -> Page<ProjectMember>
    func serviceAccount(organizationID: OrganizationID, projectID: ProjectID, id: ServiceAccountID) async throws -> ServiceAccount
    func listServiceAccounts(organizationID: OrganizationID, projectID: ProjectID, page: PageRequest) async throws -> Page<ServiceAccount>
    func apiKey(organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws -> APIKey
    func listAPIKeys(
        organizationID: OrganizationID,
        projectID: ProjectID,
        access: OwnerProjectAccess,
        page: PageRequest
    ) async throws -> Page<APIKey>

    // MARK: Invites and the audit log

    func invite(organizationID: OrganizationID, id: InviteID) async throws -> Invite
    /// Invites in the order they were sent.
    func listInvites(organizationID: OrganizationID, page: PageRequest) async throws -> Page<Invite>
    /// The audit log, newest first: `after` pages towards older events, `before` towards newer ones.
    func listAuditLogs(
        organizationID: OrganizationID,
        filter: AuditLogFilter,
        limit: Int,
        after: String?,
        before: String?
    ) async throws -> Page<AuditLogEntry>

    // MARK: Model usage

    /// The usage the gateway recorded in `query`'s range, summed per bucket and group, ordered by bucket; buckets
    /// with nothing recorded have no totals.
    func usage(_ query: UsageQuery) async throws -> [UsageTotals]

    // MARK: Verification

    /// What is known about a secret that is not a current or previous secret of any key: revoked, or never issued.
    func revokedSecret(secretHash: String) async throws -> RevokedSecret?

    // MARK: Health

    /// Runs a trivial statement and checks that every migration this build knows is applied; throws otherwise.
    func checkReadiness() async throws
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
    func keyVerificationStates(after keyID: APIKeyID?, limit: Int) async throws -> [KeyVerificationState]
    /// The verification states of those of `keyIDs` that exist (at most a few hundred ids), in one read.
    func keyVerificationStates(keyIDs: [APIKeyID]) async throws -> [KeyVerificationState]
    /// For each of `keyIDs` that has any, the digests of its secrets that no longer verify (deleted, or rotated out),
    /// in one read.
    func revokedSecretHashes(keyIDs: [APIKeyID]) async throws -> [APIKeyID: [String]]
    /// Whether the project is archived; nil when it does not exist.
    func isProjectArchived(projectID: ProjectID) async throws -> Bool?
    func isProjectMember(projectID: ProjectID, userID: UserID) async throws -> Bool
    /// The project's model permissions; nil when it has none (or does not exist).
    func modelPermissions(projectID: ProjectID) async throws -> ModelPermissions?
    /// The model permissions of every project that has any.
    func everyProjectsModelPermissions() async throws -> [ProjectID: ModelPermissions]
    /// The project's own rate limit settings, by model; empty when it has none (or does not exist).
    func rateLimitSettings(projectID: ProjectID) async throws -> [String: RateLimitSettings]
    /// The rate limit settings of every project that has any.
    func everyProjectsRateLimitSettings() async throws -> [ProjectID: [String: RateLimitSettings]]
    /// Every admin key with its secret's digest.
    func adminKeyCredentials() async throws -> [AdminKeyCredential]
    func adminKeyCredential(id: AdminKeyID) async throws -> AdminKeyCredential?
}

/// What the change feed works from: the reads of ``VerificationStateReader``, and the change log's notifications. ``SQLStore`` is one; a test can put faults in front of it.
public protocol VerificationSource: VerificationStateReader {
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

/// Told about every statement an engine runs: how long it took from being asked for to its last row (queueing for
/// a connection included, as the caller waits for it), and whether it failed. For metrics.
public struct SQLStatementObserver: Sendable {
    public var statementFinished: @Sendable (_ duration: Duration, _ failed: Bool) -> Void

    public init(statementFinished: @escaping @Sendable (_ duration: Duration, _ failed: Bool) -> Void) {
        self.statementFinished = statementFinished
    }
}
