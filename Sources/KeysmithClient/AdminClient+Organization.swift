public import KeysmithCore

// The organization's users, invites, admin keys and audit log, and key verification.
extension AdminClient {
    // MARK: Users

    /// One page of the organization's users, oldest first; `emails` keeps only those.
    public func listUsers(limit: Int? = nil, after: String? = nil, emails: [String] = []) async throws(KeysmithClientError)
        -> ListPage<User>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        query.add("emails", all: emails)
        return try await self.call(.get, "/v1/organization/users", query: query)
    }

    /// Every user of the organization (or those with `emails`), page after page.
    public func users(emails: [String] = [], pageSize: Int = maximumPageSize) -> Pages<User> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listUsers(limit: limit, after: after, emails: emails)
        }
    }

    /// Adds a user to the organization directly (a Keysmith extension; OpenAI adds users only by invitation).
    public func createUser(email: String, name: String? = nil, role: OrganizationRole = .reader) async throws(KeysmithClientError) -> User {
        var body: [String: JSONValue] = ["email": .string(email), "role": .string(role.rawValue)]
        body["name"] = name.map(JSONValue.string)
        return try await self.call(.post, "/v1/organization/users", body: body)
    }

    /// One user of the organization.
    public func retrieveUser(id: String) async throws(KeysmithClientError) -> User {
        try await self.call(.get, "/v1/organization/users/\(id)")
    }

    /// Changes the user's organization role; the last owner cannot become a reader.
    public func modifyUser(id: String, role: OrganizationRole) async throws(KeysmithClientError) -> User {
        try await self.call(.post, "/v1/organization/users/\(id)", body: ["role": .string(role.rawValue)])
    }

    /// Removes the user and their memberships; the keys they own stop verifying.
    public func deleteUser(id: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/users/\(id)")
    }

    // MARK: Invites

    /// One page of the organization's invites, oldest first: pending, accepted and expired.
    public func listInvites(limit: Int? = nil, after: String? = nil) async throws(KeysmithClientError) -> ListPage<Invite> {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        return try await self.call(.get, "/v1/organization/invites", query: query)
    }

    /// Every invite, page after page.
    public func invites(pageSize: Int = maximumPageSize) -> Pages<Invite> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listInvites(limit: limit, after: after)
        }
    }

    /// Invites a person. `projects` nil: they join the default project as a member; empty: no project.
    public func createInvite(email: String, role: OrganizationRole, projects: [Invite.ProjectGrant]? = nil)
        async throws(KeysmithClientError) -> Invite
    {
        var body: [String: JSONValue] = ["email": .string(email), "role": .string(role.rawValue)]
        body["projects"] = projects.map { grants in
            .array(grants.map { .object(["id": .string($0.id), "role": .string($0.role.rawValue)]) })
        }
        return try await self.call(.post, "/v1/organization/invites", body: body)
    }

    /// One invite, with its status now.
    public func retrieveInvite(id: String) async throws(KeysmithClientError) -> Invite {
        try await self.call(.get, "/v1/organization/invites/\(id)")
    }

    /// Deletes a pending or expired invite.
    public func deleteInvite(id: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/invites/\(id)")
    }

    /// Accepts a pending invite on the invitee's behalf (a Keysmith extension: a self-hosted service sends no
    /// email) and answers the new user.
    public func acceptInvite(id: String, name: String? = nil) async throws(KeysmithClientError) -> User {
        var body: [String: JSONValue] = [:]
        body["name"] = name.map(JSONValue.string)
        return try await self.call(.post, "/v1/organization/invites/\(id)/accept", body: body)
    }

    // MARK: Admin keys

    /// One page of the organization's admin keys; `descending` lists the newest first.
    public func listAdminKeys(limit: Int? = nil, after: String? = nil, descending: Bool = false) async throws(KeysmithClientError)
        -> ListPage<AdminAPIKey>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        if descending { query.add("order", "desc") }
        return try await self.call(.get, "/v1/organization/admin_api_keys", query: query)
    }

    /// Every admin key of the organization, page after page.
    public func adminKeys(descending: Bool = false, pageSize: Int = maximumPageSize) -> Pages<AdminAPIKey> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listAdminKeys(limit: limit, after: after, descending: descending)
        }
    }

    /// Creates an admin key; the answer carries its plaintext once.
    public func createAdminKey(name: String, expiresInSeconds: Int? = nil) async throws(KeysmithClientError) -> IssuedKey<AdminAPIKey> {
        var body: [String: JSONValue] = ["name": .string(name)]
        body["expires_in_seconds"] = expiresInSeconds.map(JSONValue.integer)
        return try await self.call(.post, "/v1/organization/admin_api_keys", body: body)
    }

    /// One admin key, redacted.
    public func retrieveAdminKey(id: String) async throws(KeysmithClientError) -> AdminAPIKey {
        try await self.call(.get, "/v1/organization/admin_api_keys/\(id)")
    }

    /// Deletes an admin key; the organization's last one cannot be deleted.
    public func deleteAdminKey(id: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/admin_api_keys/\(id)")
    }

    // MARK: Audit logs

    /// Which audit log entries to list; every condition given must hold.
    public struct AuditLogFilter: Sendable, Equatable {
        public var eventTypes: [AuditEventType]
        /// Entries at or after this time (`effective_at[gte]`).
        public var since: UnixSeconds?
        /// Entries before this time (`effective_at[lt]`).
        public var until: UnixSeconds?
        public var projectIDs: [String]
        public var actorIDs: [String]
        public var actorEmails: [String]
        public var resourceIDs: [String]

        public init(
            eventTypes: [AuditEventType] = [],
            since: UnixSeconds? = nil,
            until: UnixSeconds? = nil,
            projectIDs: [String] = [],
            actorIDs: [String] = [],
            actorEmails: [String] = [],
            resourceIDs: [String] = []
        ) {
            self.eventTypes = eventTypes
            self.since = since
            self.until = until
            self.projectIDs = projectIDs
            self.actorIDs = actorIDs
            self.actorEmails = actorEmails
            self.resourceIDs = resourceIDs
        }

        func add(to query: inout Query) {
            query.add("event_types", all: self.eventTypes.map(\.rawValue))
            query.add("effective_at[gte]", self.since)
            query.add("effective_at[lt]", self.until)
            query.add("project_ids", all: self.projectIDs)
            query.add("actor_ids", all: self.actorIDs)
            query.add("actor_emails", all: self.actorEmails)
            query.add("resource_ids", all: self.resourceIDs)
        }
    }

    /// One page of the audit log, newest first.
    public func listAuditLogs(_ filter: AuditLogFilter = AuditLogFilter(), limit: Int? = nil, after: String? = nil)
        async throws(KeysmithClientError) -> ListPage<AuditLog>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        filter.add(to: &query)
        return try await self.call(.get, "/v1/organization/audit_logs", query: query)
    }

    /// Every matching audit log entry, newest first, page after page.
    public func auditLogs(_ filter: AuditLogFilter = AuditLogFilter(), pageSize: Int = maximumPageSize) -> Pages<AuditLog> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listAuditLogs(filter, limit: limit, after: after)
        }
    }

    // MARK: Verification

    /// Says whether `key` is a valid key of this organization, and why not when it is not
    /// (`POST /v1/keys/verify`, a Keysmith extension). The key travels in the request body, never in a URL.
    public func verify(key: String) async throws(KeysmithClientError) -> KeyVerification {
        try await self.call(.post, "/v1/keys/verify", body: ["key": .string(key)])
    }
}
