/// Timestamps are Unix seconds throughout, as in OpenAI's objects.
public typealias UnixSeconds = Int

/// A tenant. Every other object belongs to exactly one organization, and an admin key sees only its own.
public struct Organization: Sendable, Equatable {
    public var id: OrganizationID
    public var name: String
    public var createdAt: UnixSeconds

    public init(id: OrganizationID, name: String, createdAt: UnixSeconds) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

public struct Project: Sendable, Equatable {
    public var id: ProjectID
    public var organizationID: OrganizationID
    public var name: String
    public var createdAt: UnixSeconds
    public var archivedAt: UnixSeconds?
    public var externalKeyID: String?
    public var residency: String?

    public var isArchived: Bool { self.archivedAt != nil }

    public init(
        id: ProjectID,
        organizationID: OrganizationID,
        name: String,
        createdAt: UnixSeconds,
        archivedAt: UnixSeconds? = nil,
        externalKeyID: String? = nil,
        residency: String? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.createdAt = createdAt
        self.archivedAt = archivedAt
        self.externalKeyID = externalKeyID
        self.residency = residency
    }
}

/// A person's role in an organization.
public enum OrganizationRole: String, Sendable, CaseIterable, Codable {
    case owner
    case reader
}

/// A user's or a service account's role in a project.
public enum ProjectRole: String, Sendable, CaseIterable, Codable {
    case owner
    case member
}

/// A service account's role: a project role, or `none` for an account created without default roles
/// (`create_service_account_only`).
public enum ServiceAccountRole: String, Sendable, CaseIterable, Codable {
    case owner
    case member
    case none

    public init(_ role: ProjectRole) {
        switch role {
        case .owner: self = .owner
        case .member: self = .member
        }
    }
}

/// A person in an organization.
public struct User: Sendable, Equatable {
    public var id: UserID
    public var organizationID: OrganizationID
    public var email: String
    public var name: String?
    public var role: OrganizationRole
    public var addedAt: UnixSeconds

    public init(id: UserID, organizationID: OrganizationID, email: String, name: String?, role: OrganizationRole, addedAt: UnixSeconds) {
        self.id = id
        self.organizationID = organizationID
        self.email = email
        self.name = name
        self.role = role
        self.addedAt = addedAt
    }
}

/// A user's membership of a project.
public struct ProjectMember: Sendable, Equatable {
    public var projectID: ProjectID
    public var user: User
    public var role: ProjectRole
    public var addedAt: UnixSeconds

    public init(projectID: ProjectID, user: User, role: ProjectRole, addedAt: UnixSeconds) {
        self.projectID = projectID
        self.user = user
        self.role = role
        self.addedAt = addedAt
    }
}

/// A non-human member of one project.
public struct ServiceAccount: Sendable, Equatable {
    public var id: ServiceAccountID
    public var organizationID: OrganizationID
    public var projectID: ProjectID
    public var name: String
    public var role: ServiceAccountRole
    public var createdAt: UnixSeconds

    public init(
        id: ServiceAccountID,
        organizationID: OrganizationID,
        projectID: ProjectID,
        name: String,
        role: ServiceAccountRole,
        createdAt: UnixSeconds
    ) {
        self.id = id
        self.organizationID = organizationID
        self.projectID = projectID
        self.name = name
        self.role = role
        self.createdAt = createdAt
    }
}

/// What kind of principal owns a project API key, spelled as OpenAI's `owner.type`.
public enum APIKeyOwnerType: String, Sendable, CaseIterable, Codable {
    case user
    case serviceAccount = "service_account"

    /// The kind of key this owner holds: `sk-proj-` for users, `sk-svcacct-` for service accounts.
    public var keyKind: KeyKind {
        switch self {
        case .user: .project
        case .serviceAccount: .serviceAccount
        }
    }
}

/// Who a project API key belongs to, as its `owner` object shows it.
public enum APIKeyOwner: Sendable, Equatable {
    /// `role` is the user's project role, or nil once the user is no longer a member of the project.
    case user(User, role: ProjectRole?)
    case serviceAccount(ServiceAccount)

    public var kind: KeyKind { self.type.keyKind }

    public var type: APIKeyOwnerType {
        switch self {
        case .user: .user
        case .serviceAccount: .serviceAccount
        }
    }

    public var id: String {
        switch self {
        case .user(let user, _): user.id.rawValue
        case .serviceAccount(let account): account.id.rawValue
        }
    }

    /// Whether the owner still belongs to the project: a user who left it keeps their keys, inactive.
    public var hasProjectAccess: Bool {
        switch self {
        case .user(_, let role): role != nil
        case .serviceAccount: true
        }
    }
}

/// A project API key as lists show it: never its plaintext, which the store does not have.
public struct APIKey: Sendable, Equatable {
    public var id: APIKeyID
    public var organizationID: OrganizationID
    public var projectID: ProjectID
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var lastUsedAt: UnixSeconds?
    public var expiresAt: UnixSeconds?
    /// Empty means unrestricted.
    public var scopes: [String]
    public var owner: APIKeyOwner

