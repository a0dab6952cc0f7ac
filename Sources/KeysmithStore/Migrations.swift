import KeysmithCore
import SQLKit

/// One schema change. Migrations are applied in order, each in its own transaction, recorded by name in
/// `keysmith_migrations`, and never edited once landed: a change is a new migration with the next number.
struct Migration: Sendable {
    var name: String
    var sqlite: [String]
}

enum Migrations {
    static let all: [Migration] = [
        Migration(
            name: "0001_create_schema",
            sqlite: [
                """
                CREATE TABLE keysmith_settings (
                    name TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                ) STRICT
                """,
                """
                CREATE TABLE organizations (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                ) STRICT
                """,
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    email TEXT NOT NULL,
                    email_key TEXT NOT NULL,
                    name TEXT,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
                    added_at INTEGER NOT NULL,
                    UNIQUE (organization_id, email_key)
                ) STRICT
                """,
                "CREATE INDEX users_by_organization ON users (organization_id, added_at, id)",
                """
                CREATE TABLE projects (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    name TEXT NOT NULL,
                    external_key_id TEXT,
                    residency TEXT,
                    created_at INTEGER NOT NULL,
                    archived_at INTEGER
                ) STRICT
                """,
                "CREATE INDEX projects_by_organization ON projects (organization_id, created_at, id)",
                """
                CREATE TABLE project_members (
                    project_id TEXT NOT NULL REFERENCES projects (id),
                    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
                    added_at INTEGER NOT NULL,
                    PRIMARY KEY (project_id, user_id)
                ) STRICT
                """,
                "CREATE INDEX project_members_by_project ON project_members (project_id, added_at, user_id)",
                """
                CREATE TABLE service_accounts (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    project_id TEXT NOT NULL REFERENCES projects (id),
                    name TEXT NOT NULL,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'member', 'none')),
                    created_at INTEGER NOT NULL
                ) STRICT
                """,
                "CREATE INDEX service_accounts_by_project ON service_accounts (project_id, created_at, id)",
                """
                CREATE TABLE api_keys (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    project_id TEXT NOT NULL REFERENCES projects (id),
                    owner_type TEXT NOT NULL CHECK (owner_type IN ('user', 'service_account')),
                    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
                    service_account_id TEXT REFERENCES service_accounts (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    secret_hash TEXT NOT NULL UNIQUE,
                    redacted_value TEXT NOT NULL,
                    scopes TEXT NOT NULL DEFAULT '',
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER,
                    last_used_at INTEGER,
                    CHECK ((owner_type = 'user') = (user_id IS NOT NULL)),
                    CHECK ((owner_type = 'service_account') = (service_account_id IS NOT NULL))
                ) STRICT
                """,
                "CREATE INDEX api_keys_by_project ON api_keys (project_id, created_at, id)",
                "CREATE INDEX api_keys_by_user ON api_keys (user_id)",
                "CREATE INDEX api_keys_by_service_account ON api_keys (service_account_id)",
                """
                CREATE TABLE admin_keys (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    name TEXT NOT NULL,
                    secret_hash TEXT NOT NULL UNIQUE,
                    redacted_value TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER,
                    last_used_at INTEGER
                ) STRICT
                """,
                "CREATE INDEX admin_keys_by_organization ON admin_keys (organization_id, created_at, id)",
            ]
        ),
        Migration(
            name: "0002_add_key_rotation",
            sqlite: [
                // After a rotation, the previous secret keeps verifying until previous_secret_expires_at.
                "ALTER TABLE api_keys ADD COLUMN previous_secret_hash TEXT",
                "ALTER TABLE api_keys ADD COLUMN previous_secret_expires_at INTEGER",
                "CREATE UNIQUE INDEX api_keys_by_previous_secret ON api_keys (previous_secret_hash)",
                // Secrets that no longer verify, so that the verify API can tell "revoked" from "never existed".
                """
                CREATE TABLE revoked_secrets (
                    secret_hash TEXT PRIMARY KEY,
                    key_id TEXT NOT NULL,
                    organization_id TEXT NOT NULL,
                    project_id TEXT NOT NULL,
                    revoked_at INTEGER NOT NULL
                ) STRICT
                """,
            ]
        ),
        Migration(
            name: "0003_create_change_log",
            sqlite: [
                // What each committed write changed for verification, in commit order: every process serving the
                // database applies these to its in-memory verification state (see ChangeFeed).
                """
                CREATE TABLE keysmith_changes (
                    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                    subject TEXT NOT NULL CHECK (subject IN ('api_key', 'admin_key', 'project', 'membership')),
                    subject_id TEXT NOT NULL,
                    related_id TEXT,
                    changed_at INTEGER NOT NULL
                ) STRICT
                """,
                "CREATE INDEX keysmith_changes_by_time ON keysmith_changes (changed_at)",
                // A changed key's revoked secrets leave the verification state by key id.
                "CREATE INDEX revoked_secrets_by_key ON revoked_secrets (key_id)",
            ]
        ),
    ]
}

/// The database holds migrations this build does not know: it was written by a newer Keysmith.
public struct UnknownMigrationsError: Error, CustomStringConvertible {
    public var names: [String]

    public var description: String {
        "the database was migrated by a newer Keysmith (unknown migrations: \(self.names.joined(separator: ", "))); "
            + "upgrade Keysmith or use another database"
    }
}

extension SQLStore {
    /// Applies every pending migration, in order, each in its own transaction. Returns the names applied.
    @discardableResult
    public func migrate() async throws -> [String] {
        try await self.engine.write { database in
            try await database.execute(
                "CREATE TABLE IF NOT EXISTS keysmith_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
            )
        }
        let applied = try await self.engine.read { database in
            try await database.raw("SELECT name FROM keysmith_migrations").all().map { try $0.string("name") }
        }
        let known = Set(Migrations.all.map(\.name))
        let unknown = applied.filter { !known.contains($0) }.sorted()
        guard unknown.isEmpty else { throw UnknownMigrationsError(names: unknown) }

        var appliedNow: [String] = []
        let now = self.clock.now()
        for migration in Migrations.all where !applied.contains(migration.name) {
            // Another process may have applied it since we looked: re-check inside the transaction.
            let didApply = try await self.engine.write { database in
                let already = try await database.raw(
                    "SELECT 1 AS present FROM keysmith_migrations WHERE name = \(bind: migration.name)"
                ).first()
                guard already == nil else { return false }
                for statement in migration.sqlite {
                    try await database.execute(statement)
                }
                try await database.raw(
                    "INSERT INTO keysmith_migrations (name, applied_at) VALUES (\(bind: migration.name), \(bind: now))"
                ).run()
                return true
            }
            if didApply { appliedNow.append(migration.name) }
        }
        return appliedNow
    }
}

/// The database lacks migrations this build needs: it has not been migrated yet (`keysmith serve` migrates on start).
public struct PendingMigrationsError: Error, CustomStringConvertible {
    public var names: [String]

    public var description: String {
        "the database is missing migrations: \(self.names.joined(separator: ", "))"
    }
}

extension SQLStore {
    public func checkReadiness() async throws {
        let applied = try await self.engine.read { database in
            try await database.raw("SELECT name FROM keysmith_migrations").all().map { try $0.string("name") }
        }
        let pending = Migrations.all.map(\.name).filter { !applied.contains($0) }
        guard pending.isEmpty else { throw PendingMigrationsError(names: pending) }
    }
}
