import KeysmithCore
import SQLKit

extension SQLStore {
    /// The project's own settings by model. Throws ``KeysmithError/notFound(_:id:)`` for an unknown project (or one
    /// of another organization).
    func rateLimitSettings(organizationID: OrganizationID, projectID: ProjectID) async throws -> [String: RateLimitSettings] {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            let rows = try await database.rows(ProjectRateLimitSettings(projectID: projectID, organizationID: organizationID))
            guard !rows.isEmpty else { throw KeysmithError.notFound(.project, id: projectID) }
            return Dictionary(rows.compactMap { $0 }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Changes the project's settings for `model`: each value `changes` holds replaces the stored one (0: no limit),
    /// the rest stay. The project must not be archived. Returns the project's settings for the model as stored.
    func updateRateLimit(
        organizationID: OrganizationID,
        projectID: ProjectID,
        model: String,
        rateLimitID: String,
        _ changes: RateLimitSettings
    ) async throws -> RateLimitSettings {
        let now = self.clock.now()
        return try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: organizationID, id: projectID)
            let stored = try await database.rows(
                UpsertRateLimitSettings(projectID: projectID, model: model, settings: changes, updatedAt: now)
            )
            guard let settings = stored.first else {
                throw StoreRowError(column: "project_rate_limits", problem: "returned no row from its upsert")
            }
            var requested: [(String, AuditJSON)] = []
            if let value = changes.requestsPerMinute { requested.append(("max_requests_per_1_minute", .int(value))) }
            if let value = changes.tokensPerMinute { requested.append(("max_tokens_per_1_minute", .int(value))) }
            if let value = changes.requestsPerDay { requested.append(("max_requests_per_1_day", .int(value))) }
            try await Self.recordEvent(
                database,
                AuditEvent(.rateLimitUpdated, resourceID: rateLimitID, projectID: projectID.rawValue, data: requested, dataKey: "changes_requested"),
                organizationID: organizationID,
                at: now
            )
            try await Self.recordChanges(database, [.project(id: projectID)], at: now)
            return settings
        }
    }