    public init(
        id: APIKeyID,
        organizationID: OrganizationID,
        projectID: ProjectID,
        name: String,
        redactedValue: String,
        createdAt: UnixSeconds,
        lastUsedAt: UnixSeconds?,
        expiresAt: UnixSeconds?,
        scopes: [String],
        owner: APIKeyOwner
    ) {
        self.id = id
        self.organizationID = organizationID
        self.projectID = projectID
        self.name = name
        self.redactedValue = redactedValue
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.expiresAt = expiresAt
        self.scopes = scopes
        self.owner = owner
    }
}

/// An organization admin key, as the store keeps it.
public struct AdminKey: Sendable, Equatable {
    public var id: AdminKeyID
    public var organizationID: OrganizationID
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?
    public var lastUsedAt: UnixSeconds?

    public init(
        id: AdminKeyID,
        organizationID: OrganizationID,
        name: String,
        redactedValue: String,
        createdAt: UnixSeconds,
        expiresAt: UnixSeconds? = nil,
        lastUsedAt: UnixSeconds? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.redactedValue = redactedValue
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
    }
}

/// A key about to be stored: its metadata and the HMAC of its plaintext, never the plaintext itself.
public struct NewKeySecret: Sendable, Equatable {
    public var hash: String
    public var redactedValue: String

    public init(hash: String, redactedValue: String) {
        self.hash = hash
        self.redactedValue = redactedValue
    }
}

/// Which keys a key list shows, by whether their owner still belongs to the project.
public enum OwnerProjectAccess: String, Sendable, CaseIterable, Codable {
    case active
    case inactive
    case any
}

/// A project API key about to be stored.
public struct NewAPIKey: Sendable, Equatable {
    public enum Owner: Sendable, Equatable {
        case user(id: UserID)
        case serviceAccount(id: ServiceAccountID)

        public var type: APIKeyOwnerType {
            switch self {
            case .user: .user
            case .serviceAccount: .serviceAccount
            }
        }

        public var kind: KeyKind { self.type.keyKind }
    }

    public var id: APIKeyID
    public var organizationID: OrganizationID
    public var projectID: ProjectID
    public var owner: Owner
    public var name: String
    public var secret: NewKeySecret
    public var scopes: [String]
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?

    public init(
        id: APIKeyID,
        organizationID: OrganizationID,
        projectID: ProjectID,
        owner: Owner,
        name: String,
        secret: NewKeySecret,
        scopes: [String],
        createdAt: UnixSeconds,
        expiresAt: UnixSeconds?
    ) {
        self.id = id
        self.organizationID = organizationID
        self.projectID = projectID
        self.owner = owner
        self.name = name
        self.secret = secret
        self.scopes = scopes
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// What verification needs to know about one project API key, loaded for every key when the server starts and
/// again for a key whenever a change touches it. Secrets appear only as their digests.
public struct KeyVerificationState: Sendable, Equatable {
    public var keyID: APIKeyID
    public var organizationID: OrganizationID
    public var projectID: ProjectID
    public var ownerType: APIKeyOwnerType
    public var ownerID: String
    public var scopes: [String]
    public var expiresAt: UnixSeconds?
    /// The digest of the key's current secret (lowercase hex, as the store keeps it).
    public var secretHash: String
    /// After a rotation with a grace period: the previous secret's digest, and when it stops verifying.
    public var previousSecretHash: String?
    public var previousSecretExpiresAt: UnixSeconds?
    public var isProjectArchived: Bool
    /// Whether the owner still belongs to the project: false for a user who left it; always true for a service
    /// account, whose keys go with it.
    public var ownerHasProjectAccess: Bool
    /// The key's own rate limits (normalized: nil values are no limit); nil when it has none.
    public var rateLimits: APIKeyRateLimits?

    public init(
        keyID: APIKeyID,
        organizationID: OrganizationID,
        projectID: ProjectID,
        ownerType: APIKeyOwnerType,
        ownerID: String,
        scopes: [String],
        expiresAt: UnixSeconds?,
        secretHash: String,
        previousSecretHash: String?,
        previousSecretExpiresAt: UnixSeconds?,
        isProjectArchived: Bool,
        ownerHasProjectAccess: Bool,
        rateLimits: APIKeyRateLimits? = nil
    ) {
        self.keyID = keyID
        self.organizationID = organizationID
        self.projectID = projectID
        self.ownerType = ownerType
        self.ownerID = ownerID
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.secretHash = secretHash
        self.previousSecretHash = previousSecretHash
        self.previousSecretExpiresAt = previousSecretExpiresAt
        self.isProjectArchived = isProjectArchived
        self.ownerHasProjectAccess = ownerHasProjectAccess
        self.rateLimits = rateLimits
    }
}

/// An admin key with the digest of its secret, as admin authentication needs it.
public struct AdminKeyCredential: Sendable, Equatable {
    public var key: AdminKey
    public var secretHash: String

    public init(key: AdminKey, secretHash: String) {
        self.key = key
        self.secretHash = secretHash
    }
}

/// A secret that no longer verifies: its key was deleted, or a rotation replaced it.
public struct RevokedSecret: Sendable, Equatable {
    public var keyID: APIKeyID
    public var organizationID: OrganizationID
    public var projectID: ProjectID
    public var revokedAt: UnixSeconds

    public init(keyID: APIKeyID, organizationID: OrganizationID, projectID: ProjectID, revokedAt: UnixSeconds) {
        self.keyID = keyID
        self.organizationID = organizationID
        self.projectID = projectID
        self.revokedAt = revokedAt
    }
}

/// What a committed write changed that verification must know about. The store records one in the same
/// transaction as the write (the change log), so that every process serving the database can apply it.
public enum KeysmithChange: Sendable, Hashable {
    /// A project key was created, updated, rotated or deleted.
    case apiKey(id: APIKeyID)
    /// An admin key was created or deleted.
    case adminKey(id: AdminKeyID)
    /// A project was archived.
    case project(id: ProjectID)
    /// A user joined or left a project.
    case membership(projectID: ProjectID, userID: UserID)
}

/// A place in the change log. Entries are ordered by the transaction that wrote them, then by their sequence
/// number within it; a reader at a position has read every entry at or before it.
///
/// On SQLite, whose one writer commits in sequence order, every entry's transaction is 0 and the sequence alone
/// orders them. On PostgreSQL, where writers commit concurrently and a sequence number drawn earlier can commit later,
/// the transaction is the writer's PostgreSQL transaction id (`pg_current_xact_id()`), and readers take entries only
/// from transactions that have ended (below the oldest one still in progress), so that an entry never becomes
/// visible behind a position a reader has passed.
public struct ChangePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var transaction: Int64
    public var sequence: Int64

    public init(transaction: Int64, sequence: Int64) {
        self.transaction = transaction
        self.sequence = sequence
    }

    /// Before every entry.
    public static let start = ChangePosition(transaction: 0, sequence: 0)

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.transaction, lhs.sequence) < (rhs.transaction, rhs.sequence)
    }

