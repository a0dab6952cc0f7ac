import HTTPTypes
import KeysmithCore
import Synchronization

/// Every project key's and admin key's verification state, in memory, keyed by the digest of each secret.
///
/// The index is complete: it is loaded from the store when the server starts and kept current by the change log
/// (``ChangeFeed``), so a secret it does not hold was never issued, or no longer verifies. A check therefore never
/// reads the database, whether the key is good, forged or revoked, and keeps answering from the last known state
/// while the database is unreachable.
///
/// Changes cost what they touch, never a scan: a key's change replaces that key's entries; archiving a project or
/// a user leaving it flips one flag that all the affected keys share (``ProjectState``, ``OwnerState``).
///
/// Lookups take the lock of one of ``shardCount`` shards, chosen by the digest, so that checks on different cores
/// rarely meet, and a shard that grows rehashes only its own share of the keys while its lock is held.
final class VerificationIndex: Sendable {
    static let shardCount = 256

    /// A key's previous secret during its rotation's grace period.
    struct PreviousSecret: Sendable {
        var key: IndexedKey
        var expiresAt: UnixSeconds
    }

    /// What the index holds for a digest.
    enum Entry: Sendable {
        case current(IndexedKey)
        case previous(IndexedKey, expiresAt: UnixSeconds)
    }

    /// One shard's keys: current secrets and, in a far smaller table, previous ones.
    struct Tables: Sendable {
        var current: [KeyDigest: IndexedKey] = [:]
        var previous: [KeyDigest: PreviousSecret] = [:]

        /// Files `key` under its current secret and, during a grace period, its previous one; a secret that moved
        /// from current to previous (or back) leaves the other table.
        mutating func insertCurrent(_ digest: KeyDigest, _ key: IndexedKey) {
            self.current[digest] = key
            self.previous[digest] = nil
        }

        mutating func insertPrevious(_ digest: KeyDigest, _ secret: PreviousSecret) {
            self.previous[digest] = secret
            self.current[digest] = nil
        }

        mutating func remove(_ digest: KeyDigest) {
            self.current[digest] = nil
            self.previous[digest] = nil
        }
    }

    private final class Shard: Sendable {
        let tables = Mutex(Tables())
    }

    /// The shared state objects, by what they describe. Only whoever applies changes touches it, one at a time.
    struct Registry: Sendable {
        var projects: [ProjectID: ProjectState] = [:]
        var owners: [OwnerState.Key: OwnerState] = [:]
        /// The model permissions of every project that has any, keys or not, so that a project's first key starts
        /// with them.
        var modelPermissions: [ProjectID: ModelPermissions] = [:]
        /// Likewise the rate limit settings of every project that has any, by model.
        var rateLimitSettings: [ProjectID: [String: RateLimitSettings]] = [:]

        /// Records a project's own rate limit settings (empty: none) and gives them to its shared state.
        mutating func setRateLimitSettings(_ projectID: ProjectID, _ settings: [String: RateLimitSettings]) {
            self.rateLimitSettings[projectID] = settings.isEmpty ? nil : settings
            self.projects[projectID]?.setRateLimitSettings(settings)
        }

        /// Records a project's model permissions (nil: none) and gives them to its shared state, if it has keys.
        mutating func setModelPermissions(_ projectID: ProjectID, _ permissions: ModelPermissions?) {
            self.modelPermissions[projectID] = permissions
            self.projects[projectID]?.setModelPermissions(permissions)
        }

        /// The key's entry, with its project's and owner's shared state brought up to date from `state` (which was
        /// read no earlier than any state applied before it).
        mutating func makeKey(_ state: KeyVerificationState) -> IndexedKey {
            let project: ProjectState
            if let existing = self.projects[state.projectID] {
                project = existing
            } else {
                project = ProjectState(id: state.projectID, organizationID: state.organizationID)
                project.setModelPermissions(self.modelPermissions[state.projectID])
                project.setRateLimitSettings(self.rateLimitSettings[state.projectID] ?? [:])
                self.projects[state.projectID] = project
            }
            project.setArchived(state.isProjectArchived)
            let ownerKey = OwnerState.Key(type: state.ownerType, projectID: state.projectID, ownerID: state.ownerID)
            let owner: OwnerState
            if let existing = self.owners[ownerKey] {
                owner = existing
            } else {
                owner = OwnerState(type: state.ownerType, id: state.ownerID)
                self.owners[ownerKey] = owner
            }
            owner.setProjectAccess(state.ownerHasProjectAccess)
            return IndexedKey(
                id: state.keyID,
                project: project,
                owner: owner,
                scopes: state.scopes,
                expiresAt: state.expiresAt,
                rateLimits: state.rateLimits.map(KeyRateLimits.init)
            )
        }
    }

    /// Admin keys: few, kept in one table, with each key's digest by id so that a deletion can find it.
    struct AdminKeys: Sendable {
        var byDigest: [KeyDigest: AdminKey] = [:]
        var digestByID: [AdminKeyID: KeyDigest] = [:]

