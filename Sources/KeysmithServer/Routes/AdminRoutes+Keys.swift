import Hummingbird
import KeysmithCore
import KeysmithDomain

extension AdminRoutes {
    // MARK: Project API keys

    @Sendable func listAPIKeys(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let page = try await self.reader(context).listAPIKeys(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            access: try query.enumeration("owner_project_access", default: OwnerProjectAccess.active),
            page: try query.page()
        )
        return Wire.list(page, id: \.id, capacity: 512 + page.items.count * 512) { writer, key in
            Wire.apiKey(&writer, key)
        }
    }

    /// Extension: a key for a project member. OpenAI issues these only in its dashboard.
    @Sendable func createAPIKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let name = try body.requiredString("name")
        let userID = UserID(rawValue: try body.requiredString("user_id"))
        let created = try await self.keysmith(as: context).createAPIKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            owner: .user(id: userID),
            name: name,
            scopes: try Self.validatedScopes(body.stringArray("scopes")) ?? [],
            expiresInSeconds: try body.integer("expires_in_seconds", in: Self.expiryRange)
        )
        return Wire.response { Wire.apiKey(&$0, created.key, value: created.plaintext) }
    }

    @Sendable func retrieveAPIKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let key = try await self.reader(context).apiKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            id: try context.parameters.requireID("api_key_id")
        )
        return Wire.response { Wire.apiKey(&$0, key) }
    }

    /// `expires_in_seconds` (from now) and `scopes` (replaces them; empty means unrestricted), as the newest SDK
    /// sends them.
    @Sendable func updateAPIKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        // OpenAI's reference: at least one of the two, and neither may be null.
        for name in ["scopes", "expires_in_seconds"] where body.isNull(name) {
            throw OpenAIError.invalid("Invalid '\(name)': expected a value, but got null instead.", param: name)
        }
        guard body.has("scopes") || body.has("expires_in_seconds") else {
            throw OpenAIError.invalid("Provide 'scopes', 'expires_in_seconds' or both: the update changes nothing else.", param: nil)
        }
        let key = try await self.keysmith(as: context).updateAPIKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            keyID: try context.parameters.requireID("api_key_id"),
            scopes: try Self.validatedScopes(body.stringArray("scopes")),
            expiresInSeconds: try body.integer("expires_in_seconds", in: Self.expiryRange)
        )
        return Wire.response { Wire.apiKey(&$0, key) }
    }

    @Sendable func deleteAPIKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let keyID: APIKeyID = try context.parameters.requireID("api_key_id")
        try await self.keysmith(as: context).deleteAPIKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            keyID: keyID
        )
        return Wire.deleted("organization.project.api_key.deleted", id: keyID)
    }

    /// Extension: a new secret for the key (value returned once); the old one keeps verifying for the grace period.
    @Sendable func rotateAPIKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let rotated = try await self.keysmith(as: context).rotateAPIKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            keyID: try context.parameters.requireID("api_key_id"),
            gracePeriodSeconds: try body.integer("grace_period_seconds", in: 0...604_800) ?? 0
        )
        return Wire.response {
            Wire.apiKey(&$0, rotated.key, value: rotated.plaintext, previousSecretExpiresAt: .some(rotated.previousSecretExpiresAt))
        }
    }

    // MARK: Service accounts

    @Sendable func listServiceAccounts(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let page = try await self.reader(context).listServiceAccounts(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            page: try QueryParameters(request.uri.query).page()
        )
        return Wire.list(page, id: \.id, write: Wire.serviceAccount)
    }

    /// `expires_in_seconds` is the first key's lifetime (the SDK sends it since 3.57); with
    /// `create_service_account_only`, which makes no key, only null is accepted.
    @Sendable func createServiceAccount(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let name = try body.requiredString("name")
        let withoutKey = try body.bool("create_service_account_only") ?? false
        let expiresInSeconds = try body.integer("expires_in_seconds", in: Self.expiryRange)
        if withoutKey, expiresInSeconds != nil {
            throw OpenAIError.invalid(
                "'expires_in_seconds' is the first API key's lifetime and cannot be set when 'create_service_account_only' is true.",
                param: "expires_in_seconds"
            )
        }
        let created = try await self.keysmith(as: context).createServiceAccount(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            name: name,
            withoutKey: withoutKey,
            expiresInSeconds: expiresInSeconds
        )
        return Wire.response { writer in
            writer.object { writer in
                Wire.serviceAccountFields(&writer, created.account)
                writer.key("api_key")
                if let key = created.key {
                    Wire.serviceAccountKeyWithValue(&writer, key.key, value: key.plaintext)
                } else {
                    writer.null()
                }
            }
        }
    }

    @Sendable func retrieveServiceAccount(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let account = try await self.reader(context).serviceAccount(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            id: try context.parameters.requireID("service_account_id")
        )
        return Wire.response { Wire.serviceAccount(&$0, account) }
    }

    @Sendable func updateServiceAccount(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let account = try await self.keysmith(as: context).updateServiceAccount(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            accountID: try context.parameters.requireID("service_account_id"),
            name: try body.string("name"),
            role: try body.enumeration("role", as: ProjectRole.self)
        )
        return Wire.response { Wire.serviceAccount(&$0, account) }
    }

    /// Deletes the account and every key it owns.
    @Sendable func deleteServiceAccount(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let accountID: ServiceAccountID = try context.parameters.requireID("service_account_id")
        try await self.keysmith(as: context).deleteServiceAccount(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            accountID: accountID
        )
        return Wire.deleted("organization.project.service_account.deleted", id: accountID)
    }

    @Sendable func createServiceAccountKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let created = try await self.keysmith(as: context).createAPIKey(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            owner: .serviceAccount(id: try context.parameters.requireID("service_account_id")),
            name: try body.string("name") ?? "Secret Key",
            scopes: try Self.validatedScopes(body.stringArray("scopes")) ?? [],
            expiresInSeconds: try body.integer("expires_in_seconds", in: Self.expiryRange)
        )
        return Wire.response { Wire.serviceAccountKeyWithValue(&$0, created.key, value: created.plaintext) }
    }

    // MARK: Admin keys

    @Sendable func listAdminKeys(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let order = try query.enumeration("order", default: SortOrder.asc)
        let page = try await self.reader(context).listAdminKeys(
            organizationID: context.principal.organizationID,
            descending: order == .desc,
            page: try query.page()
        )
        return Wire.list(page, id: \.id) { writer, key in Wire.adminKey(&writer, key) }
    }

    @Sendable func createAdminKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let created = try await self.keysmith(as: context).createAdminKey(
            name: try body.requiredString("name"),
            organizationID: context.principal.organizationID,
            expiresInSeconds: try body.integer("expires_in_seconds", in: Self.expiryRange)
        )
        return Wire.response { Wire.adminKey(&$0, created.key, value: created.plaintext) }
    }

    @Sendable func retrieveAdminKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let key = try await self.reader(context).adminKey(
            organizationID: context.principal.organizationID,
            id: try context.parameters.requireID("key_id")
        )
        return Wire.response { Wire.adminKey(&$0, key) }
    }

    @Sendable func deleteAdminKey(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let keyID: AdminKeyID = try context.parameters.requireID("key_id")
        try await self.keysmith(as: context).deleteAdminKey(organizationID: context.principal.organizationID, keyID: keyID)
        return Wire.deleted("organization.admin_api_key.deleted", id: keyID)
    }
}

enum SortOrder: String, CaseIterable {
    case asc
    case desc
}
