public import KeysmithCore

/// Everything Keysmith keeps, behind one `Sendable` seam. Every method is organization-scoped where the data is:
/// an id from another organization is as unknown as an id that never existed.
///
/// Methods that change data run in one transaction, with the checks that guard them (an archived project, a
/// membership) inside it. Lookups of a single object by path throw ``KeysmithError/notFound(resource:id:)``.
public protocol KeysmithStore: Sendable {
    // MARK: Setup

    /// Applies pending migrations; returns the names applied.
    @discardableResult func migrate() async throws -> [String]

    /// The HMAC secret keys are hashed with: `override` if given (checked against the fingerprint recorded on
    /// first start), else the one generated on first start and kept in the database.
    func serverSecret(override: [UInt8]?) async throws -> [UInt8]

    /// On an empty database, creates the default organization and, if given, an admin key in it, in one
    /// transaction, and returns true; on a database that has an organization, does nothing and returns false.
    func bootstrap(organization: Organization, adminKey: (key: AdminKey, secretHash: String)?) async throws -> Bool

    func defaultOrganization() async throws -> Organization?
    func createOrganization(_ organization: Organization) async throws
    func organization(id: String) async throws -> Organization

    // MARK: Admin keys

    func createAdminKey(_ key: AdminKey, secretHash: String) async throws
    func adminKey(secretHash: String) async throws -> AdminKey?
    func adminKey(id: String, organizationID: String) async throws -> AdminKey
    func listAdminKeys(organizationID: String, descending: Bool, page: PageRequest) async throws -> Page<AdminKey>
    func deleteAdminKey(id: String, organizationID: String) async throws

    // MARK: Projects

    func createProject(_ project: Project) async throws
    func project(id: String, organizationID: String) async throws -> Project
    func listProjects(organizationID: String, includeArchived: Bool, page: PageRequest) async throws -> Page<Project>
    func updateProject(id: String, organizationID: String, name: String?, externalKeyID: String??) async throws -> Project
    func archiveProject(id: String, organizationID: String, at time: UnixSeconds) async throws -> Project

    // MARK: Users and project members

    func createUser(_ user: User) async throws
    func user(id: String, organizationID: String) async throws -> User
    func listUsers(organizationID: String, emails: [String], page: PageRequest) async throws -> Page<User>

    func addProjectMember(
        projectID: String,
        organizationID: String,
        userID: String,
        role: String,
        at time: UnixSeconds
    ) async throws -> ProjectMember
    func projectMember(projectID: String, organizationID: String, userID: String) async throws -> ProjectMember
    func listProjectMembers(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ProjectMember>
    func updateProjectMember(projectID: String, organizationID: String, userID: String, role: String) async throws -> ProjectMember
    func removeProjectMember(projectID: String, organizationID: String, userID: String) async throws

    // MARK: Service accounts

    /// Creates the account and, if given, its first key, in one transaction. The project must not be archived.
    func createServiceAccount(_ account: ServiceAccount, key: NewAPIKey?) async throws
    func serviceAccount(id: String, projectID: String, organizationID: String) async throws -> ServiceAccount
    func listServiceAccounts(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ServiceAccount>
    func updateServiceAccount(
        id: String,
        projectID: String,
        organizationID: String,
        name: String?,
        role: String?
    ) async throws -> ServiceAccount
    /// Deletes the account and every key it owns.
    func deleteServiceAccount(id: String, projectID: String, organizationID: String) async throws

    // MARK: Project API keys

    /// Stores a key for a project member or a service account of an active project.
    func createAPIKey(_ key: NewAPIKey) async throws -> APIKey
    func apiKey(id: String, projectID: String, organizationID: String) async throws -> APIKey
    func listAPIKeys(
        projectID: String,
        organizationID: String,
        access: OwnerProjectAccess,
        page: PageRequest
    ) async throws -> Page<APIKey>
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

    // MARK: Verification

    /// Everything known about a secret's digest: its key (current or previous secret), a revocation, or nothing.
    func lookUp(secretHash: String) async throws -> KeyLookup

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
