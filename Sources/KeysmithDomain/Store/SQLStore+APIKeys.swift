import KeysmithCore
import SQLKit

extension SQLStore {
    /// A key's columns with everything its `owner` object shows, in the order ``apiKey(from:)`` reads them by
    /// position: the first columns of every query that selects ``apiKeyColumns`` with ``apiKeyJoins``.
    enum APIKeyColumn: Int, CaseIterable {
        case id, organizationID, projectID, name, redactedValue, createdAt, lastUsedAt, expiresAt, scopes, ownerType
        case userID, userEmail, userName, userRole, userAddedAt, memberRole
        case accountID, accountName, accountRole, accountCreatedAt

        var expression: String {
            switch self {
            case .id: "k.id"
            case .organizationID: "k.organization_id"
            case .projectID: "k.project_id"
            case .name: "k.name"
            case .redactedValue: "k.redacted_value"
            case .createdAt: "k.created_at"
            case .lastUsedAt: "k.last_used_at"
            case .expiresAt: "k.expires_at"
            case .scopes: "k.scopes"
            case .ownerType: "k.owner_type"
            case .userID: "u.id AS user_id"
            case .userEmail: "u.email AS user_email"
            case .userName: "u.name AS user_name"
            case .userRole: "u.role AS user_role"
            case .userAddedAt: "u.added_at AS user_added_at"
            case .memberRole: "m.role AS member_role"
            case .accountID: "s.id AS account_id"
            case .accountName: "s.name AS account_name"
            case .accountRole: "s.role AS account_role"
            case .accountCreatedAt: "s.created_at AS account_created_at"
            }
        }
    }

    static let apiKeyColumns = APIKeyColumn.allCases.map(\.expression).joined(separator: ", ")

    static let apiKeyJoins = """
        FROM api_keys k
        LEFT JOIN users u ON u.id = k.user_id
        LEFT JOIN project_members m ON m.project_id = k.project_id AND m.user_id = k.user_id
        LEFT JOIN service_accounts s ON s.id = k.service_account_id
        """

    static let apiKeySelect = "SELECT \(apiKeyColumns) \(apiKeyJoins)"

    /// Reads a key by position (a list page reads 20 columns of up to 100 rows, so looking each up by name costs
    /// more than the query); the positions come from ``APIKeyColumn``, like the SELECT list.
    static func apiKey(from row: some StoreRowReader) throws -> APIKey {
        typealias C = APIKeyColumn
        assert(
            zip(C.allCases, row.columnNames).allSatisfy { $0.expression.hasSuffix($1) },
            "the query does not start with apiKeyColumns: \(row.columnNames)"
        )
        let organizationID: OrganizationID = try row.id(at: C.organizationID.rawValue)
        let projectID: ProjectID = try row.id(at: C.projectID.rawValue)
        let owner: APIKeyOwner
        if try row.string(at: C.ownerType.rawValue) == "user" {
            let user = User(
                id: try row.id(at: C.userID.rawValue),
                organizationID: organizationID,
                email: try row.string(at: C.userEmail.rawValue),
                name: try row.optionalString(at: C.userName.rawValue),
                role: try enumValue(OrganizationRole.self, row.string(at: C.userRole.rawValue), column: "user_role"),
                addedAt: try row.int(at: C.userAddedAt.rawValue)
            )
            let memberRole = try row.optionalString(at: C.memberRole.rawValue)
            owner = .user(user, role: try memberRole.map { try enumValue(ProjectRole.self, $0, column: "member_role") })
        } else {
            owner = .serviceAccount(
                ServiceAccount(
                    id: try row.id(at: C.accountID.rawValue),
                    organizationID: organizationID,
                    projectID: projectID,
                    name: try row.string(at: C.accountName.rawValue),
                    role: try enumValue(ServiceAccountRole.self, row.string(at: C.accountRole.rawValue), column: "account_role"),
                    createdAt: try row.int(at: C.accountCreatedAt.rawValue)
                )
            )
        }
        return APIKey(
            id: try row.id(at: C.id.rawValue),
            organizationID: organizationID,
            projectID: projectID,
            name: try row.string(at: C.name.rawValue),
            redactedValue: try row.string(at: C.redactedValue.rawValue),
            createdAt: try row.int(at: C.createdAt.rawValue),
            lastUsedAt: try row.optionalInt(at: C.lastUsedAt.rawValue),
            expiresAt: try row.optionalInt(at: C.expiresAt.rawValue),
            scopes: ScopeList.decode(try row.string(at: C.scopes.rawValue)),
            owner: owner
        )
    }

