/// Who made a change, as the audit log records it.
public enum AuditActor: Sendable, Equatable {
    /// A request to the admin API, made with this admin key.
    case adminKey(id: AdminKeyID)
    /// An offline `keysmith` command run on the database itself (`admin-keys create`, the first start's bootstrap).
    case command(String)

    /// The actor of changes made with no actor named: the command-line tool's.
    public static let unnamed = AuditActor.command("keysmith")

    /// The id the audit log's `actor_ids[]` filter matches: the admin key's id, or `keysmith-cli`.
    public var id: String {
        switch self {
        case .adminKey(let id): id.rawValue
        case .command: "keysmith-cli"
        }
    }

    /// The actor as OpenAI's `AuditLogActor` object, in JSON. An admin key is an `api_key` actor; an offline
    /// command is a `session` of the local user `keysmith-cli`, its `user_agent` naming the command.
    public var json: String {
        switch self {
        case .adminKey(let id):
            AuditJSON.object([("type", .string("api_key")), ("api_key", .object([("id", .string(id.rawValue))]))])
        case .command(let command):
            AuditJSON.object([
                ("type", .string("session")),
                (
                    "session",
                    .object([
                        ("user", .object([("id", .string("keysmith-cli"))])),
                        ("ip_address", .string("local")),
                        ("user_agent", .string(command)),
                    ])
                ),
            ])
        }
    }
}

/// The audit log's event types: each is a value of OpenAI's `AuditLogEventType`, so that a client that knows the
/// enumeration can read every event Keysmith writes.
public enum AuditEventType: String, Sendable, CaseIterable, Codable {
    case apiKeyCreated = "api_key.created"
    case apiKeyUpdated = "api_key.updated"
    case apiKeyDeleted = "api_key.deleted"
    case projectCreated = "project.created"
    case projectUpdated = "project.updated"
    case projectArchived = "project.archived"
    case rateLimitUpdated = "rate_limit.updated"
    case serviceAccountCreated = "service_account.created"
    case serviceAccountUpdated = "service_account.updated"
    case serviceAccountDeleted = "service_account.deleted"
    case userAdded = "user.added"
    case userUpdated = "user.updated"
    case userDeleted = "user.deleted"
    case inviteSent = "invite.sent"
    case inviteAccepted = "invite.accepted"
    case inviteDeleted = "invite.deleted"
    case adminKeyCreated = "tenant.admin_api_key.created"
    case adminKeyDeleted = "tenant.admin_api_key.deleted"
}

/// One change, as a store write records it in its own transaction.
public struct AuditEvent: Sendable, Equatable {
    public var type: AuditEventType
    /// The object changed (the key, project, user, ...): `resource_ids[]` matches it.
    public var resourceID: String
    /// The project the object belongs to, when it belongs to one.
    public var projectID: String?
    /// The event's details: the object named after the event's type in OpenAI's `AuditLog` (`{"id": ..., "data":
    /// {...}}`), as JSON. Ids, names, roles, scopes and redacted values only: never a key or a secret.
    public var details: String

    public init(_ type: AuditEventType, resourceID: String, projectID: String? = nil, data: [(String, AuditJSON)] = [], dataKey: String = "data") {
        self.type = type
        self.resourceID = resourceID
        self.projectID = projectID
        var fields: [(String, AuditJSON)] = [("id", .string(resourceID))]
        if !data.isEmpty { fields.append((dataKey, .object(data))) }
        self.details = AuditJSON.object(fields)
    }

    /// An event about the object `resourceID` names, of the project `projectID` when it belongs to one.
    public init(
        _ type: AuditEventType,
        resourceID: some TypedID,
        projectID: ProjectID? = nil,
        data: [(String, AuditJSON)] = [],
        dataKey: String = "data"
    ) {
        self.init(type, resourceID: resourceID.rawValue, projectID: projectID?.rawValue, data: data, dataKey: dataKey)
    }

