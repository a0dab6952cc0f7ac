public import KeysmithCore

// The API's objects as the wire carries them, named after the official spec's schemas. Each is a thin decoding of
// one JSON object; the vocabulary they share with the server (roles, event types, verification codes, timestamps) is
// KeysmithCore's own types, so the two cannot drift apart. The client's tests decode every response a live server
// gives through these types.

/// One page of a list: `{"object":"list","data":[…],"first_id","last_id","has_more"}`.
public struct ListPage<Item: Decodable & Sendable>: Decodable, Sendable {
    public var data: [Item]
    /// The first and last items' ids; nil only when `data` is empty.
    public var firstID: String?
    public var lastID: String?
    /// Whether a page follows this one: ask for it with `after: lastID`.
    public var hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case data
        case firstID = "first_id"
        case lastID = "last_id"
        case hasMore = "has_more"
    }
}

extension ListPage: Equatable where Item: Equatable {}

/// `organization.project`.
public struct Project: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public enum Status: String, Decodable, Sendable {
        case active
        case archived
    }

    public var id: String
    public var name: String
    public var createdAt: UnixSeconds
    public var archivedAt: UnixSeconds?
    public var status: Status
    public var externalKeyID: String?
    public var residency: String?

    enum CodingKeys: String, CodingKey {
        case id, name, status, residency
        case createdAt = "created_at"
        case archivedAt = "archived_at"
        case externalKeyID = "external_key_id"
    }
}

/// `organization.project.api_key`: a key as lists show it, its secret redacted.
public struct ProjectAPIKey: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    /// Who holds the key.
    public enum Owner: Sendable, Equatable {
        case user(User)
        case serviceAccount(ServiceAccount)

        public var id: String {
            switch self {
            case .user(let user): user.id
            case .serviceAccount(let account): account.id
            }
        }

        public var type: APIKeyOwnerType {
            switch self {
            case .user: .user
            case .serviceAccount: .serviceAccount
            }
        }

        /// The user's project role; nil once they left the project (the wire says `"none"`).
        public struct User: Decodable, Sendable, Equatable {
            public var id: String
            public var email: String
            public var name: String
            public var createdAt: UnixSeconds
            public var role: ProjectRole?

            enum CodingKeys: String, CodingKey {
                case id, email, name, role
                case createdAt = "created_at"
            }

            public init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                self.id = try container.decode(String.self, forKey: .id)
                self.email = try container.decode(String.self, forKey: .email)
                self.name = try container.decode(String.self, forKey: .name)
                self.createdAt = try container.decode(UnixSeconds.self, forKey: .createdAt)
                let role = try container.decode(String.self, forKey: .role)
                if role == "none" {
                    self.role = nil
                } else if let parsed = ProjectRole(rawValue: role) {
                    self.role = parsed
                } else {
                    throw DecodingError.dataCorruptedError(forKey: .role, in: container, debugDescription: "unknown role '\(role)'")
                }
            }
        }

        public struct ServiceAccount: Decodable, Sendable, Equatable {
            public var id: String
            public var name: String
            public var createdAt: UnixSeconds
            public var role: ServiceAccountRole

            enum CodingKeys: String, CodingKey {
                case id, name, role
                case createdAt = "created_at"
            }
        }
    }

    public var id: String
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var lastUsedAt: UnixSeconds?
    public var expiresAt: UnixSeconds?
    /// Whether the owner still belongs to the project (`active`) or left it (`inactive`: the key does not verify).
    public var ownerProjectAccess: OwnerProjectAccess
    /// Empty means unrestricted.
    public var scopes: [String]
    public var owner: Owner

    enum CodingKeys: String, CodingKey {
        case id, name, scopes, owner
        case redactedValue = "redacted_value"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case expiresAt = "expires_at"
        case ownerProjectAccess = "owner_project_access"
    }

    enum OwnerKeys: String, CodingKey {
        case type, user
        case serviceAccount = "service_account"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(String.self, forKey: .id)
        self.name = try container.decode(String.self, forKey: .name)
        self.redactedValue = try container.decode(String.self, forKey: .redactedValue)
        self.createdAt = try container.decode(UnixSeconds.self, forKey: .createdAt)
        self.lastUsedAt = try container.decodeIfPresent(UnixSeconds.self, forKey: .lastUsedAt)
        self.expiresAt = try container.decodeIfPresent(UnixSeconds.self, forKey: .expiresAt)
        self.ownerProjectAccess = try container.decode(OwnerProjectAccess.self, forKey: .ownerProjectAccess)
        self.scopes = try container.decodeIfPresent([String].self, forKey: .scopes) ?? []
        let owner = try container.nestedContainer(keyedBy: OwnerKeys.self, forKey: .owner)
        switch try owner.decode(APIKeyOwnerType.self, forKey: .type) {
        case .user: self.owner = .user(try owner.decode(Owner.User.self, forKey: .user))
        case .serviceAccount: self.owner = .serviceAccount(try owner.decode(Owner.ServiceAccount.self, forKey: .serviceAccount))
        }
    }
}