    static func insertAPIKey(_ database: any SQLSession, _ key: NewAPIKey) async throws {
        let userID: UserID?
        let accountID: ServiceAccountID?
        switch key.owner {
        case .user(let id): (userID, accountID) = (id, nil)
        case .serviceAccount(let id): (userID, accountID) = (nil, id)
        }
        _ = try await database.rows(InsertAPIKey(key: key, userID: userID, serviceAccountID: accountID))
    }

    struct InsertAPIKey: StoreQuery {
        static let sql = """
            INSERT INTO api_keys (id, organization_id, project_id, owner_type, user_id, service_account_id, name,
                                  secret_hash, redacted_value, scopes, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            """

        var key: NewAPIKey
        var userID: UserID?
        var serviceAccountID: ServiceAccountID?

        var bindings: [any Encodable & Sendable] {
            [
                self.key.id, self.key.organizationID, self.key.projectID, self.key.owner.type.rawValue, self.userID,
                self.serviceAccountID, self.key.name, self.key.secret.hash, self.key.secret.redactedValue,
                ScopeList.encode(self.key.scopes), self.key.createdAt, self.key.expiresAt,
            ]
        }

        static func decode(_ row: any StoreRowReader) throws {}
    }

    static func findAPIKey(_ database: any SQLSession, organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws -> APIKey? {
        try await database.rows(APIKeyByID(organizationID: organizationID, projectID: projectID, id: id)).first
    }

    struct APIKeyByID: StoreQuery {
        static let sql = "\(apiKeySelect) WHERE k.organization_id = $1 AND k.project_id = $2 AND k.id = $3"

        var organizationID: OrganizationID
        var projectID: ProjectID
        var id: APIKeyID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.projectID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> APIKey { try SQLStore.apiKey(from: row) }
    }

    /// The key, or ``KeysmithError/notFound(_:id:)`` naming whichever of the project and the key is unknown, within
    /// the caller's transaction.
    static func apiKey(_ database: any SQLSession, organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws -> APIKey {
        if let key = try await findAPIKey(database, organizationID: organizationID, projectID: projectID, id: id) {
            return key
        }
        _ = try await project(database, organizationID: organizationID, id: projectID)
        throw KeysmithError.notFound(.apiKey, id: id)
    }

    /// On SQLite, five statements in one transaction: the project, the owner, the key, its audit event, its change
    /// log entry. On PostgreSQL, the same reads, locks and inserts as one statement (``CreateAPIKey``) between BEGIN
    /// and COMMIT: three round trips where the five statements took seven. The key returned is made from what they
    /// read, not read back.
    func createAPIKey(_ key: NewAPIKey) async throws -> APIKey {
        if self.engine.dialect == .postgres {
            return try await self.createAPIKeyInOneStatement(key)
        }
        return try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: key.organizationID, id: key.projectID)
            let owner: APIKeyOwner
            switch key.owner {
            case .user(let userID):
                // The membership cannot go before this key is stored: the key is an active member's.
                let member = try await Self.findMember(
                    database,
                    organizationID: key.organizationID,
                    projectID: key.projectID,
                    userID: userID,
                    sharingMembership: true
                )
                guard let member else { throw KeysmithError.ownerNotProjectMember(userID: userID, projectID: key.projectID) }
                owner = .user(member.user, role: member.role)
            case .serviceAccount(let accountID):
                // The account cannot be deleted before this key is stored (its deletion takes its keys).
                let account = try await Self.serviceAccount(
                    database,
                    organizationID: key.organizationID,
                    projectID: key.projectID,
                    id: accountID,
                    lock: .share
                )
                owner = .serviceAccount(account)
            }
            try await Self.insertAPIKey(database, key)
            try await Self.recordEvent(database, Self.keyCreatedEvent(key), organizationID: key.organizationID, at: key.createdAt)
            try await Self.recordChanges(database, [.apiKey(id: key.id)], at: key.createdAt)
            return APIKey(
                id: key.id,
                organizationID: key.organizationID,
                projectID: key.projectID,
                name: key.name,
                redactedValue: key.secret.redactedValue,
                createdAt: key.createdAt,
                lastUsedAt: nil,
                expiresAt: key.expiresAt,
                scopes: key.scopes,
                owner: owner
            )
        }
    }

