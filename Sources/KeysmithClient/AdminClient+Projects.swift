public import KeysmithCore

// Projects, their API keys, service accounts and members: `/v1/organization/projects/…`.
extension AdminClient {
    /// The default and largest page size: lists that follow every page ask for 100 items at a time.
    public static let maximumPageSize = 100

    // MARK: Projects

    /// One page of the organization's projects, oldest first.
    /// - Parameters:
    ///   - limit: 1 to 100 (the server's default is 20).
    ///   - after: The `lastID` of the previous page.
    ///   - includeArchived: Whether archived projects are listed too.
    public func listProjects(limit: Int? = nil, after: String? = nil, includeArchived: Bool = false)
        async throws(KeysmithClientError) -> ListPage<Project>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        if includeArchived { query.add("include_archived", "true") }
        return try await self.call(.get, "/v1/organization/projects", query: query)
    }

    /// Every project, page after page.
    public func projects(includeArchived: Bool = false, pageSize: Int = maximumPageSize) -> Pages<Project> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listProjects(limit: limit, after: after, includeArchived: includeArchived)
        }
    }

    /// Creates a project (`POST /v1/organization/projects`).
    public func createProject(name: String, externalKeyID: String? = nil) async throws(KeysmithClientError) -> Project {
        var body: [String: JSONValue] = ["name": .string(name)]
        body["external_key_id"] = externalKeyID.map(JSONValue.string)
        return try await self.call(.post, "/v1/organization/projects", body: body)
    }

    /// One project by id; archived ones included.
    public func retrieveProject(id: String) async throws(KeysmithClientError) -> Project {
        try await self.call(.get, "/v1/organization/projects/\(id)")
    }

    /// Renames the project, and sets or clears its external key id: `externalKeyID: .some(nil)` clears it, `nil`
    /// (the default) leaves it.
    public func modifyProject(id: String, name: String? = nil, externalKeyID: String?? = nil) async throws(KeysmithClientError) -> Project {
        var body: [String: JSONValue] = [:]
        body["name"] = name.map(JSONValue.string)
        if let externalKeyID {
            body["external_key_id"] = externalKeyID.map(JSONValue.string) ?? .null
        }
        return try await self.call(.post, "/v1/organization/projects/\(id)", body: body)
    }

    /// Archives the project: its keys stop verifying at once, and it takes no new keys or members.
    public func archiveProject(id: String) async throws(KeysmithClientError) -> Project {
        try await self.call(.post, "/v1/organization/projects/\(id)/archive", body: [:])
    }

    // MARK: Project API keys

    /// One page of the project's API keys, oldest first.
    /// - Parameter ownerProjectAccess: `active` (the default): keys whose owner belongs to the project; `inactive`:
    ///   keys of users who left it; `any`: both.
    public func listAPIKeys(
        project: String,
        limit: Int? = nil,
        after: String? = nil,
        ownerProjectAccess: OwnerProjectAccess? = nil
    ) async throws(KeysmithClientError) -> ListPage<ProjectAPIKey> {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        query.add("owner_project_access", ownerProjectAccess?.rawValue)
        return try await self.call(.get, "/v1/organization/projects/\(project)/api_keys", query: query)
    }

    /// Every API key of the project, page after page.
    public func apiKeys(project: String, ownerProjectAccess: OwnerProjectAccess? = nil, pageSize: Int = maximumPageSize)
        -> Pages<ProjectAPIKey>
    {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listAPIKeys(project: project, limit: limit, after: after, ownerProjectAccess: ownerProjectAccess)
        }
    }

    /// Issues a key to a member of the project (a Keysmith extension). The answer carries the plaintext once.
    /// - Parameters:
    ///   - scopes: What the key may call (empty: everything).
    ///   - expiresInSeconds: The key's lifetime (nil: it does not expire).
    public func createAPIKey(
        project: String,
        userID: String,
        name: String,
        scopes: [String] = [],
        expiresInSeconds: Int? = nil
    ) async throws(KeysmithClientError) -> IssuedKey<ProjectAPIKey> {
        var body: [String: JSONValue] = ["name": .string(name), "user_id": .string(userID)]
        if !scopes.isEmpty { body["scopes"] = .array(scopes.map(JSONValue.string)) }
        body["expires_in_seconds"] = expiresInSeconds.map(JSONValue.integer)
        return try await self.call(.post, "/v1/organization/projects/\(project)/api_keys", body: body)
    }

    /// One key of the project, redacted.
    public func retrieveAPIKey(project: String, id: String) async throws(KeysmithClientError) -> ProjectAPIKey {
        try await self.call(.get, "/v1/organization/projects/\(project)/api_keys/\(id)")
    }

    /// Replaces the key's scopes (an empty array: unrestricted) and sets its lifetime from now; nil leaves either.
    public func updateAPIKey(project: String, id: String, scopes: [String]? = nil, expiresInSeconds: Int? = nil)
        async throws(KeysmithClientError) -> ProjectAPIKey
    {
        var body: [String: JSONValue] = [:]
        body["scopes"] = scopes.map { .array($0.map(JSONValue.string)) }
        body["expires_in_seconds"] = expiresInSeconds.map(JSONValue.integer)
        return try await self.call(.post, "/v1/organization/projects/\(project)/api_keys/\(id)", body: body)
    }

    /// Gives the key a new secret (returned once); the old one keeps verifying for `gracePeriodSeconds` (0 to
    /// 604,800), then stops.
    public func rotateAPIKey(project: String, id: String, gracePeriodSeconds: Int = 0) async throws(KeysmithClientError)
        -> IssuedKey<ProjectAPIKey>
    {
        try await self.call(
            .post,
            "/v1/organization/projects/\(project)/api_keys/\(id)/rotate",
            body: ["grace_period_seconds": .integer(gracePeriodSeconds)]
        )
    }

    /// Revokes a user's key: it stops verifying at once. A service account's key goes with its account.
    public func deleteAPIKey(project: String, id: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/projects/\(project)/api_keys/\(id)")
    }

    // MARK: Service accounts

    /// One page of the project's service accounts, oldest first.
    public func listServiceAccounts(project: String, limit: Int? = nil, after: String? = nil)
        async throws(KeysmithClientError) -> ListPage<ProjectServiceAccount>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        return try await self.call(.get, "/v1/organization/projects/\(project)/service_accounts", query: query)
    }

    /// Every service account of the project, page after page.
    public func serviceAccounts(project: String, pageSize: Int = maximumPageSize) -> Pages<ProjectServiceAccount> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listServiceAccounts(project: project, limit: limit, after: after)
        }
    }

    /// Creates a service account and, unless `withoutKey`, its first key (plaintext returned once).
    public func createServiceAccount(
        project: String,
        name: String,
        withoutKey: Bool = false,
        expiresInSeconds: Int? = nil
    ) async throws(KeysmithClientError) -> CreatedServiceAccount {
        var body: [String: JSONValue] = ["name": .string(name)]
        if withoutKey { body["create_service_account_only"] = .bool(true) }
        body["expires_in_seconds"] = expiresInSeconds.map(JSONValue.integer)
        return try await self.call(.post, "/v1/organization/projects/\(project)/service_accounts", body: body)
    }

    /// One service account of the project.
    public func retrieveServiceAccount(project: String, id: String) async throws(KeysmithClientError) -> ProjectServiceAccount {
        try await self.call(.get, "/v1/organization/projects/\(project)/service_accounts/\(id)")
    }

    /// Renames the service account or changes its project role; nil leaves either.
    public func updateServiceAccount(project: String, id: String, name: String? = nil, role: ProjectRole? = nil)
        async throws(KeysmithClientError) -> ProjectServiceAccount
    {
        var body: [String: JSONValue] = [:]
        body["name"] = name.map(JSONValue.string)
        body["role"] = role.map { .string($0.rawValue) }
        return try await self.call(.post, "/v1/organization/projects/\(project)/service_accounts/\(id)", body: body)
    }

    /// Deletes the service account and its keys, which stop verifying at once.
    public func deleteServiceAccount(project: String, id: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/projects/\(project)/service_accounts/\(id)")
    }

    /// Issues another key to a service account; the answer carries the plaintext once.
    public func createServiceAccountKey(
        project: String,
        serviceAccount: String,
        name: String? = nil,
        scopes: [String] = [],
        expiresInSeconds: Int? = nil
    ) async throws(KeysmithClientError) -> ServiceAccountAPIKey {
        var body: [String: JSONValue] = [:]
        body["name"] = name.map(JSONValue.string)
        if !scopes.isEmpty { body["scopes"] = .array(scopes.map(JSONValue.string)) }
        body["expires_in_seconds"] = expiresInSeconds.map(JSONValue.integer)
        return try await self.call(
            .post,
            "/v1/organization/projects/\(project)/service_accounts/\(serviceAccount)/api_keys",
            body: body
        )
    }

    // MARK: Project users

    /// One page of the project's members, in the order they joined.
    public func listProjectUsers(project: String, limit: Int? = nil, after: String? = nil)
        async throws(KeysmithClientError) -> ListPage<ProjectUser>
    {
        var query = Query()
        query.add("limit", limit)
        query.add("after", after)
        return try await self.call(.get, "/v1/organization/projects/\(project)/users", query: query)
    }

    /// Every member of the project, page after page.
    public func projectUsers(project: String, pageSize: Int = maximumPageSize) -> Pages<ProjectUser> {
        Pages(pageSize: pageSize) { after, limit throws(KeysmithClientError) in
            try await self.listProjectUsers(project: project, limit: limit, after: after)
        }
    }

    /// Adds an organization user to the project, named by id.
    public func addProjectUser(project: String, userID: String, role: ProjectRole) async throws(KeysmithClientError) -> ProjectUser {
        try await self.call(
            .post,
            "/v1/organization/projects/\(project)/users",
            body: ["user_id": .string(userID), "role": .string(role.rawValue)]
        )
    }

    /// Adds an organization user to the project, named by email.
    public func addProjectUser(project: String, email: String, role: ProjectRole) async throws(KeysmithClientError) -> ProjectUser {
        try await self.call(
            .post,
            "/v1/organization/projects/\(project)/users",
            body: ["email": .string(email), "role": .string(role.rawValue)]
        )
    }

    /// One member of the project.
    public func retrieveProjectUser(project: String, userID: String) async throws(KeysmithClientError) -> ProjectUser {
        try await self.call(.get, "/v1/organization/projects/\(project)/users/\(userID)")
    }

    /// Changes a member's project role.
    public func modifyProjectUser(project: String, userID: String, role: ProjectRole) async throws(KeysmithClientError) -> ProjectUser {
        try await self.call(.post, "/v1/organization/projects/\(project)/users/\(userID)", body: ["role": .string(role.rawValue)])
    }

    /// Removes the user from the project; their keys there stay, inactive, and stop verifying.
    public func removeProjectUser(project: String, userID: String) async throws(KeysmithClientError) -> DeletedObject {
        try await self.call(.delete, "/v1/organization/projects/\(project)/users/\(userID)")
    }
}