/// A key (or admin key) in the one response that carries its secret: creation or rotation. Store `value` now; no
/// later call returns it.
public struct IssuedKey<Key: Decodable & Sendable>: Decodable, Sendable {
    /// The object as the server sent it, the plaintext included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var key: Key
    /// The key's plaintext.
    public var value: String
    /// After a rotation: when the previous secret stops verifying (nil: it stopped at once). Nil on creation.
    public var previousSecretExpiresAt: UnixSeconds?

    enum CodingKeys: String, CodingKey {
        case value
        case previousSecretExpiresAt = "previous_secret_expires_at"
    }

    public init(from decoder: any Decoder) throws {
        self.key = try Key(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.value = try container.decode(String.self, forKey: .value)
        self.previousSecretExpiresAt = try container.decodeIfPresent(UnixSeconds.self, forKey: .previousSecretExpiresAt)
    }
}

/// `organization.project.service_account`.
public struct ProjectServiceAccount: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var name: String
    public var role: ServiceAccountRole
    public var createdAt: UnixSeconds

    enum CodingKeys: String, CodingKey {
        case id, name, role
        case createdAt = "created_at"
    }
}

/// A service account's key in the response that creates it, with its plaintext (`value`).
public struct ServiceAccountAPIKey: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var name: String
    public var value: String
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?
    public var scopes: [String]

    enum CodingKeys: String, CodingKey {
        case id, name, value, scopes
        case createdAt = "created_at"
        case expiresAt = "expires_at"
    }
}

/// A new service account, with its first key unless it was created without one.
public struct CreatedServiceAccount: Decodable, Sendable, Equatable {
    /// The object as the server sent it, the key's plaintext included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var account: ProjectServiceAccount
    public var apiKey: ServiceAccountAPIKey?

    enum CodingKeys: String, CodingKey {
        case apiKey = "api_key"
    }

    public init(from decoder: any Decoder) throws {
        self.account = try ProjectServiceAccount(from: decoder)
        self.apiKey = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(ServiceAccountAPIKey.self, forKey: .apiKey)
    }
}

/// `organization.user`: a person in the organization.
public struct User: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var name: String?
    public var email: String
    public var role: OrganizationRole
    public var addedAt: UnixSeconds

    enum CodingKeys: String, CodingKey {
        case id, name, email, role
        case addedAt = "added_at"
    }
}

/// `organization.project.user`: a user's membership of a project.
public struct ProjectUser: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var name: String?
    public var email: String
    public var role: ProjectRole
    public var addedAt: UnixSeconds

    enum CodingKeys: String, CodingKey {
        case id, name, email, role
        case addedAt = "added_at"
    }
}

/// `organization.invite`.
public struct Invite: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public typealias Status = KeysmithCore.Invite.Status

    /// A project the invitee joins on acceptance, and their role there.
    public struct ProjectGrant: Codable, Sendable, Equatable {
        public var id: String
        public var role: ProjectRole

        public init(id: String, role: ProjectRole) {
            self.id = id
            self.role = role
        }
    }

    public var id: String
    public var email: String
    public var role: OrganizationRole
    public var status: Status
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds
    public var acceptedAt: UnixSeconds?
    public var projects: [ProjectGrant]

    enum CodingKeys: String, CodingKey {
        case id, email, role, status, projects
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case acceptedAt = "accepted_at"
    }
}

/// `organization.admin_api_key`.
public struct AdminAPIKey: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var name: String
    public var redactedValue: String
    public var createdAt: UnixSeconds
    public var expiresAt: UnixSeconds?
    public var lastUsedAt: UnixSeconds?

    enum CodingKeys: String, CodingKey {
        case id, name
        case redactedValue = "redacted_value"
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case lastUsedAt = "last_used_at"
    }
}

