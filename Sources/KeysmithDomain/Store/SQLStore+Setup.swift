import KeysmithCore
import SQLKit

extension SQLStore {
    func serverSecret(override: [UInt8]?) async throws -> [UInt8] {
        try await self.engine.write(logger: self.logger) { database in
            // Replicas starting at once on a new database must not each make a secret of their own.
            if let lock = database.dialect.advisoryLock(.setup) {
                try await database.raw(lock).run()
            }
            let stored = try await database.raw(
                "SELECT name, value FROM keysmith_settings WHERE name IN ('hmac_secret', 'hmac_secret_fingerprint')"
            ).all()
            var settings: [String: String] = [:]
            for row in stored {
                settings[try row.string("name")] = try row.string("value")
            }
            let secret: [UInt8]
            if let override {
                secret = override
            } else if let hex = settings["hmac_secret"], let bytes = Hex.decode(hex) {
                return bytes
            } else {
                var generator = SystemRandomNumberGenerator()
                secret = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
                try await Self.setSetting(database, "hmac_secret", Hex.encode(secret))
            }
            let fingerprint = KeyHasher(secret: secret).fingerprint
            if let recorded = settings["hmac_secret_fingerprint"] {
                guard recorded == fingerprint else { throw SecretMismatchError() }
            } else {
                try await Self.setSetting(database, "hmac_secret_fingerprint", fingerprint)
            }
            return secret
        }
    }

    static func setSetting(_ database: any SQLSession, _ name: String, _ value: String) async throws {
        try await database.raw(
            """
            INSERT INTO keysmith_settings (name, value) VALUES (\(bind: name), \(bind: value))
            ON CONFLICT (name) DO UPDATE SET value = excluded.value
            """
        ).run()
    }

    func bootstrap(organization: Organization, adminKey: (key: AdminKey, secretHash: String)?) async throws -> Bool {
        try await self.engine.write(logger: self.logger) { database in
            // Replicas starting at once on an empty database: one bootstraps, the others find it done.
            if let lock = database.dialect.advisoryLock(.setup) {
                try await database.raw(lock).run()
            }
            guard try await database.raw("SELECT id FROM organizations LIMIT 1").first() == nil else { return false }
            try await Self.insertOrganization(database, organization)
            try await Self.setSetting(database, "default_organization_id", organization.id.rawValue)
            if let adminKey {
                try await Self.insertAdminKey(database, adminKey.key, secretHash: adminKey.secretHash)
            }
            return true
        }
    }

    func defaultOrganization() async throws -> Organization? {
        try await self.engine.unsafeRead(logger: self.logger) { database in try await database.rows(DefaultOrganization()).first }
    }

    struct DefaultOrganization: StoreQuery {
        static let sql = """
            SELECT o.id, o.name, o.created_at FROM organizations o
            JOIN keysmith_settings s ON s.name = 'default_organization_id' AND s.value = o.id
            """

        var bindings: [any Encodable & Sendable] { [] }

        static func decode(_ row: any StoreRowReader) throws -> Organization { try SQLStore.organization(from: row) }
    }