        mutating func insert(_ credential: AdminKeyCredential) {
            guard let digest = KeyDigest(hex: credential.secretHash) else { return }
            self.remove(id: credential.key.id)
            self.byDigest[digest] = credential.key
            self.digestByID[credential.key.id] = digest
        }

        mutating func remove(id: AdminKeyID) {
            guard let digest = self.digestByID.removeValue(forKey: id) else { return }
            self.byDigest[digest] = nil
        }
    }

    private let shards: [Shard]
    private let registry = Mutex(Registry())
    private let admin = Mutex(AdminKeys())

    init() {
        self.shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    fileprivate static func shardIndex(_ digest: KeyDigest) -> Int {
        // The digest is uniformly random (HMAC output), so any of its bits pick a shard fairly.
        Int(truncatingIfNeeded: digest.firstWord) & (shardCount - 1)
    }

    // MARK: Lookups (every check)

    func entry(_ digest: KeyDigest) -> Entry? {
        self.shards[Self.shardIndex(digest)].tables.withLock { tables in
            if let key = tables.current[digest] { return .current(key) }
            if let previous = tables.previous[digest] { return .previous(previous.key, expiresAt: previous.expiresAt) }
            return nil
        }
    }

    func adminKey(_ digest: KeyDigest) -> AdminKey? {
        self.admin.withLock { $0.byDigest[digest] }
    }

    /// An admin key by id, while it exists: what a dashboard session checks on every request.
    func adminKey(id: AdminKeyID) -> AdminKey? {
        self.admin.withLock { admin in admin.digestByID[id].flatMap { admin.byDigest[$0] } }
    }

    /// How many secrets the index holds: current project key secrets, previous ones in a grace period, admin keys.
    var counts: (current: Int, previous: Int, admin: Int) {
        var current = 0
        var previous = 0
        for shard in self.shards {
            shard.tables.withLock { tables in
                current += tables.current.count
                previous += tables.previous.count
            }
        }
        return (current, previous, self.admin.withLock { $0.byDigest.count })
    }

    // MARK: Changes (one applier at a time: the ChangeFeed)

    /// A whole index, built aside (while checks go on answering from the one in place) and then installed.
    struct Builder: Sendable {
        fileprivate var registry = Registry()
        fileprivate var tables = [Tables](repeating: Tables(), count: VerificationIndex.shardCount)
        fileprivate var admin = AdminKeys()

        mutating func add(_ state: KeyVerificationState) {
            let key = self.registry.makeKey(state)
            VerificationIndex.file(key, state) { shard, update in update(&self.tables[shard]) }
        }

        mutating func add(_ credential: AdminKeyCredential) {
            self.admin.insert(credential)
        }

        mutating func add(_ permissions: ModelPermissions, projectID: ProjectID) {
            self.registry.setModelPermissions(projectID, permissions)
        }

        mutating func add(_ settings: [String: RateLimitSettings], projectID: ProjectID) {
            self.registry.setRateLimitSettings(projectID, settings)
        }
    }

    /// Replaces the whole index with `built`, shard by shard: each check sees the old state or the new one.
    func install(_ built: Builder) {
        for (shard, tables) in zip(self.shards, built.tables) {
            shard.tables.withLock { $0 = tables }
        }
        self.registry.withLock { $0 = built.registry }
        self.admin.withLock { $0 = built.admin }
    }

    /// Brings one key up to date: its revoked secrets leave the index, and its current state (nil once the key is
    /// deleted) replaces whatever the index had for its secrets.
    func updateKey(_ state: KeyVerificationState?, revokedSecretHashes: [String]) {
        for hash in revokedSecretHashes {
            guard let digest = KeyDigest(hex: hash) else { continue }
            self.shards[Self.shardIndex(digest)].tables.withLock { $0.remove(digest) }
        }
        guard let state else { return }
        let key = self.registry.withLock { $0.makeKey(state) }
        Self.file(key, state) { shard, update in self.shards[shard].tables.withLock { update(&$0) } }
    }

    /// Files `key` under its current secret and, during a rotation's grace period, its previous one, each in the
    /// tables of its shard, which `update` gives access to.
    fileprivate static func file(
        _ key: IndexedKey,
        _ state: KeyVerificationState,
        _ update: (_ shard: Int, _ change: (inout Tables) -> Void) -> Void
    ) {
        if let digest = KeyDigest(hex: state.secretHash) {
            update(self.shardIndex(digest)) { $0.insertCurrent(digest, key) }
        }
        if let hash = state.previousSecretHash, let digest = KeyDigest(hex: hash) {
            let previous = PreviousSecret(key: key, expiresAt: state.previousSecretExpiresAt ?? 0)
            update(self.shardIndex(digest)) { $0.insertPrevious(digest, previous) }
        }
    }

    /// Takes every secret of the keys `ids` out of the index, found by looking through every shard: what the feed
    /// does when a write's changes to these keys cannot be read (``ChangeFeed``), a failure path, never a check's.
    func suspendKeys(_ ids: Set<APIKeyID>) {
        for shard in self.shards {
            shard.tables.withLock { tables in
                tables.current = tables.current.filter { !ids.contains($0.value.id) }
                tables.previous = tables.previous.filter { !ids.contains($0.value.key.id) }
            }
        }
    }

    func setProjectArchived(_ projectID: ProjectID, _ isArchived: Bool) {
        self.registry.withLock { $0.projects[projectID] }?.setArchived(isArchived)
    }

    /// A project's model permissions changed: nil, it has none now.
    func setModelPermissions(_ projectID: ProjectID, _ permissions: ModelPermissions?) {
        self.registry.withLock { $0.setModelPermissions(projectID, permissions) }
    }

    func setRateLimitSettings(_ projectID: ProjectID, _ settings: [String: RateLimitSettings]) {
        self.registry.withLock { $0.setRateLimitSettings(projectID, settings) }
    }

    func setProjectAccess(projectID: ProjectID, userID: UserID, _ hasAccess: Bool) {
        let key = OwnerState.Key(type: .user, projectID: projectID, ownerID: userID.rawValue)
        self.registry.withLock { $0.owners[key] }?.setProjectAccess(hasAccess)
    }

    /// Brings one admin key up to date: `credential` nil means it was deleted.
    func updateAdminKey(id: AdminKeyID, _ credential: AdminKeyCredential?) {
        self.admin.withLock { admin in
            if let credential { admin.insert(credential) } else { admin.remove(id: id) }
        }
    }
}

/// A project's verification state, shared by all of its keys.
final class ProjectState: Sendable {
    let id: ProjectID
    let organizationID: OrganizationID
    private let archived = Atomic(false)
    private let permissions = Mutex<ModelPermissions?>(nil)
    private let rateLimits = Mutex<[String: RateLimitSettings]>([:])

