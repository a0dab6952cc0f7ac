import Hummingbird
import KeysmithCore
import NIOCore

/// OpenAI's JSON objects, written by hand (see ``JSONWriter``): field names and nullability as the official spec
/// has them, with required-but-nullable fields always present.
enum Wire {
    static func response(_ status: HTTPResponse.Status = .ok, capacity: Int = 512, _ body: (inout JSONWriter) -> Void) -> Response {
        var writer = JSONWriter(capacity: capacity)
        body(&writer)
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: writer.buffer)
        )
    }

    /// `{"object":"list","data":[…],"first_id","last_id","has_more"}`; the ids are null only when `data` is empty.
    static func list<Item>(
        _ page: Page<Item>,
        id: (Item) -> some TypedID,
        capacity: Int = 512,
        write: (inout JSONWriter, Item) -> Void
    ) -> Response {
        self.list(page, id: { id($0).rawValue }, capacity: capacity, write: write)
    }

    static func list<Item>(
        _ page: Page<Item>,
        id: (Item) -> String,
        capacity: Int = 512,
        write: (inout JSONWriter, Item) -> Void
    ) -> Response {
        self.response(capacity: capacity) { writer in
            writer.object { writer in
                writer.field("object", literal: "list")
                writer.key("data")
                writer.array { writer in
                    for item in page.items { write(&writer, item) }
                }
                writer.field("first_id", page.items.first.map(id))
                writer.field("last_id", page.items.last.map(id))
                writer.field("has_more", page.hasMore)
            }
        }
    }

    static func deleted(_ object: StaticString, id: some TypedID) -> Response {
        self.response { writer in
            writer.object { writer in
                writer.field("object", object.description)
                writer.field("id", id)
                writer.field("deleted", true)
            }
        }
    }

    static func project(_ writer: inout JSONWriter, _ project: Project) {
        writer.object { writer in
            writer.field("id", project.id)
            writer.field("object", literal: "organization.project")
            writer.field("name", project.name)
            writer.field("created_at", project.createdAt)
            writer.field("archived_at", project.archivedAt)
            writer.field("status", project.isArchived ? "archived" : "active")
            writer.field("external_key_id", project.externalKeyID)
            if let residency = project.residency {
                writer.field("residency", residency)
            }
        }
    }

    static func modelPermissions(_ writer: inout JSONWriter, _ permissions: ModelPermissions) {
        writer.object { writer in
            writer.field("object", literal: "project.model_permissions")
            writer.field("mode", permissions.mode.rawValue)
            writer.field("model_ids", permissions.modelIDs)
        }
    }

    static func user(_ writer: inout JSONWriter, _ user: User) {
        writer.object { writer in
            writer.field("object", literal: "organization.user")
            writer.field("id", user.id)
            writer.field("name", user.name)
            writer.field("email", user.email)
            writer.field("role", user.role.rawValue)
            writer.field("added_at", user.addedAt)
        }
    }

    static func invite(_ writer: inout JSONWriter, _ invite: Invite, now: UnixSeconds) {
        writer.object { writer in
            writer.field("object", literal: "organization.invite")
            writer.field("id", invite.id)
            writer.field("email", invite.email)
            writer.field("role", invite.role.rawValue)
            writer.field("status", invite.status(at: now).rawValue)
            writer.field("created_at", invite.createdAt)
            writer.field("expires_at", invite.expiresAt)
            writer.field("accepted_at", invite.acceptedAt)
            writer.key("projects")
            writer.array { writer in
                for grant in invite.projects {
                    writer.object { writer in
                        writer.field("id", grant.projectID)
                        writer.field("role", grant.role.rawValue)
                    }
                }
            }
        }
    }

    /// OpenAI's `AuditLog`: the details sit under a key named after the event's type.
    static func auditLog(_ writer: inout JSONWriter, _ entry: AuditLogEntry) {
        writer.object { writer in
            writer.field("id", entry.id)
            writer.field("type", entry.type.rawValue)
            writer.field("effective_at", entry.effectiveAt)
            if let projectID = entry.projectID {
                writer.key("project")
                writer.object { writer in
                    writer.field("id", projectID)
                    if let name = entry.projectName { writer.field("name", name) }
                }
            }
            writer.key("actor")
            writer.raw(json: entry.actorJSON)
            writer.key(dynamic: entry.type.rawValue)
            writer.raw(json: entry.details)
        }
    }

    static func projectUser(_ writer: inout JSONWriter, _ member: ProjectMember) {
        writer.object { writer in
            writer.field("object", literal: "organization.project.user")
            writer.field("id", member.user.id)
            writer.field("name", member.user.name)
            writer.field("email", member.user.email)
            writer.field("role", member.role.rawValue)
            writer.field("added_at", member.addedAt)
        }
    }

    static func serviceAccount(_ writer: inout JSONWriter, _ account: ServiceAccount) {
        writer.object { writer in
            self.serviceAccountFields(&writer, account)
        }
    }

    static func serviceAccountFields(_ writer: inout JSONWriter, _ account: ServiceAccount) {
        writer.field("object", literal: "organization.project.service_account")
        writer.field("id", account.id)
        writer.field("name", account.name)
        writer.field("role", account.role.rawValue)
        writer.field("created_at", account.createdAt)
    }

    /// A service account key's one appearance with its plaintext (`ServiceAccountApiKeyBody`).
    static func serviceAccountKeyWithValue(_ writer: inout JSONWriter, _ key: APIKey, value: String) {
        writer.object { writer in
            writer.field("object", literal: "organization.project.service_account.api_key")
            writer.field("value", value)
            writer.field("name", key.name)
            writer.field("created_at", key.createdAt)
            writer.field("id", key.id)
            writer.field("expires_at", key.expiresAt)
            writer.field("scopes", key.scopes)
        }
    }

    /// `organization.project.api_key`. `value` is given only in the response that creates (or rotates) the key;
    /// `previousSecretExpiresAt` only in the response that rotates it.
    static func apiKey(_ writer: inout JSONWriter, _ key: APIKey, value: String? = nil, previousSecretExpiresAt: UnixSeconds?? = nil) {
        writer.object { writer in
            writer.field("object", literal: "organization.project.api_key")
            if let value {
                writer.field("value", value)
            }
            if let previousSecretExpiresAt {
                writer.field("previous_secret_expires_at", previousSecretExpiresAt)
            }
            writer.field("redacted_value", key.redactedValue)
            writer.field("name", key.name)
            writer.field("created_at", key.createdAt)
            writer.field("last_used_at", key.lastUsedAt)
            writer.field("expires_at", key.expiresAt)
            writer.field("id", key.id)
            writer.field("owner_project_access", literal: key.owner.hasProjectAccess ? "active" : "inactive")
            writer.field("scopes", key.scopes)
            writer.key("owner")
            writer.object { writer in
                switch key.owner {
                case .user(let user, let role):
                    writer.field("type", literal: "user")
                    writer.key("user")
                    writer.object { writer in
                        writer.field("id", user.id)
                        writer.field("email", user.email)
                        writer.field("name", user.name ?? user.email)
                        writer.field("created_at", user.addedAt)
                        // A user who left the project keeps their keys, inactive, with no project role.
                        writer.field("role", role?.rawValue ?? "none")
                    }
                case .serviceAccount(let account):
                    writer.field("type", literal: "service_account")
                    writer.key("service_account")
                    writer.object { writer in
                        writer.field("id", account.id)
                        writer.field("name", account.name)
                        writer.field("created_at", account.createdAt)
                        writer.field("role", account.role.rawValue)
                    }
                }
            }
        }
    }

    /// `organization.admin_api_key`. An admin key acts as its own principal, so `owner` describes the key.
    static func adminKey(_ writer: inout JSONWriter, _ key: AdminKey, value: String? = nil) {
        writer.object { writer in
            writer.field("object", literal: "organization.admin_api_key")
            writer.field("id", key.id)
            writer.field("name", key.name)
            writer.field("redacted_value", key.redactedValue)
            if let value {
                writer.field("value", value)
            }
            writer.field("created_at", key.createdAt)
            writer.field("expires_at", key.expiresAt)
            writer.field("last_used_at", key.lastUsedAt)
            writer.key("owner")
            writer.object { writer in
                writer.field("type", literal: "service_account")
                writer.field("object", literal: "organization.service_account")
                writer.field("id", key.id)
                writer.field("name", key.name)
                writer.field("created_at", key.createdAt)
                writer.field("role", literal: "owner")
            }
        }
    }
}