    func createOrganization(_ organization: Organization) async throws {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.insertOrganization(database, organization)
            // The first organization of a database is its default one.
            let hasDefault = try await database.raw(
                "SELECT value FROM keysmith_settings WHERE name = 'default_organization_id'"
            ).first()
            if hasDefault == nil {
                try await Self.setSetting(database, "default_organization_id", organization.id.rawValue)
            }
        }
    }

    func organization(id: OrganizationID) async throws -> Organization {
        let found = try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(OrganizationByID(id: id)).first
        }
        guard let found else { throw KeysmithError.notFound(.organization, id: id) }
        return found
    }

    struct OrganizationByID: StoreQuery {
        static let sql = "SELECT id, name, created_at FROM organizations WHERE id = $1"

        var id: OrganizationID

        var bindings: [any Encodable & Sendable] { [self.id] }

        static func decode(_ row: any StoreRowReader) throws -> Organization { try SQLStore.organization(from: row) }
    }

    static func insertOrganization(_ database: any SQLSession, _ organization: Organization) async throws {
        try await database.raw(
            """
            INSERT INTO organizations (id, name, created_at)
            VALUES (\(bind: organization.id), \(bind: organization.name), \(bind: organization.createdAt))
            """
        ).run()
    }

    static func organization(from row: some StoreRowReader) throws -> Organization {
        Organization(id: try row.id(at: 0), name: try row.string(at: 1), createdAt: try row.int(at: 2))
    }

    // MARK: Admin keys

    func createAdminKey(_ key: AdminKey, secretHash: String) async throws {
        try await self.engine.write(logger: self.logger) { database in
            guard try await database.raw("SELECT id FROM organizations WHERE id = \(bind: key.organizationID)").first() != nil
            else { throw KeysmithError.notFound(.organization, id: key.organizationID) }
            try await Self.insertAdminKey(database, key, secretHash: secretHash)
        }
    }

    static func insertAdminKey(_ database: any SQLSession, _ key: AdminKey, secretHash: String) async throws {
        try await database.raw(
            """
            INSERT INTO admin_keys (id, organization_id, name, secret_hash, redacted_value, created_at, expires_at)
            VALUES (\(bind: key.id), \(bind: key.organizationID), \(bind: key.name), \(bind: secretHash),
                    \(bind: key.redactedValue), \(bind: key.createdAt), \(bind: key.expiresAt))
            """
        ).run()
        try await Self.recordEvent(
            database,
            AuditEvent(
                .adminKeyCreated,
                resourceID: key.id,
                data: [("name", .string(key.name)), ("redacted_value", .string(key.redactedValue))]
            ),
            organizationID: key.organizationID,
            at: key.createdAt
        )
        try await Self.recordChanges(database, [.adminKey(id: key.id)], at: key.createdAt)
    }

    static let adminKeyColumns = "id, organization_id, name, redacted_value, created_at, expires_at, last_used_at"

    static func adminKey(from row: some StoreRowReader) throws -> AdminKey {
        AdminKey(
            id: try row.id(at: 0),
            organizationID: try row.id(at: 1),
            name: try row.string(at: 2),
            redactedValue: try row.string(at: 3),
            createdAt: try row.int(at: 4),
            expiresAt: try row.optionalInt(at: 5),
            lastUsedAt: try row.optionalInt(at: 6)
        )
    }

    func adminKey(organizationID: OrganizationID, id: AdminKeyID) async throws -> AdminKey {
        let found = try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(AdminKeyByID(organizationID: organizationID, id: id)).first
        }
        guard let found else { throw KeysmithError.notFound(.adminKey, id: id) }
        return found
    }

    struct AdminKeyByID: StoreQuery {
        static let sql = "SELECT \(adminKeyColumns) FROM admin_keys WHERE organization_id = $1 AND id = $2"

        var organizationID: OrganizationID
        var id: AdminKeyID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> AdminKey { try SQLStore.adminKey(from: row) }
    }

    func adminKeyCredentials() async throws -> [AdminKeyCredential] {
        try await self.engine.unsafeRead(logger: self.logger) { database in try await database.rows(AdminKeyCredentials()) }
    }

    /// Every admin key, with its secret's digest.
    struct AdminKeyCredentials: StoreQuery {
        static let sql = "SELECT \(adminKeyColumns), secret_hash FROM admin_keys"

        var bindings: [any Encodable & Sendable] { [] }

        static func decode(_ row: any StoreRowReader) throws -> AdminKeyCredential {
            AdminKeyCredential(key: try SQLStore.adminKey(from: row), secretHash: try row.string(at: 7))
        }
    }

    func adminKeyCredential(id: AdminKeyID) async throws -> AdminKeyCredential? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(AdminKeyCredentialByID(id: id)).first
        }
    }

    struct AdminKeyCredentialByID: StoreQuery {
        static let sql = "SELECT \(adminKeyColumns), secret_hash FROM admin_keys WHERE id = $1"

        var id: AdminKeyID

        var bindings: [any Encodable & Sendable] { [self.id] }

        static func decode(_ row: any StoreRowReader) throws -> AdminKeyCredential { try AdminKeyCredentials.decode(row) }
    }

    func listAdminKeys(organizationID: OrganizationID, descending: Bool, page: PageRequest) async throws -> Page<AdminKey> {
        if descending {
            return try await self.fetchPage(NewestFirst(list: AdminKeyList(organizationID: organizationID)), page)
        }
        return try await self.fetchPage(AdminKeyList(organizationID: organizationID), page)
    }

    /// An organization's admin keys, oldest first (``NewestFirst`` of it the other way).
    struct AdminKeyList: StoreList {
        static let select = "SELECT \(adminKeyColumns) FROM admin_keys WHERE organization_id = $1"
        static let filterCount = 1
        static let time = "created_at"
        static let id = "id"
        static let cursor = "SELECT created_at FROM admin_keys WHERE id = $CURSOR AND organization_id = $1"

        var organizationID: OrganizationID

        var filters: [any Encodable & Sendable] { [self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> AdminKey { try SQLStore.adminKey(from: row) }
    }

    /// Deletes an admin key; an organization keeps at least one, so deleting the last is refused. The
    /// organization's admin keys are locked first, so that two deletions at once cannot both see another key left.
    func deleteAdminKey(organizationID: OrganizationID, id: AdminKeyID) async throws {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lock(database, "admin_keys", where: "organization_id = \(bind: organizationID)", .update)
            let ids = try await database.raw(
                "SELECT id FROM admin_keys WHERE organization_id = \(bind: organizationID)"
            ).all().map { try $0.id("id") as AdminKeyID }
            guard ids.contains(id) else { throw KeysmithError.notFound(.adminKey, id: id) }
            guard ids.count > 1 else { throw KeysmithError.lastAdminKey(keyID: id) }
            try await database.raw("DELETE FROM admin_keys WHERE id = \(bind: id)").run()
            let now = self.clock.now()
            try await Self.recordEvent(database, AuditEvent(.adminKeyDeleted, resourceID: id), organizationID: organizationID, at: now)
            try await Self.recordChanges(database, [.adminKey(id: id)], at: now)
        }
    }
}

/// `KEYSMITH_SECRET` is not the secret this database's keys were hashed with.
struct SecretMismatchError: Error, CustomStringConvertible {
    var description: String {
        "the server secret (KEYSMITH_SECRET) differs from the one this database's keys were hashed with; "
            + "start with the original secret, or unset KEYSMITH_SECRET if the database keeps its own"
    }
}
