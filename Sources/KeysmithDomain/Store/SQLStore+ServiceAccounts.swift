import KeysmithCore
import SQLKit

extension SQLStore {
    static let serviceAccountColumns = "id, organization_id, project_id, name, role, created_at"

    static func serviceAccount(from row: some StoreRowReader, offset: Int = 0) throws -> ServiceAccount {
        ServiceAccount(
            id: try row.id(at: offset),
            organizationID: try row.id(at: offset + 1),
            projectID: try row.id(at: offset + 2),
            name: try row.string(at: offset + 3),
            role: try enumValue(ServiceAccountRole.self, row.string(at: offset + 4), column: "role"),
            createdAt: try row.int(at: offset + 5)
        )
    }

    static func findServiceAccount(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: ServiceAccountID,
        lock: SQLLockingClause? = nil
    ) async throws -> ServiceAccount? {
        try await database.rows(ServiceAccountByID(organizationID: organizationID, projectID: projectID, id: id), lock: lock).first
    }

    struct ServiceAccountByID: StoreQuery {
        static let sql = """
            SELECT \(serviceAccountColumns) FROM service_accounts WHERE organization_id = $1 AND project_id = $2 AND id = $3
            """

        var organizationID: OrganizationID
        var projectID: ProjectID
        var id: ServiceAccountID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.projectID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> ServiceAccount { try SQLStore.serviceAccount(from: row) }
    }

    /// The account, or ``KeysmithError/notFound(_:id:)`` naming whichever of the project and the account is unknown,
    /// within the caller's transaction.
    static func serviceAccount(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: ServiceAccountID,
        lock: SQLLockingClause? = nil
    ) async throws -> ServiceAccount {
        if let account = try await findServiceAccount(database, organizationID: organizationID, projectID: projectID, id: id, lock: lock) {
            return account
        }
        _ = try await project(database, organizationID: organizationID, id: projectID)
        throw KeysmithError.notFound(.serviceAccount, id: id)
    }

    func createServiceAccount(_ account: ServiceAccount, key: NewAPIKey?) async throws {
        try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: account.organizationID, id: account.projectID)
            try await database.raw(
                """
                INSERT INTO service_accounts (id, organization_id, project_id, name, role, created_at)
                VALUES (\(bind: account.id), \(bind: account.organizationID), \(bind: account.projectID),
                        \(bind: account.name), \(bind: account.role.rawValue), \(bind: account.createdAt))
                """
            ).run()
            var data: [(String, AuditJSON)] = [("name", .string(account.name)), ("role", .string(account.role.rawValue))]
            if let key { data.append(("api_key_id", .string(key.id))) }
            try await Self.recordEvent(
                database,
                AuditEvent(.serviceAccountCreated, resourceID: account.id, projectID: account.projectID, data: data),
                organizationID: account.organizationID,
                at: account.createdAt
            )
            if let key {
                try await Self.insertAPIKey(database, key)
                try await Self.recordChanges(database, [.apiKey(id: key.id)], at: key.createdAt)
            }
        }
    }

    func serviceAccount(organizationID: OrganizationID, projectID: ProjectID, id: ServiceAccountID) async throws -> ServiceAccount {
        try await self.findOne { database in
            try await Self.findServiceAccount(database, organizationID: organizationID, projectID: projectID, id: id)
        } orExplain: { database in
            _ = try await Self.project(database, organizationID: organizationID, id: projectID)
            throw KeysmithError.notFound(.serviceAccount, id: id)
        }
    }

    func listServiceAccounts(organizationID: OrganizationID, projectID: ProjectID, page: PageRequest) async throws -> Page<ServiceAccount> {
        try await self.fetchPage(
            ServiceAccountList(organizationID: organizationID, projectID: projectID),
            page,
            ensureListExists: { database in _ = try await Self.project(database, organizationID: organizationID, id: projectID) }
        )
    }

    /// A project's service accounts, oldest first.
    struct ServiceAccountList: StoreList {
        static let select = "SELECT \(serviceAccountColumns) FROM service_accounts WHERE organization_id = $1 AND project_id = $2"
        static let filterCount = 2
        static let time = "created_at"
        static let id = "id"
        static let cursor = "SELECT created_at FROM service_accounts WHERE id = $CURSOR AND project_id = $2"

        var organizationID: OrganizationID
        var projectID: ProjectID

        var filters: [any Encodable & Sendable] { [self.organizationID, self.projectID] }

        static func decode(_ row: any StoreRowReader) throws -> ServiceAccount { try SQLStore.serviceAccount(from: row) }
    }

    func updateServiceAccount(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: ServiceAccountID,
        name: String?,
        role: ProjectRole?
    ) async throws -> ServiceAccount {
        try await self.engine.write(logger: self.logger) { database in
            var account = try await Self.serviceAccount(database, organizationID: organizationID, projectID: projectID, id: id, lock: .update)
            if let name { account.name = name }
            if let role { account.role = ServiceAccountRole(role) }
            try await database.raw(
                """
                UPDATE service_accounts SET name = \(bind: account.name), role = \(bind: account.role.rawValue)
                WHERE id = \(bind: id)
                """
            ).run()
            var changes: [(String, AuditJSON)] = []
            if let name { changes.append(("name", .string(name))) }
            if let role { changes.append(("role", .string(role.rawValue))) }
            try await Self.recordEvent(
                database,
                AuditEvent(.serviceAccountUpdated, resourceID: id, projectID: projectID, data: changes, dataKey: "changes_requested"),
                organizationID: organizationID,
                at: self.clock.now()
            )
            return account
        }
    }

    func deleteServiceAccount(organizationID: OrganizationID, projectID: ProjectID, id: ServiceAccountID) async throws {
        try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.serviceAccount(database, organizationID: organizationID, projectID: projectID, id: id, lock: .update)
            let locking = database.dialect.locksRows ? SQLQueryString(" \(SQLLockingClause.update)") : ""
            let keyIDs = try await database.raw(
                "SELECT id FROM api_keys WHERE service_account_id = \(bind: id) ORDER BY id" + locking
            ).all().map { try $0.id("id") as APIKeyID }
            let now = self.clock.now()
            try await Self.revokeSecrets(database, keyCondition: "service_account_id = \(bind: id)", at: now)
            try await database.raw("DELETE FROM api_keys WHERE service_account_id = \(bind: id)").run()
            try await database.raw("DELETE FROM service_accounts WHERE id = \(bind: id)").run()
            try await Self.recordEvent(
                database,
                AuditEvent(.serviceAccountDeleted, resourceID: id, projectID: projectID),
                organizationID: organizationID,
                at: now
            )
            try await Self.recordChanges(database, keyIDs.map { .apiKey(id: $0) }, at: now)
        }
    }
}