    private func createAPIKeyInOneStatement(_ key: NewAPIKey) async throws -> APIKey {
        let actor = AuditContext.actor
        let statement = CreateAPIKey(
            key: key,
            auditID: IDGenerator.shared.makeText(.auditLog),
            event: Self.keyCreatedEvent(key),
            actorID: actor.id,
            actorJSON: actor.json
        )
        // In a transaction of its own, not as a statement committed on its own: postgres-nio ends a statement's rows
        // before PostgreSQL commits it (at the Sync that follows), so only a COMMIT's answer says it is committed.
        let rows = try await self.engine.write(logger: self.logger) { database in try await database.rows(statement) }
        guard let created = rows.first else {
            throw KeysmithError.notFound(.project, id: key.projectID)
        }
        guard !created.project.isArchived else { throw KeysmithError.projectArchived(projectID: key.projectID) }
        let owner: APIKeyOwner
        switch key.owner {
        case .user(let userID):
            guard let member = created.member else {
                throw KeysmithError.ownerNotProjectMember(userID: userID, projectID: key.projectID)
            }
            owner = .user(member.user, role: member.role)
        case .serviceAccount(let accountID):
            guard let account = created.serviceAccount else { throw KeysmithError.notFound(.serviceAccount, id: accountID) }
            owner = .serviceAccount(account)
        }
        // The project and the owner allowed it, so the key was inserted, and its change log entry with it.
        guard let position = created.position else {
            throw StoreRowError(column: "transaction_id", problem: "is NULL: the key was not inserted, though its project and owner allow it")
        }
        ChangeReceipt.current?.record([.apiKey(id: key.id)], at: position)
        return APIKey(
            id: key.id,
            organizationID: key.organizationID,
            projectID: key.projectID,
            name: key.name,
            redactedValue: key.secret.redactedValue,
            createdAt: key.createdAt,
            lastUsedAt: nil,
            expiresAt: key.expiresAt,
            scopes: key.scopes,
            owner: owner
        )
    }

    /// A key's creation as one statement, for PostgreSQL: it reads the project and the owner (a membership with its
    /// user, or a service account) and shares their rows until it commits, as the transaction of
    /// ``createAPIKey(_:)`` does; only if the project is active and the owner is there do its data-modifying WITH
    /// clauses insert the key, its audit event and its change log entry (which notifies the other replicas). It
    /// returns what it read and where the entry went, so that a refusal is told from its one row: no row, no
    /// project; an archived one; no owner. PostgreSQL's only: SQLite has no data-modifying WITH, and its one writer
    /// needs no row locks, so it runs the steps in a transaction, where a round trip costs nothing.
    struct CreateAPIKey: StoreQuery {
        static let sql = """
            WITH project AS (
                SELECT \(projectColumns) FROM projects WHERE id = $2 AND organization_id = $1 FOR SHARE
            ), member AS (
                \(memberSelect)
                WHERE $4 = 'user' AND m.project_id = $2 AND m.user_id = $5 AND u.organization_id = $1 FOR SHARE OF m
            ), account AS (
                SELECT \(serviceAccountColumns) FROM service_accounts
                WHERE $4 = 'service_account' AND organization_id = $1 AND project_id = $2 AND id = $6 FOR SHARE
            ), created AS (
                INSERT INTO api_keys (id, organization_id, project_id, owner_type, user_id, service_account_id, name,
                                      secret_hash, redacted_value, scopes, created_at, expires_at)
                SELECT $3, $1, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM project
                WHERE project.archived_at IS NULL AND (EXISTS (SELECT 1 FROM member) OR EXISTS (SELECT 1 FROM account))
                RETURNING id
            ), event AS (
                INSERT INTO audit_logs
                    (id, organization_id, type, effective_at, project_id, project_name, actor_id, actor, resource_id, details)
                SELECT $13, $1, $14, $11, $2, project.name, $15, $16, created.id, $17 FROM created CROSS JOIN project
            ), change AS (
                INSERT INTO keysmith_changes (subject, subject_id, related_id, changed_at)
                SELECT 'api_key', created.id, NULL, $11 FROM created
                CROSS JOIN (SELECT pg_notify('\(StoreDialect.changesChannel)', \(StoreDialect.notifierPayload))) AS notified
                RETURNING transaction_id, sequence
            )
            SELECT project.*, member.*, account.*, change.transaction_id, change.sequence
            FROM project LEFT JOIN member ON TRUE LEFT JOIN account ON TRUE LEFT JOIN change ON TRUE
            """
        var key: NewAPIKey
        var auditID: String
        var event: AuditEvent
        var actorID: String?
        var actorJSON: String