    public var description: String { "\(self.transaction)/\(self.sequence)" }
}

/// One entry of the change log.
public struct ChangeRecord: Sendable, Equatable {
    public var position: ChangePosition
    public var change: KeysmithChange

    public init(position: ChangePosition, change: KeysmithChange) {
        self.position = position
        self.change = change
    }
}

/// What one read of the change log found: up to a limit of entries after a position, in order; where the reader
/// is after them; and whether entries it never read were pruned.
public struct ChangeBatch: Sendable, Equatable {
    public var records: [ChangeRecord]
    /// Every entry at or before this has been read: the last record's position when the batch was cut at its limit,
    /// otherwise as far as the log can be read now.
    public var position: ChangePosition
    /// The newest entry the log holds, read or not: beyond ``position`` while entries committed but cannot be read
    /// yet (on PostgreSQL, behind a transaction still in progress), or follow a cut batch.
    public var newest: ChangePosition
    /// Whether the batch stopped at its limit, so that more entries may follow at once.
    public var isCut: Bool
    /// Whether pruning deleted entries after the position the read started from: the reader cannot know what they
    /// changed and must load the whole state again.
    public var missedPrunedEntries: Bool

    public init(records: [ChangeRecord], position: ChangePosition, newest: ChangePosition, isCut: Bool, missedPrunedEntries: Bool) {
        self.records = records
        self.position = position
        self.newest = newest
        self.isCut = isCut
        self.missedPrunedEntries = missedPrunedEntries
    }
}

/// An invitation to join the organization, accepted with Keysmith's `POST /v1/organization/invites/{id}/accept`
/// (a self-hosted service sends no email).
public struct Invite: Sendable, Equatable {
    /// A project the invited person joins on acceptance, and their role in it.
    public struct ProjectGrant: Sendable, Equatable {
        public var projectID: ProjectID
        public var role: ProjectRole

        public init(projectID: ProjectID, role: ProjectRole) {
            self.projectID = projectID
            self.role = role
        }
    }

    public enum Status: String, Sendable, Codable {
        case pending
        case accepted
        case expired
    }

    public var id: InviteID
    public var organizationID: OrganizationID
    public var email: String
    public var role: OrganizationRole
    public var projects: [ProjectGrant]
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds
    public var acceptedAt: UnixSeconds?

    public init(
        id: InviteID,
        organizationID: OrganizationID,
        email: String,
        role: OrganizationRole,
        projects: [ProjectGrant],
        createdAt: UnixSeconds,
        expiresAt: UnixSeconds,
        acceptedAt: UnixSeconds? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.email = email
        self.role = role
        self.projects = projects
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.acceptedAt = acceptedAt
    }

    /// Accepted once accepted; otherwise pending until `expiresAt`, then expired.
    public func status(at now: UnixSeconds) -> Status {
        if self.acceptedAt != nil { return .accepted }
        return now < self.expiresAt ? .pending : .expired
    }
}