    func rateLimitSettings(projectID: ProjectID) async throws -> [String: RateLimitSettings] {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            Dictionary(try await database.rows(RateLimitSettingsForVerification(projectID: projectID)), uniquingKeysWith: { first, _ in first })
        }
    }

    func everyProjectsRateLimitSettings() async throws -> [ProjectID: [String: RateLimitSettings]] {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            var settings: [ProjectID: [String: RateLimitSettings]] = [:]
            for (projectID, model, values) in try await database.rows(EveryProjectsRateLimitSettings()) {
                settings[projectID, default: [:]][model] = values
            }
            return settings
        }
    }

    // MARK: A key's own limits

    /// The key's own limits (0 for none). Throws ``KeysmithError/notFound(_:id:)`` for a key not in the project.
    func apiKeyRateLimits(organizationID: OrganizationID, projectID: ProjectID, keyID: APIKeyID) async throws -> APIKeyRateLimits {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            guard
                let row = try await database.rows(APIKeyRateLimitsInProject(keyID: keyID, projectID: projectID, organizationID: organizationID)).first
            else {
                throw KeysmithError.notFound(.apiKey, id: keyID)
            }
            return row
        }
    }

    /// Sets the values `changes` holds (0: none), keeping the others; the key's verification state changes with it.
    func updateAPIKeyRateLimits(
        organizationID: OrganizationID,
        projectID: ProjectID,
        keyID: APIKeyID,
        _ changes: APIKeyRateLimits
    ) async throws -> APIKeyRateLimits {
        let now = self.clock.now()
        return try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: organizationID, id: projectID)
            guard try await !database.rows(APIKeyRateLimitsInProject(keyID: keyID, projectID: projectID, organizationID: organizationID)).isEmpty
            else {
                throw KeysmithError.notFound(.apiKey, id: keyID)
            }
            guard let stored = try await database.rows(UpsertAPIKeyRateLimits(keyID: keyID, limits: changes, updatedAt: now)).first else {
                throw StoreRowError(column: "api_key_rate_limits", problem: "returned no row from its upsert")
            }
            try await Self.recordChanges(database, [.apiKey(id: keyID)], at: now)
            return stored
        }
    }

    /// A key's limits as the API shows them, from ``apiKeyRateLimitColumns`` (NULL, no row: 0, none).
    static func apiKeyRateLimits(from row: any StoreRowReader) throws -> APIKeyRateLimits {
        APIKeyRateLimits(
            requestsPerMinute: try row.optionalInt(at: 0) ?? 0,
            tokensPerMinute: try row.optionalInt(at: 1) ?? 0,
            concurrentRequests: try row.optionalInt(at: 2) ?? 0
        )
    }

    static let apiKeyRateLimitColumns = "max_requests_per_1_minute, max_tokens_per_1_minute, max_concurrent_requests"

    struct APIKeyRateLimitsInProject: StoreQuery {
        static let sql = """
            SELECT l.max_requests_per_1_minute, l.max_tokens_per_1_minute, l.max_concurrent_requests FROM api_keys k
            LEFT JOIN api_key_rate_limits l ON l.api_key_id = k.id
            WHERE k.id = $1 AND k.project_id = $2 AND k.organization_id = $3
            """

        var keyID: APIKeyID
        var projectID: ProjectID
        var organizationID: OrganizationID

        var bindings: [any Encodable & Sendable] { [self.keyID, self.projectID, self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> APIKeyRateLimits { try SQLStore.apiKeyRateLimits(from: row) }
    }

    struct UpsertAPIKeyRateLimits: StoreQuery {
        static let sql = """
            INSERT INTO api_key_rate_limits (api_key_id, max_requests_per_1_minute, max_tokens_per_1_minute, max_concurrent_requests, updated_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (api_key_id) DO UPDATE SET
                max_requests_per_1_minute = COALESCE(excluded.max_requests_per_1_minute, api_key_rate_limits.max_requests_per_1_minute),
                max_tokens_per_1_minute = COALESCE(excluded.max_tokens_per_1_minute, api_key_rate_limits.max_tokens_per_1_minute),
                max_concurrent_requests = COALESCE(excluded.max_concurrent_requests, api_key_rate_limits.max_concurrent_requests),
                updated_at = excluded.updated_at
            RETURNING \(apiKeyRateLimitColumns)
            """

        var keyID: APIKeyID
        var limits: APIKeyRateLimits
        var updatedAt: UnixSeconds

        var bindings: [any Encodable & Sendable] {
            [self.keyID, self.limits.requestsPerMinute, self.limits.tokensPerMinute, self.limits.concurrentRequests, self.updatedAt]
        }

        static func decode(_ row: any StoreRowReader) throws -> APIKeyRateLimits { try SQLStore.apiKeyRateLimits(from: row) }
    }

    // MARK: The ledger of leases

    func lease(_ window: RateLimitWindow, wanted: Int, limit: Int) async throws -> (granted: Int, total: Int) {
        guard wanted > 0, limit > 0 else { return (0, 0) }
        return try await self.engine.write(logger: self.logger) { database in
            guard let row = try await database.rows(LeaseRateLimitWindow(window: window, wanted: wanted, limit: limit)).first else {
                throw StoreRowError(column: "rate_limit_windows", problem: "returned no row from its lease")
            }
            return row
        }
    }

    func giveBack(_ window: RateLimitWindow, amount: Int) async throws {
        guard amount > 0 else { return }
        try await self.engine.write(logger: self.logger) { database in
            _ = try await database.rows(GiveBackRateLimitLease(window: window, amount: amount))
        }
    }

    func pruneRateLimitWindows(endedBefore time: UnixSeconds) async throws {
        try await self.engine.write(logger: self.logger) { database in
            // A day's window ends a day after it starts, a minute's a minute after.
            _ = try await database.rows(PruneRateLimitWindows(minuteWindowsBefore: time - 60, dayWindowsBefore: time - 86_400))
        }
    }

    // MARK: Queries

    static let rateLimitColumns = "max_requests_per_1_minute, max_tokens_per_1_minute, max_requests_per_1_day"

    static func rateLimitSettings(from row: any StoreRowReader, at first: Int) throws -> RateLimitSettings {
        RateLimitSettings(
            requestsPerMinute: try row.optionalInt(at: first),
            tokensPerMinute: try row.optionalInt(at: first + 1),
            requestsPerDay: try row.optionalInt(at: first + 2)
        )
    }

    /// A row for a project that exists (its model NULL when it has no settings), one per model it has settings for:
    /// what tells an unknown project from one without settings, in one statement.
    struct ProjectRateLimitSettings: StoreQuery {
        static let sql = """
            SELECT r.model, r.max_requests_per_1_minute, r.max_tokens_per_1_minute, r.max_requests_per_1_day FROM projects p
            LEFT JOIN project_rate_limits r ON r.project_id = p.id
            WHERE p.id = $1 AND p.organization_id = $2
            """

        var projectID: ProjectID
        var organizationID: OrganizationID

        var bindings: [any Encodable & Sendable] { [self.projectID, self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> (String, RateLimitSettings)? {
            guard let model = try row.optionalString(at: 0) else { return nil }
            return (model, try SQLStore.rateLimitSettings(from: row, at: 1))
        }
    }

    /// Sets the values given (a NULL binding keeps the stored one) and returns the row as it now stands.
    struct UpsertRateLimitSettings: StoreQuery {
        static let sql = """
            INSERT INTO project_rate_limits
                (project_id, model, max_requests_per_1_minute, max_tokens_per_1_minute, max_requests_per_1_day, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (project_id, model) DO UPDATE SET
                max_requests_per_1_minute = COALESCE(excluded.max_requests_per_1_minute, project_rate_limits.max_requests_per_1_minute),
                max_tokens_per_1_minute = COALESCE(excluded.max_tokens_per_1_minute, project_rate_limits.max_tokens_per_1_minute),
                max_requests_per_1_day = COALESCE(excluded.max_requests_per_1_day, project_rate_limits.max_requests_per_1_day),
                updated_at = excluded.updated_at
            RETURNING \(rateLimitColumns)
            """

        var projectID: ProjectID
        var model: String
        var settings: RateLimitSettings
        var updatedAt: UnixSeconds

        var bindings: [any Encodable & Sendable] {
            [
                self.projectID, self.model, self.settings.requestsPerMinute, self.settings.tokensPerMinute,
                self.settings.requestsPerDay, self.updatedAt,
            ]
        }

        static func decode(_ row: any StoreRowReader) throws -> RateLimitSettings { try SQLStore.rateLimitSettings(from: row, at: 0) }
    }

    struct RateLimitSettingsForVerification: StoreQuery {
        static let sql = "SELECT model, \(rateLimitColumns) FROM project_rate_limits WHERE project_id = $1"

        var projectID: ProjectID

        var bindings: [any Encodable & Sendable] { [self.projectID] }

        static func decode(_ row: any StoreRowReader) throws -> (String, RateLimitSettings) {
            (try row.string(at: 0), try SQLStore.rateLimitSettings(from: row, at: 1))
        }
    }

    struct EveryProjectsRateLimitSettings: StoreQuery {
        static let sql = "SELECT project_id, model, \(rateLimitColumns) FROM project_rate_limits"

        var bindings: [any Encodable & Sendable] { [] }

        static func decode(_ row: any StoreRowReader) throws -> (ProjectID, String, RateLimitSettings) {
            (try row.id(at: 0), try row.string(at: 1), try SQLStore.rateLimitSettings(from: row, at: 2))
        }
    }

    /// Takes up to `wanted` ($5) of the window's allowance without passing `limit` ($6), in one statement that locks
    /// the window's row: concurrent leases from several replicas queue on it, and each sees the others' grants.
    /// Returns what this lease took and the window's total.
    struct LeaseRateLimitWindow: StoreQuery {
        static let sql = """
            INSERT INTO rate_limit_windows (subject, model, measure, window_start, granted, last_grant)
            VALUES ($1, $2, $3, $4, $7, $7)
            ON CONFLICT (subject, model, measure, window_start) DO UPDATE SET
                last_grant = CASE
                    WHEN rate_limit_windows.granted >= $6 THEN 0
                    WHEN $6 - rate_limit_windows.granted < $5 THEN $6 - rate_limit_windows.granted
                    ELSE $5 END,
                granted = rate_limit_windows.granted + CASE
                    WHEN rate_limit_windows.granted >= $6 THEN 0
                    WHEN $6 - rate_limit_windows.granted < $5 THEN $6 - rate_limit_windows.granted
                    ELSE $5 END
            RETURNING last_grant, granted
            """

        var window: RateLimitWindow
        var wanted: Int
        var limit: Int

        var bindings: [any Encodable & Sendable] {
            [
                self.window.subject, self.window.model, self.window.measure.rawValue, self.window.start, self.wanted, self.limit,
                min(self.wanted, self.limit),
            ]
        }

        static func decode(_ row: any StoreRowReader) throws -> (granted: Int, total: Int) {
            (try row.int(at: 0), try row.int(at: 1))
        }
    }

    struct GiveBackRateLimitLease: StoreQuery {
        static let sql = """
            UPDATE rate_limit_windows
            SET granted = CASE WHEN granted > $5 THEN granted - $5 ELSE 0 END
            WHERE subject = $1 AND model = $2 AND measure = $3 AND window_start = $4
            """

        var window: RateLimitWindow
        var amount: Int

        var bindings: [any Encodable & Sendable] {
            [self.window.subject, self.window.model, self.window.measure.rawValue, self.window.start, self.amount]
        }

        static func decode(_ row: any StoreRowReader) throws {}
    }

    struct PruneRateLimitWindows: StoreQuery {
        static let sql = """
            DELETE FROM rate_limit_windows
            WHERE (measure <> 'rpd' AND window_start < $1) OR (measure = 'rpd' AND window_start < $2)
            """

        var minuteWindowsBefore: UnixSeconds
        var dayWindowsBefore: UnixSeconds

        var bindings: [any Encodable & Sendable] { [self.minuteWindowsBefore, self.dayWindowsBefore] }

        static func decode(_ row: any StoreRowReader) throws {}
    }
}

extension SQLStore: RateLimitLedger {}