        var bindings: [any Encodable & Sendable] {
            let userID: UserID?
            let accountID: ServiceAccountID?
            switch self.key.owner {
            case .user(let id): (userID, accountID) = (id, nil)
            case .serviceAccount(let id): (userID, accountID) = (nil, id)
            }
            return [
                self.key.organizationID, self.key.projectID, self.key.id, self.key.owner.type.rawValue, userID, accountID,
                self.key.name, self.key.secret.hash, self.key.secret.redactedValue, ScopeList.encode(self.key.scopes),
                self.key.createdAt, self.key.expiresAt, self.auditID, self.event.type.rawValue, self.actorID,
                self.actorJSON, self.event.details,
            ]
        }

        /// What the statement read, and where its change log entry went (nil: nothing was inserted).
        struct Row: Sendable {
            var project: Project
            var member: ProjectMember?
            var serviceAccount: ServiceAccount?
            var position: ChangePosition?
        }

        /// The columns: the project's 7 (0–6), the membership's 3 and its user's 6 (7–15), the account's 6
        /// (16–21), the change log position (22, 23).
        static func decode(_ row: any StoreRowReader) throws -> Row {
            let member: ProjectMember? =
                try row.optionalString(at: 10) == nil
                ? nil
                : ProjectMember(
                    projectID: try row.id(at: 7),
                    user: try SQLStore.user(from: row, offset: 10),
                    role: try enumValue(ProjectRole.self, row.string(at: 8), column: "member_role"),
                    addedAt: try row.int(at: 9)
                )
            let account = try row.optionalString(at: 16) == nil ? nil : try SQLStore.serviceAccount(from: row, offset: 16)
            let position: ChangePosition? =
                try row.optionalInt(at: 22) == nil
                ? nil
                : ChangePosition(transaction: Int64(try row.int(at: 22)), sequence: Int64(try row.int(at: 23)))
            return Row(project: try SQLStore.project(from: row), member: member, serviceAccount: account, position: position)
        }
    }

    func apiKey(organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws -> APIKey {
        try await self.findOne { database in
            try await Self.findAPIKey(database, organizationID: organizationID, projectID: projectID, id: id)
        } orExplain: { database in
            _ = try await Self.project(database, organizationID: organizationID, id: projectID)
            throw KeysmithError.notFound(.apiKey, id: id)
        }
    }

    func listAPIKeys(
        organizationID: OrganizationID,
        projectID: ProjectID,
        access: OwnerProjectAccess,
        page: PageRequest
    ) async throws -> Page<APIKey> {
        try await self.fetchPage(
            APIKeyList(organizationID: organizationID, projectID: projectID, access: access),
            page,
            // A page with keys proves the project exists; only an empty one asks.
            ensureListExists: { database in _ = try await Self.project(database, organizationID: organizationID, id: projectID) }
        )
    }

    /// A project's keys, oldest first; which of them, by whether their owner can still use them (`$3`,
    /// ``OwnerProjectAccess``): a key is active when a service account owns it or its user is still a member.
    struct APIKeyList: StoreList {
        static let select = """
            \(apiKeySelect)
            WHERE k.organization_id = $1 AND k.project_id = $2
              AND ($3 = 'any' OR ($3 = 'active') = (k.owner_type = 'service_account' OR m.user_id IS NOT NULL))
            """
        static let filterCount = 3
        static let time = "k.created_at"
        static let id = "k.id"
        static let cursor = "SELECT created_at FROM api_keys WHERE id = $CURSOR AND organization_id = $1 AND project_id = $2"

        var organizationID: OrganizationID
        var projectID: ProjectID
        var access: OwnerProjectAccess

        var filters: [any Encodable & Sendable] { [self.organizationID, self.projectID, self.access.rawValue] }

        static func decode(_ row: any StoreRowReader) throws -> APIKey { try SQLStore.apiKey(from: row) }
    }

    func deleteAPIKey(organizationID: OrganizationID, projectID: ProjectID, id: APIKeyID) async throws {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lock(database, "api_keys", where: "id = \(bind: id)", .update)
            let key = try await Self.apiKey(database, organizationID: organizationID, projectID: projectID, id: id)
            if case .serviceAccount(let account) = key.owner {
                throw KeysmithError.serviceAccountKey(keyID: id, serviceAccountID: account.id)
            }
            let now = self.clock.now()
            try await Self.revokeSecrets(database, keyCondition: "id = \(bind: id)", at: now)
            try await database.raw("DELETE FROM api_keys WHERE id = \(bind: id)").run()
            try await Self.recordEvent(
                database,
                AuditEvent(.apiKeyDeleted, resourceID: id, projectID: projectID),
                organizationID: organizationID,
                at: now
            )
            try await Self.recordChanges(database, [.apiKey(id: id)], at: now)
        }
    }