    init(id: ProjectID, organizationID: OrganizationID) {
        self.id = id
        self.organizationID = organizationID
    }

    var isArchived: Bool { self.archived.load(ordering: .acquiring) }

    func setArchived(_ value: Bool) {
        self.archived.store(value, ordering: .releasing)
    }

    /// The models the project's keys may use; nil when it has no model permissions (every model).
    var modelPermissions: ModelPermissions? { self.permissions.withLock { $0 } }

    func setModelPermissions(_ value: ModelPermissions?) {
        self.permissions.withLock { $0 = value }
    }

    /// The project's own rate limit settings by model, over the operator's defaults (``RateLimitSettings/over(_:)``).
    var rateLimitSettings: [String: RateLimitSettings] { self.rateLimits.withLock { $0 } }

    func setRateLimitSettings(_ value: [String: RateLimitSettings]) {
        self.rateLimits.withLock { $0 = value }
    }
}

/// A key owner's standing in a project, shared by all of the owner's keys there.
final class OwnerState: Sendable {
    /// A user is a member of each project separately; a service account belongs to one project.
    struct Key: Hashable, Sendable {
        var type: APIKeyOwnerType
        var projectID: ProjectID
        var ownerID: String
    }

    let type: APIKeyOwnerType
    let id: String
    private let access = Atomic(true)

    init(type: APIKeyOwnerType, id: String) {
        self.type = type
        self.id = id
    }

    /// False for a user who left the project: their keys stay, and stop verifying.
    var hasProjectAccess: Bool { self.access.load(ordering: .acquiring) }

    func setProjectAccess(_ value: Bool) {
        self.access.store(value, ordering: .releasing)
    }
}

/// One project key as verification knows it. Immutable: a change to the key replaces it in the index.
final class IndexedKey: Sendable {
    let id: APIKeyID
    let project: ProjectState
    let owner: OwnerState
    /// Empty means unrestricted.
    let scopes: [String]
    let expiresAt: UnixSeconds?
    /// The key's own rate limits; nil (one pointer, for the many keys without) when it has none. A change to them
    /// replaces the key in the index.
    let rateLimits: KeyRateLimits?
    /// The identity headers a good check answers with, made on the key's first good check and kept: most keys in a
    /// large index are rarely used, so making them all up front would cost memory for nothing.
    private let headers = Mutex<HTTPFields?>(nil)

    init(id: APIKeyID, project: ProjectState, owner: OwnerState, scopes: [String], expiresAt: UnixSeconds?, rateLimits: KeyRateLimits? = nil) {
        self.id = id
        self.project = project
        self.owner = owner
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.rateLimits = rateLimits
    }

    var identityHeaders: HTTPFields {
        self.headers.withLock { headers in
            if let headers { return headers }
            var made = HTTPFields()
            made.reserveCapacity(6)
            made[.keysmithOrganizationID] = self.project.organizationID.rawValue
            made[.keysmithProjectID] = self.project.id.rawValue
            made[.keysmithKeyID] = self.id.rawValue
            made[.keysmithOwnerType] = self.owner.type.rawValue
            made[.keysmithOwnerID] = self.owner.id
            made[.keysmithScopes] = self.scopes.joined(separator: ",")
            headers = made
            return made
        }
    }
}

/// A key's own rate limits, held by reference so that a key without any costs one pointer.
final class KeyRateLimits: Sendable {
    let limits: APIKeyRateLimits

    init(_ limits: APIKeyRateLimits) {
        self.limits = limits
    }
}