    public static func == (lhs: AuditEvent, rhs: AuditEvent) -> Bool {
        lhs.type == rhs.type && lhs.resourceID == rhs.resourceID && lhs.projectID == rhs.projectID && lhs.details == rhs.details
    }
}

/// An event as the audit log lists it.
public struct AuditLogEntry: Sendable, Equatable {
    public var id: String
    public var type: AuditEventType
    public var effectiveAt: UnixSeconds
    public var projectID: String?
    public var projectName: String?
    /// ``AuditActor/json`` of the actor.
    public var actorJSON: String
    /// ``AuditEvent/details``.
    public var details: String

    public init(
        id: String,
        type: AuditEventType,
        effectiveAt: UnixSeconds,
        projectID: String?,
        projectName: String?,
        actorJSON: String,
        details: String
    ) {
        self.id = id
        self.type = type
        self.effectiveAt = effectiveAt
        self.projectID = projectID
        self.projectName = projectName
        self.actorJSON = actorJSON
        self.details = details
    }
}

/// What the audit log list is filtered by; empty arrays and nil bounds filter nothing.
public struct AuditLogFilter: Sendable, Equatable {
    /// Whether any `effective_at` bound is set.
    public var hasTimeBounds: Bool {
        self.effectiveAfter != nil || self.effectiveFrom != nil || self.effectiveBefore != nil || self.effectiveThrough != nil
    }

    public var effectiveAfter: UnixSeconds?
    public var effectiveFrom: UnixSeconds?
    public var effectiveBefore: UnixSeconds?
    public var effectiveThrough: UnixSeconds?
    public var projectIDs: [String]
    public var types: [AuditEventType]
    /// Event types of OpenAI's that Keysmith never records, asked for beside (or instead of) ``types``: they match
    /// nothing, but a filter of only these matches nothing rather than everything.
    public var unrecordedTypes: [String]
    public var actorIDs: [String]
    public var actorEmails: [String]
    public var resourceIDs: [String]

    public init(
        effectiveAfter: UnixSeconds? = nil,
        effectiveFrom: UnixSeconds? = nil,
        effectiveBefore: UnixSeconds? = nil,
        effectiveThrough: UnixSeconds? = nil,
        projectIDs: [String] = [],
        types: [AuditEventType] = [],
        unrecordedTypes: [String] = [],
        actorIDs: [String] = [],
        actorEmails: [String] = [],
        resourceIDs: [String] = []
    ) {
        self.effectiveAfter = effectiveAfter
        self.effectiveFrom = effectiveFrom
        self.effectiveBefore = effectiveBefore
        self.effectiveThrough = effectiveThrough
        self.projectIDs = projectIDs
        self.types = types
        self.unrecordedTypes = unrecordedTypes
        self.actorIDs = actorIDs
        self.actorEmails = actorEmails
        self.resourceIDs = resourceIDs
    }
}

/// The few JSON values audit details hold, written with their keys in the given order.
public indirect enum AuditJSON: Sendable, Equatable {
    /// A typed id, as its text.
    public static func string(_ id: some TypedID) -> AuditJSON { .string(id.rawValue) }

    case string(String)
    case int(Int)
    case bool(Bool)
    case strings([String])
    case null
    case object([(String, AuditJSON)])

    public static func == (lhs: AuditJSON, rhs: AuditJSON) -> Bool { lhs.text == rhs.text }

    public static func object(_ fields: [(String, AuditJSON)]) -> String { AuditJSON.object(fields).text }

    public var text: String {
        var out = ""
        self.write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .string(let value): Self.quote(value, into: &out)
        case .int(let value): out += String(value)
        case .bool(let value): out += value ? "true" : "false"
        case .null: out += "null"
        case .strings(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                Self.quote(value, into: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, (key, value)) in fields.enumerated() {
                if index > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ value: String, into out: inout String) {
        out += JSONString.quoted(value)
    }
}

/// The actor of the writes a task makes. The domain layer (`Keysmith`) sets it around each store write, and the store
/// records it with the write's audit event, in the write's transaction.
public enum AuditContext {
    @TaskLocal public static var actor: AuditActor = .unnamed
}