    /// Which of a key's secrets ``revokeSecrets(_:_:keyCondition:at:)`` records.
    enum SecretColumns {
        case currentAndPrevious
        case previousOnly

        var names: [String] {
            switch self {
            case .currentAndPrevious: ["secret_hash", "previous_secret_hash"]
            case .previousOnly: ["previous_secret_hash"]
            }
        }
    }

    /// Records secrets of the keys matching `keyCondition` as revoked, so that the verify API can say so.
    static func revokeSecrets(
        _ database: any SQLSession,
        _ columns: SecretColumns = .currentAndPrevious,
        keyCondition: SQLQueryString,
        at time: UnixSeconds
    ) async throws {
        for column in columns.names {
            try await database.raw(
                """
                INSERT INTO revoked_secrets (secret_hash, key_id, organization_id, project_id, revoked_at)
                SELECT \(unsafeRaw: column), id, organization_id, project_id, \(bind: time) FROM api_keys
                WHERE \(unsafeRaw: column) IS NOT NULL
                """ + " AND " + keyCondition + " ON CONFLICT (secret_hash) DO NOTHING"
            ).run()
        }
    }

    func updateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: APIKeyID,
        scopes: [String]?,
        expiresAt: UnixSeconds??,
        now: UnixSeconds
    ) async throws -> APIKey {
        try await self.engine.write(logger: self.logger) { database in
            var key = try await Self.unexpiredKey(database, organizationID: organizationID, projectID: projectID, id: id, now: now, for: .update)
            if let scopes { key.scopes = scopes }
            if let expiresAt { key.expiresAt = expiresAt }
            try await database.raw(
                """
                UPDATE api_keys SET scopes = \(bind: ScopeList.encode(key.scopes)), expires_at = \(bind: key.expiresAt)
                WHERE id = \(bind: id)
                """
            ).run()
            var changes: [(String, AuditJSON)] = []
            if let scopes { changes.append(("scopes", .strings(scopes))) }
            if let expiresAt {
                // OpenAI's event holds the lifetime asked for; Keysmith adds the moment it gives.
                changes.append(("expires_in_seconds", expiresAt.map { AuditJSON.int($0 - now) } ?? .null))
                changes.append(("expires_at", expiresAt.map(AuditJSON.int) ?? .null))
            }
            try await Self.recordEvent(
                database,
                AuditEvent(.apiKeyUpdated, resourceID: id, projectID: projectID, data: changes, dataKey: "changes_requested"),
                organizationID: organizationID,
                at: now
            )
            try await Self.recordChanges(database, [.apiKey(id: id)], at: now)
            return key
        }
    }

    /// The key, which must not have expired: expired keys cannot be updated or rotated. Its row is claimed for the
    /// change until the transaction ends.
    static func unexpiredKey(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: APIKeyID,
        now: UnixSeconds,
        for operation: KeysmithError.KeyOperation
    ) async throws -> APIKey {
        try await Self.lock(database, "api_keys", where: "id = \(bind: id)", .update)
        let key = try await Self.apiKey(database, organizationID: organizationID, projectID: projectID, id: id)
        if let expiry = key.expiresAt, expiry <= now {
            throw KeysmithError.keyExpired(keyID: id, operation: operation)
        }
        return key
    }

    /// `api_key.created`: the key's id, name, redacted value, owner and scopes; never its secret.
    static func keyCreatedEvent(_ key: NewAPIKey) -> AuditEvent {
        let owner: (String, AuditJSON) =
            switch key.owner {
            case .user(let id): ("owner", .object([("type", .string("user")), ("id", .string(id))]))
            case .serviceAccount(let id): ("owner", .object([("type", .string("service_account")), ("id", .string(id))]))
            }
        return AuditEvent(
            .apiKeyCreated,
            resourceID: key.id,
            projectID: key.projectID,
            data: [
                ("name", .string(key.name)), ("redacted_value", .string(key.secret.redactedValue)), owner,
                ("scopes", .strings(key.scopes)),
            ]
        )
    }
}