/// One entry of the audit log. Its details sit in the JSON under a key named after its type; here they are
/// ``details``.
public struct AuditLog: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public struct ProjectReference: Decodable, Sendable, Equatable {
        public var id: String
        public var name: String?
    }

    public var id: String
    public var type: AuditEventType
    public var effectiveAt: UnixSeconds
    public var project: ProjectReference?
    /// Who made the change: an admin key (`api_key`) or a `keysmith` command run on the database (`session`).
    public var actor: JSONValue
    public var details: JSONValue

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { self.stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        self.id = try container.decode(String.self, forKey: Key("id"))
        self.type = try container.decode(AuditEventType.self, forKey: Key("type"))
        self.effectiveAt = try container.decode(UnixSeconds.self, forKey: Key("effective_at"))
        self.project = try container.decodeIfPresent(ProjectReference.self, forKey: Key("project"))
        self.actor = try container.decode(JSONValue.self, forKey: Key("actor"))
        self.details = try container.decodeIfPresent(JSONValue.self, forKey: Key(self.type.rawValue)) ?? .object([:])
    }
}

/// `{"object":"…deleted","id","deleted":true}`.
public struct DeletedObject: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public var id: String
    public var object: String
    public var deleted: Bool

    enum CodingKeys: String, CodingKey {
        case id, object, deleted
    }
}

/// The answer of `POST /v1/keys/verify`: the verdict, and the key's details when it is one of the organization's.
public struct KeyVerification: Decodable, Sendable, Equatable {
    /// The object as the server sent it, fields this type does not model included (what `keysmith --json` prints).
    public internal(set) var json: JSONValue = .null
    public struct Key: Decodable, Sendable, Equatable {
        public struct Owner: Decodable, Sendable, Equatable {
            public var type: APIKeyOwnerType
            public var id: String
        }

        public var id: String
        public var name: String
        public var redactedValue: String
        public var organizationID: String
        public var projectID: String
        public var owner: Owner
        public var scopes: [String]
        public var createdAt: UnixSeconds
        public var expiresAt: UnixSeconds?
        public var lastUsedAt: UnixSeconds?
        /// Set while a rotated key's previous secret still verifies.
        public var previousSecretExpiresAt: UnixSeconds?

        enum CodingKeys: String, CodingKey {
            case id, name, owner, scopes
            case redactedValue = "redacted_value"
            case organizationID = "organization_id"
            case projectID = "project_id"
            case createdAt = "created_at"
            case expiresAt = "expires_at"
            case lastUsedAt = "last_used_at"
            case previousSecretExpiresAt = "previous_secret_expires_at"
        }
    }

    public var valid: Bool
    public var code: VerificationCode
    public var key: Key?

    enum CodingKeys: String, CodingKey {
        case valid, code, key
    }
}

/// A value that keeps the JSON it was decoded from: `AdminClient.call` decodes an answer twice, as its type and as
/// a ``JSONValue``, and attaches the second to the first.
protocol CarriesJSON {
    var json: JSONValue { get set }
    mutating func attach(_ json: JSONValue)
}

extension CarriesJSON {
    mutating func attach(_ json: JSONValue) {
        self.json = json
    }
}

extension Project: CarriesJSON {}
extension ProjectAPIKey: CarriesJSON {}
extension ProjectServiceAccount: CarriesJSON {}
extension ServiceAccountAPIKey: CarriesJSON {}
extension User: CarriesJSON {}
extension ProjectUser: CarriesJSON {}
extension Invite: CarriesJSON {}
extension AdminAPIKey: CarriesJSON {}
extension AuditLog: CarriesJSON {}
extension DeletedObject: CarriesJSON {}
extension KeyVerification: CarriesJSON {}

extension ListPage: CarriesJSON {
    /// A page keeps no JSON of its own: each item gets its element of `data`.
    var json: JSONValue {
        get { .object(["data": .array(self.data.map { ($0 as? any CarriesJSON)?.json ?? .null })]) }
        set { self.attach(newValue) }
    }

    mutating func attach(_ json: JSONValue) {
        guard case .array(let elements)? = json["data"], elements.count == self.data.count else { return }
        for index in self.data.indices {
            guard var item = self.data[index] as? any CarriesJSON else { return }
            item.attach(elements[index])
            if let typed = item as? Item { self.data[index] = typed }
        }
    }
}

extension IssuedKey: CarriesJSON {
    /// The key's own JSON is the object as lists show it: without the plaintext and the rotation's field.
    mutating func attach(_ json: JSONValue) {
        self.json = json
        guard var key = self.key as? any CarriesJSON else { return }
        key.attach(json.removing("value", "previous_secret_expires_at"))
        if let typed = key as? Key { self.key = typed }
    }
}

extension CreatedServiceAccount: CarriesJSON {
    mutating func attach(_ json: JSONValue) {
        self.json = json
        self.account.attach(json.removing("api_key"))
        if let key = json["api_key"] { self.apiKey?.attach(key) }
    }
}
