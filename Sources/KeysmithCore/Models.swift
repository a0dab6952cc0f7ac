/// Timestamps are Unix seconds throughout, as in OpenAI's objects.
public typealias UnixSeconds = Int

/// A tenant. Every other object belongs to exactly one organization, and an admin key sees only its own.
public struct Organization: Sendable, Equatable {
    public var id: String
    public var name: String
    public var createdAt: UnixSeconds

    public init(id: String, name: String, createdAt: UnixSeconds) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

public struct Project: Sendable, Equatable {
    public var id: String
    public var organizationID: String
    public var name: String
    public var createdAt: UnixSeconds
    public var archivedAt: UnixSeconds?
    public var externalKeyID: String?
    public var residency: String?

    public var isArchived: Bool { self.archivedAt != nil }

    public init(
        id: String,
        organizationID: String,
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

/// A person in an organization. `role` is the organization role: `owner` or `reader`.
public struct User: Sendable, Equatable {
    public static let roles: Set<String> = ["owner", "reader"]

    public var id: String
    public var organizationID: String
    public var email: String
    public var name: String?
    public var role: String
    public var addedAt: UnixSeconds

    public init(id: String, organizationID: String, email: String, name: String?, role: String, addedAt: UnixSeconds) {
        self.id = id
        self.organizationID = organizationID
        self.email = email
        self.name = name
        self.role = role
        self.addedAt = addedAt
    }
}

/// A user's membership of a project. `role` is the project role: `owner` or `member`.
public struct ProjectMember: Sendable, Equatable {
    public static let roles: Set<String> = ["owner", "member"]

    public var projectID: String
    public var user: User
    public var role: String
    public var addedAt: UnixSeconds

    public init(projectID: String, user: User, role: String, addedAt: UnixSeconds) {
        self.projectID = projectID
        self.user = user
        self.role = role
        self.addedAt = addedAt
    }
}

/// A non-human member of one project. `role` is `owner`, `member`, or `none` when created without default roles.
public struct ServiceAccount: Sendable, Equatable {
    public static let assignableRoles: Set<String> = ["owner", "member"]

    public var id: String
    public var organizationID: String
    public var projectID: String
    public var name: String
    public var role: String
    public var createdAt: UnixSeconds

    public init(id: String, organizationID: String, projectID: String, name: String, role: String, createdAt: UnixSeconds) {
        self.id = id
        self.organizationID = organizationID
        self.projectID = projectID
        self.name = name
        self.role = role
        self.createdAt = createdAt
    }
}

/// Who a project API key belongs to, as its `owner` object shows it.
public enum APIKeyOwner: Sendable, Equatable {
    /// `role` is the user's project role, or nil once the user is no longer a member of the project.
    case user(User, role: String?)
    case serviceAccount(ServiceAccount)

    public var kind: KeyKind {
        switch self {
        case .user: .project
        case .serviceAccount: .serviceAccount
        }
    }

    /// The owner's `type` as OpenAI's objects spell it: `user` or `service_account`.
    public var type: String {
        switch self {
        case .user: "user"
        case .serviceAccount: "service_account"
        }
    }

    public var id: String {
        switch self {
        case .user(let user, _): user.id
        case .serviceAccount(let account): account.id
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
    public var id: String
    public var organizationID: String
    public var projectID: String
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var lastUsedAt: UnixSeconds?
    public var expiresAt: UnixSeconds?
    /// Empty means unrestricted.
    public var scopes: [String]
    public var owner: APIKeyOwner

    public init(
        id: String,
        organizationID: String,
        projectID: String,
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
    public var id: String
    public var organizationID: String
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?
    public var lastUsedAt: UnixSeconds?

    public init(
        id: String,
        organizationID: String,
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
public enum OwnerProjectAccess: String, Sendable, CaseIterable {
    case active
    case inactive
    case any
}

/// A project API key about to be stored.
public struct NewAPIKey: Sendable, Equatable {
    public enum Owner: Sendable, Equatable {
        case user(id: String)
        case serviceAccount(id: String)

        public var kind: KeyKind {
            switch self {
            case .user: .project
            case .serviceAccount: .serviceAccount
            }
        }
    }

    public var id: String
    public var organizationID: String
    public var projectID: String
    public var owner: Owner
    public var name: String
    public var secret: NewKeySecret
    public var scopes: [String]
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?

    public init(
        id: String,
        organizationID: String,
        projectID: String,
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

/// What verifying a secret needs to know about the key it belongs to.
public struct KeyVerificationRecord: Sendable, Equatable {
    public var key: APIKey
    public var projectArchivedAt: UnixSeconds?
    /// Set when the secret presented is the key's previous one (after a rotation): when its grace period ends.
    public var previousSecretExpiresAt: UnixSeconds?

    public init(key: APIKey, projectArchivedAt: UnixSeconds?, previousSecretExpiresAt: UnixSeconds?) {
        self.key = key
        self.projectArchivedAt = projectArchivedAt
        self.previousSecretExpiresAt = previousSecretExpiresAt
    }
}

/// What the store knows about a secret's digest.
public enum KeyLookup: Sendable, Equatable {
    /// The current or previous secret of a key that exists.
    case key(KeyVerificationRecord)
    /// The secret of a key that was deleted, or a previous secret that a later rotation replaced.
    case revoked(keyID: String, organizationID: String, projectID: String)
    case unknown
}
