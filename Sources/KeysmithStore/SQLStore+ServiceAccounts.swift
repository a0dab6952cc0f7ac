public import KeysmithCore
import SQLKit

extension SQLStore {
    static let serviceAccountColumns = "id, organization_id, project_id, name, role, created_at"

    static func serviceAccount(from row: StoreRow) throws -> ServiceAccount {
        ServiceAccount(
            id: try row.string("id"),
            organizationID: try row.string("organization_id"),
            projectID: try row.string("project_id"),
            name: try row.string("name"),
            role: try row.string("role"),
            createdAt: try row.int("created_at")
        )
    }

    static func serviceAccount(
        _ database: any SQLSession,
        id: String,
        projectID: String,
        organizationID: String
    ) async throws -> ServiceAccount {
        let row = try await database.raw(
            """
            SELECT \(unsafeRaw: serviceAccountColumns) FROM service_accounts
            WHERE id = \(bind: id) AND project_id = \(bind: projectID) AND organization_id = \(bind: organizationID)
            """
        ).first()
        guard let row else {
            _ = try await project(database, id: projectID, organizationID: organizationID)
            throw KeysmithError.notFound(resource: "service account", id: id)
        }
        return try serviceAccount(from: row)
    }

    public func createServiceAccount(_ account: ServiceAccount, key: NewAPIKey?) async throws {
        try await self.engine.write { database in
            _ = try await Self.activeProject(database, id: account.projectID, organizationID: account.organizationID)
            try await database.raw(
                """
                INSERT INTO service_accounts (id, organization_id, project_id, name, role, created_at)
                VALUES (\(bind: account.id), \(bind: account.organizationID), \(bind: account.projectID),
                        \(bind: account.name), \(bind: account.role), \(bind: account.createdAt))
                """
            ).run()
            if let key {
                try await Self.insertAPIKey(database, key)
            }
        }
    }

    public func serviceAccount(id: String, projectID: String, organizationID: String) async throws -> ServiceAccount {
        try await self.engine.read { database in
            try await Self.serviceAccount(database, id: id, projectID: projectID, organizationID: organizationID)
        }
    }

    public func listServiceAccounts(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ServiceAccount> {
        try await self.engine.read { database in
            _ = try await Self.project(database, id: projectID, organizationID: organizationID)
            let query: SQLQueryString = """
                SELECT \(unsafeRaw: Self.serviceAccountColumns) FROM service_accounts WHERE project_id = \(bind: projectID)
                """
            return try await Self.fetchPage(
                database,
                base: query,
                page: page,
                time: "created_at",
                id: "id",
                cursor: """
                    SELECT created_at FROM service_accounts WHERE id = \(bind: page.after ?? "") AND project_id = \(bind: projectID)
                    """,
                decode: { try Self.serviceAccount(from: $0.copy()) }
            )
        }
    }

    public func updateServiceAccount(
        id: String,
        projectID: String,
        organizationID: String,
        name: String?,
        role: String?
    ) async throws -> ServiceAccount {
        try await self.engine.write { database in
            var account = try await Self.serviceAccount(database, id: id, projectID: projectID, organizationID: organizationID)
            if let name { account.name = name }
            if let role { account.role = role }
            try await database.raw(
                "UPDATE service_accounts SET name = \(bind: account.name), role = \(bind: account.role) WHERE id = \(bind: id)"
            ).run()
            return account
        }
    }

    public func deleteServiceAccount(id: String, projectID: String, organizationID: String) async throws {
        try await self.engine.write { database in
            _ = try await Self.serviceAccount(database, id: id, projectID: projectID, organizationID: organizationID)
            try await Self.revokeSecrets(database, keyCondition: "service_account_id = \(bind: id)", at: self.clock.now())
            try await database.raw("DELETE FROM api_keys WHERE service_account_id = \(bind: id)").run()
            try await database.raw("DELETE FROM service_accounts WHERE id = \(bind: id)").run()
        }
    }
}
