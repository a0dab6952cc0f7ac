import KeysmithCore
import SQLKit

/// One schema change, for each engine under the same name. Migrations are applied in order, recorded by name in
/// `keysmith_migrations`, and never edited once landed: a change is a new migration with the next number.
///
/// PostgreSQL's id columns are `COLLATE "C"`: ids compare byte by byte, as in SQLite, so that they sort in the order
/// they were made and keyset pages are the same on both engines.
struct Migration: Sendable {
    var name: String
    var sqlite: [String]
    var postgres: [String]

    func statements(for dialect: StoreDialect) -> [String] {
        switch dialect {
        case .sqlite: self.sqlite
        case .postgres: self.postgres
        }
    }
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
            ],
            postgres: [
                "CREATE TABLE keysmith_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
                """
                CREATE TABLE organizations (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    name TEXT NOT NULL,
                    created_at BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE users (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    email TEXT NOT NULL,
                    email_key TEXT NOT NULL,
                    name TEXT,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
                    added_at BIGINT NOT NULL,
                    CONSTRAINT users_email_key_unique UNIQUE (organization_id, email_key)
                )
                """,
                "CREATE INDEX users_by_organization ON users (organization_id, added_at, id)",
                """
                CREATE TABLE projects (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    name TEXT NOT NULL,
                    external_key_id TEXT,
                    residency TEXT,
                    created_at BIGINT NOT NULL,
                    archived_at BIGINT
                )
                """,
                "CREATE INDEX projects_by_organization ON projects (organization_id, created_at, id)",
                """
                CREATE TABLE project_members (
                    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
                    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
                    added_at BIGINT NOT NULL,
                    CONSTRAINT project_members_unique PRIMARY KEY (project_id, user_id)
                )
                """,
                "CREATE INDEX project_members_by_project ON project_members (project_id, added_at, user_id)",
                """
                CREATE TABLE service_accounts (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
                    name TEXT NOT NULL,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'member', 'none')),
                    created_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX service_accounts_by_project ON service_accounts (project_id, created_at, id)",
                """
                CREATE TABLE api_keys (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
                    owner_type TEXT NOT NULL CHECK (owner_type IN ('user', 'service_account')),
                    user_id TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
                    service_account_id TEXT COLLATE "C" REFERENCES service_accounts (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
                    redacted_value TEXT NOT NULL,
                    scopes TEXT NOT NULL DEFAULT '',
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT,
                    last_used_at BIGINT,
                    CHECK ((owner_type = 'user') = (user_id IS NOT NULL)),
                    CHECK ((owner_type = 'service_account') = (service_account_id IS NOT NULL))
                )
                """,
                "CREATE INDEX api_keys_by_project ON api_keys (project_id, created_at, id)",
                "CREATE INDEX api_keys_by_user ON api_keys (user_id)",
                "CREATE INDEX api_keys_by_service_account ON api_keys (service_account_id)",
                """
                CREATE TABLE admin_keys (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    name TEXT NOT NULL,
                    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
                    redacted_value TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT,
                    last_used_at BIGINT
                )
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
            ],
            postgres: [
                "ALTER TABLE api_keys ADD COLUMN previous_secret_hash TEXT COLLATE \"C\"",
                "ALTER TABLE api_keys ADD COLUMN previous_secret_expires_at BIGINT",
                "CREATE UNIQUE INDEX api_keys_by_previous_secret ON api_keys (previous_secret_hash)",
                """
                CREATE TABLE revoked_secrets (
                    secret_hash TEXT COLLATE "C" PRIMARY KEY,
                    key_id TEXT COLLATE "C" NOT NULL,
                    organization_id TEXT COLLATE "C" NOT NULL,
                    project_id TEXT COLLATE "C" NOT NULL,
                    revoked_at BIGINT NOT NULL
                )
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
            ],
            postgres: [
                """
                CREATE TABLE keysmith_changes (
                    sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    subject TEXT NOT NULL CHECK (subject IN ('api_key', 'admin_key', 'project', 'membership')),
                    subject_id TEXT COLLATE "C" NOT NULL,
                    related_id TEXT COLLATE "C",
                    changed_at BIGINT NOT NULL
                )
                """,
                "CREATE INDEX keysmith_changes_by_time ON keysmith_changes (changed_at)",
                "CREATE INDEX revoked_secrets_by_key ON revoked_secrets (key_id)",
            ]
        ),
        Migration(
            name: "0004_users_invites_audit_log",
            sqlite: [
                // A deleted user's row stays, so that the keys they owned keep naming their owner (inactive); its
                // email_key becomes 'deleted:<id>', freeing the address for a new user or invite.
                "ALTER TABLE users ADD COLUMN deleted_at INTEGER",
                """
                CREATE TABLE invites (
                    id TEXT PRIMARY KEY,
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    email TEXT NOT NULL,
                    email_key TEXT NOT NULL,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
                    projects TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    accepted_at INTEGER,
                    user_id TEXT REFERENCES users (id)
                ) STRICT
                """,
                "CREATE INDEX invites_by_organization ON invites (organization_id, created_at, id)",
                "CREATE INDEX invites_by_email ON invites (organization_id, email_key)",
                """
                CREATE TABLE audit_logs (
                    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    organization_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    effective_at INTEGER NOT NULL,
                    project_id TEXT,
                    project_name TEXT,
                    actor_id TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    resource_id TEXT NOT NULL,
                    details TEXT NOT NULL
                ) STRICT
                """,
                "CREATE INDEX audit_logs_by_organization ON audit_logs (organization_id, sequence)",
                "CREATE INDEX audit_logs_by_type ON audit_logs (organization_id, type, sequence)",
                "CREATE INDEX audit_logs_by_project ON audit_logs (organization_id, project_id, sequence)",
                "CREATE INDEX audit_logs_by_actor ON audit_logs (organization_id, actor_id, sequence)",
                "CREATE INDEX audit_logs_by_resource ON audit_logs (organization_id, resource_id, sequence)",
            ],
            postgres: [
                "ALTER TABLE users ADD COLUMN deleted_at BIGINT",
                """
                CREATE TABLE invites (
                    id TEXT COLLATE "C" PRIMARY KEY,
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    email TEXT NOT NULL,
                    email_key TEXT NOT NULL,
                    role TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
                    projects TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL,
                    accepted_at BIGINT,
                    user_id TEXT COLLATE "C" REFERENCES users (id)
                )
                """,
                "CREATE INDEX invites_by_organization ON invites (organization_id, created_at, id)",
                "CREATE INDEX invites_by_email ON invites (organization_id, email_key)",
                """
                CREATE TABLE audit_logs (
                    sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id TEXT COLLATE "C" NOT NULL UNIQUE,
                    organization_id TEXT COLLATE "C" NOT NULL,
                    type TEXT NOT NULL,
                    effective_at BIGINT NOT NULL,
                    project_id TEXT COLLATE "C",
                    project_name TEXT,
                    actor_id TEXT COLLATE "C" NOT NULL,
                    actor TEXT NOT NULL,
                    resource_id TEXT COLLATE "C" NOT NULL,
                    details TEXT NOT NULL
                )
                """,
                "CREATE INDEX audit_logs_by_organization ON audit_logs (organization_id, sequence)",
                "CREATE INDEX audit_logs_by_type ON audit_logs (organization_id, type, sequence)",
                "CREATE INDEX audit_logs_by_project ON audit_logs (organization_id, project_id, sequence)",
                "CREATE INDEX audit_logs_by_actor ON audit_logs (organization_id, actor_id, sequence)",
                "CREATE INDEX audit_logs_by_resource ON audit_logs (organization_id, resource_id, sequence)",
            ]
        ),
        // The audit log's effective_at filters read a narrow time range through this index instead of the whole
        // log (SQLStore.listAuditLogs).
        Migration(
            name: "0005_index_audit_log_times",
            sqlite: ["CREATE INDEX audit_logs_by_time ON audit_logs (organization_id, effective_at)"],
            postgres: ["CREATE INDEX audit_logs_by_time ON audit_logs (organization_id, effective_at)"]
        ),
        Migration(
            name: "0006_order_change_log_by_transaction",
            // The change log's entries are read in the order of (transaction_id, sequence) (see ChangePosition), and
            // pruning leaves the last position it deleted, so that a reader can tell it missed entries without
            // relying on sequence numbers being contiguous. Entries written before this migration keep
            // transaction 0, before every later one.
            sqlite: [
                "ALTER TABLE keysmith_changes ADD COLUMN transaction_id INTEGER NOT NULL DEFAULT 0",
                "CREATE INDEX keysmith_changes_by_position ON keysmith_changes (transaction_id, sequence)",
                """
                CREATE TABLE keysmith_changes_pruned (
                    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                    transaction_id INTEGER NOT NULL,
                    sequence INTEGER NOT NULL
                ) STRICT
                """,
                "INSERT INTO keysmith_changes_pruned (singleton, transaction_id, sequence) VALUES (1, 0, 0)",
            ],
            postgres: [
                "ALTER TABLE keysmith_changes ADD COLUMN transaction_id BIGINT NOT NULL DEFAULT 0",
                // From now on each entry carries the id of the transaction that wrote it (a FullTransactionId: 64
                // bits, never wrapping).
                """
                ALTER TABLE keysmith_changes ALTER COLUMN transaction_id
                SET DEFAULT CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)
                """,
                "CREATE INDEX keysmith_changes_by_position ON keysmith_changes (transaction_id, sequence)",
                """
                CREATE TABLE keysmith_changes_pruned (
                    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                    transaction_id BIGINT NOT NULL,
                    sequence BIGINT NOT NULL
                )
                """,
                "INSERT INTO keysmith_changes_pruned (singleton, transaction_id, sequence) VALUES (1, 0, 0)",
            ]
        ),
        Migration(
            name: "0007_record_model_usage",
            // The gateway's usage: one row per minute, kind, project, owner, key and model, its counts added to by
            // every replica's batches (an upsert that adds), so that no replica's requests are lost or counted twice.
            sqlite: [
                """
                CREATE TABLE usage_minutes (
                    organization_id TEXT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('completions', 'embeddings')),
                    minute INTEGER NOT NULL,
                    project_id TEXT NOT NULL,
                    owner_id TEXT NOT NULL,
                    api_key_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    requests INTEGER NOT NULL,
                    requests_without_usage INTEGER NOT NULL,
                    input_tokens INTEGER NOT NULL,
                    input_cached_tokens INTEGER NOT NULL,
                    output_tokens INTEGER NOT NULL,
                    PRIMARY KEY (organization_id, kind, minute, project_id, owner_id, api_key_id, model)
                ) STRICT, WITHOUT ROWID
                """
            ],
            postgres: [
                """
                CREATE TABLE usage_minutes (
                    organization_id TEXT COLLATE "C" NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('completions', 'embeddings')),
                    minute BIGINT NOT NULL,
                    project_id TEXT COLLATE "C" NOT NULL,
                    owner_id TEXT COLLATE "C" NOT NULL,
                    api_key_id TEXT COLLATE "C" NOT NULL,
                    model TEXT COLLATE "C" NOT NULL,
                    requests BIGINT NOT NULL,
                    requests_without_usage BIGINT NOT NULL,
                    input_tokens BIGINT NOT NULL,
                    input_cached_tokens BIGINT NOT NULL,
                    output_tokens BIGINT NOT NULL,
                    PRIMARY KEY (organization_id, kind, minute, project_id, owner_id, api_key_id, model)
                )
                """
            ]
        ),
        Migration(
            name: "0008_project_model_permissions",
            // A project's model permissions: one row for a project that has any (none: every model). The model ids
            // are kept one per line (ids hold no control characters).
            sqlite: [
                """
                CREATE TABLE project_model_permissions (
                    project_id TEXT PRIMARY KEY REFERENCES projects (id),
                    organization_id TEXT NOT NULL REFERENCES organizations (id),
                    mode TEXT NOT NULL CHECK (mode IN ('allow_list', 'deny_list')),
                    model_ids TEXT NOT NULL,
                    updated_at INTEGER NOT NULL
                ) STRICT
                """
            ],
            postgres: [
                """
                CREATE TABLE project_model_permissions (
                    project_id TEXT COLLATE "C" PRIMARY KEY REFERENCES projects (id),
                    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
                    mode TEXT NOT NULL CHECK (mode IN ('allow_list', 'deny_list')),
                    model_ids TEXT NOT NULL,
                    updated_at BIGINT NOT NULL
                )
                """
            ]
        ),
        Migration(
            name: "0009_project_rate_limits",
            // A project's rate limit settings for a model: a row only where it changed one from the operator's
            // defaults (NULL: the default; 0: no limit); a key's own limits (an extension; NULL or 0: none). And every
            // limit's windows, by subject (a project or a key): what all replicas have leased from each, which is
            // what keeps them together inside the limit (last_grant: what the latest lease took, for the statement
            // that takes it to return).
            sqlite: [
                """
                CREATE TABLE project_rate_limits (
                    project_id TEXT NOT NULL REFERENCES projects (id),
                    model TEXT NOT NULL,
                    max_requests_per_1_minute INTEGER,
                    max_tokens_per_1_minute INTEGER,
                    max_requests_per_1_day INTEGER,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (project_id, model)
                ) STRICT
                """,
                """
                CREATE TABLE api_key_rate_limits (
                    api_key_id TEXT PRIMARY KEY,
                    max_requests_per_1_minute INTEGER,
                    max_tokens_per_1_minute INTEGER,
                    max_concurrent_requests INTEGER,
                    updated_at INTEGER NOT NULL
                ) STRICT
                """,
                """
                CREATE TABLE rate_limit_windows (
                    subject TEXT NOT NULL,
                    model TEXT NOT NULL,
                    measure TEXT NOT NULL,
                    window_start INTEGER NOT NULL,
                    granted INTEGER NOT NULL CHECK (granted >= 0),
                    last_grant INTEGER NOT NULL,
                    PRIMARY KEY (subject, model, measure, window_start)
                ) STRICT
                """,
            ],
            postgres: [
                """
                CREATE TABLE project_rate_limits (
                    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
                    model TEXT COLLATE "C" NOT NULL,
                    max_requests_per_1_minute BIGINT,
                    max_tokens_per_1_minute BIGINT,
                    max_requests_per_1_day BIGINT,
                    updated_at BIGINT NOT NULL,
                    PRIMARY KEY (project_id, model)
                )
                """,
                """
                CREATE TABLE api_key_rate_limits (
                    api_key_id TEXT COLLATE "C" PRIMARY KEY,
                    max_requests_per_1_minute BIGINT,
                    max_tokens_per_1_minute BIGINT,
                    max_concurrent_requests BIGINT,
                    updated_at BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE rate_limit_windows (
                    subject TEXT COLLATE "C" NOT NULL,
                    model TEXT COLLATE "C" NOT NULL,
                    measure TEXT COLLATE "C" NOT NULL,
                    window_start BIGINT NOT NULL,
                    granted BIGINT NOT NULL CHECK (granted >= 0),
                    last_grant BIGINT NOT NULL,
                    PRIMARY KEY (subject, model, measure, window_start)
                )
                """,
            ]
        ),
    ]
}

/// The database holds migrations this build does not know: it was written by a newer Keysmith.
struct UnknownMigrationsError: Error, CustomStringConvertible {
    var names: [String]

    var description: String {
        "the database was migrated by a newer Keysmith (unknown migrations: \(self.names.joined(separator: ", "))); "
            + "upgrade Keysmith or use another database"
    }
}

extension SQLStore {
    /// Applies every pending migration, in order, in one transaction that holds the setup advisory lock: processes starting
    /// at once on an empty database take turns, and the later ones find the migrations applied. Returns the names
    /// applied. A database that holds migrations this build does not know (a newer Keysmith's) is refused.
    @discardableResult
    func migrate() async throws -> [String] {
        let now = self.clock.now()
        return try await self.engine.write(logger: self.logger) { database in
            if let lock = database.dialect.advisoryLock(.setup) {
                try await database.raw(lock).run()
            }
            let appliedAt = database.dialect == .postgres ? "BIGINT" : "INTEGER"
            try await database.execute(
                "CREATE TABLE IF NOT EXISTS keysmith_migrations (name TEXT PRIMARY KEY, applied_at \(appliedAt) NOT NULL)"
            )
            let applied = try await database.raw("SELECT name FROM keysmith_migrations").all().map { try $0.string("name") }
            let known = Set(Migrations.all.map(\.name))
            let unknown = applied.filter { !known.contains($0) }.sorted()
            guard unknown.isEmpty else { throw UnknownMigrationsError(names: unknown) }
            var appliedNow: [String] = []
            for migration in Migrations.all where !applied.contains(migration.name) {
                for statement in migration.statements(for: database.dialect) {
                    try await database.execute(statement)
                }
                try await database.raw(
                    "INSERT INTO keysmith_migrations (name, applied_at) VALUES (\(bind: migration.name), \(bind: now))"
                ).run()
                appliedNow.append(migration.name)
            }
            return appliedNow
        }
    }
}

/// The database lacks migrations this build needs: it has not been migrated yet (`keysmith serve` migrates on start).
struct PendingMigrationsError: Error, CustomStringConvertible {
    var names: [String]

    var description: String {
        "the database is missing migrations: \(self.names.joined(separator: ", "))"
    }
}

extension SQLStore {
    /// Ready when every migration this build knows is applied. Migrations a newer build applied since this one
    /// started do not make it unready: they only add to the schema, and during a rolling upgrade the replicas still
    /// on the old version must keep serving (a replica refuses them only when it starts, in ``migrate()``).
    func checkReadiness() async throws {
        let applied = try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.raw("SELECT name FROM keysmith_migrations").all().map { try $0.string("name") }
        }
        let pending = Migrations.all.map(\.name).filter { !applied.contains($0) }
        guard pending.isEmpty else { throw PendingMigrationsError(names: pending) }
    }
}
