import KeysmithCore
import SQLKit

extension SQLStore {
    // MARK: Rotation and usage

    func rotateAPIKey(
        organizationID: OrganizationID,
        projectID: ProjectID,
        id: APIKeyID,
        secret: NewKeySecret,
        graceEndsAt: UnixSeconds?,
        now: UnixSeconds
    ) async throws -> APIKey {
        try await self.engine.write(logger: self.logger) { database in
            let key = try await Self.unexpiredKey(database, organizationID: organizationID, projectID: projectID, id: id, now: now, for: .rotate)
            // The previous secret, if any, ends now (at most one previous secret at a time); without a grace
            // period, so does the current one.
            try await Self.revokeSecrets(
                database,
                graceEndsAt == nil ? .currentAndPrevious : .previousOnly,
                keyCondition: "id = \(bind: id)",
                at: now
            )
            try await database.raw(
                """
                UPDATE api_keys SET
                    previous_secret_hash = CASE WHEN \(bind: graceEndsAt != nil) THEN secret_hash ELSE NULL END,
                    previous_secret_expires_at = \(bind: graceEndsAt),
                    secret_hash = \(bind: secret.hash),
                    redacted_value = \(bind: secret.redactedValue)
                WHERE id = \(bind: id)
                """
            ).run()
            var rotation: [(String, AuditJSON)] = [("redacted_value", .string(secret.redactedValue))]
            rotation.append(("previous_secret_expires_at", graceEndsAt.map(AuditJSON.int) ?? .null))
            try await Self.recordEvent(
                database,
                AuditEvent(
                    .apiKeyUpdated,
                    resourceID: id,
                    projectID: projectID,
                    data: [("rotated", .object(rotation))],
                    dataKey: "changes_requested"
                ),
                organizationID: organizationID,
                at: now
            )
            try await Self.recordChanges(database, [.apiKey(id: id)], at: now)
            var rotated = key
            rotated.redactedValue = secret.redactedValue
            return rotated
        }
    }

    /// One statement per table for the whole batch, whatever its size (``StoreDialect/recordUses(table:json:)``):
    /// the batch is bound as one JSON object (`{"key_…": 1750000000, …}`), so the statement's text, and so its
    /// cached plan, is the same for every batch. A time only ever moves forward, also when batches from several
    /// processes cross: each row's update re-checks the condition after waiting for the row.
    func recordUses(apiKeys: [APIKeyID: UnixSeconds], adminKeys: [AdminKeyID: UnixSeconds]) async throws {
        guard !apiKeys.isEmpty || !adminKeys.isEmpty else { return }
        try await self.engine.write(logger: self.logger) { database in
            let batches = [
                ("api_keys", Dictionary(uniqueKeysWithValues: apiKeys.map { ($0.key.rawValue, $0.value) })),
                ("admin_keys", Dictionary(uniqueKeysWithValues: adminKeys.map { ($0.key.rawValue, $0.value) })),
            ]
            for (table, uses) in batches where !uses.isEmpty {
                try await database.raw(database.dialect.recordUses(table: table, json: Self.usesJSON(uses))).run()
            }
        }
    }

    /// `{"id": time, …}`. Ids are made by Keysmith (a prefix and base62 digits), so they need no escaping; any other
    /// character would be a bug, and is escaped anyway rather than trusted.
    static func usesJSON(_ uses: [String: UnixSeconds]) -> String {
        var json: [UInt8] = [UInt8(ascii: "{")]
        for (index, (id, time)) in uses.enumerated() {
            if index > 0 { json.append(UInt8(ascii: ",")) }
            JSONString.append(id, to: &json)
            json.append(contentsOf: ":\(time)".utf8)
        }
        json.append(UInt8(ascii: "}"))
        return String(decoding: json, as: UTF8.self)
    }

    // MARK: Verification state

    /// The columns ``keyVerificationState(from:)`` reads, in order.
    static let keyVerificationSelect = """
        SELECT k.id, k.organization_id, k.project_id, k.owner_type, COALESCE(k.user_id, k.service_account_id) AS owner_id,
               k.scopes, k.expires_at, k.secret_hash, k.previous_secret_hash, k.previous_secret_expires_at,
               p.archived_at AS project_archived_at, m.user_id AS member_user_id,
               l.max_requests_per_1_minute, l.max_tokens_per_1_minute, l.max_concurrent_requests
        FROM api_keys k
        JOIN projects p ON p.id = k.project_id
        LEFT JOIN project_members m ON m.project_id = k.project_id AND m.user_id = k.user_id
        LEFT JOIN api_key_rate_limits l ON l.api_key_id = k.id
        """

    static func keyVerificationState(from row: some StoreRowReader) throws -> KeyVerificationState {
        let ownerType = try enumValue(APIKeyOwnerType.self, row.string(at: 3), column: "owner_type")
        let previousSecretHash = try row.optionalString(at: 8)
        let isMember = try row.optionalString(at: 11) != nil
        let limits = APIKeyRateLimits(
            requestsPerMinute: try row.optionalInt(at: 12),
            tokensPerMinute: try row.optionalInt(at: 13),
            concurrentRequests: try row.optionalInt(at: 14)
        ).normalized
        return KeyVerificationState(
            keyID: try row.id(at: 0),
            organizationID: try row.id(at: 1),
            projectID: try row.id(at: 2),
            ownerType: ownerType,
            ownerID: try row.string(at: 4),
            scopes: ScopeList.decode(try row.string(at: 5)),
            expiresAt: try row.optionalInt(at: 6),
            secretHash: try row.string(at: 7),
            previousSecretHash: previousSecretHash,
            // A previous secret without an end would be a bug; treat it as already ended.
            previousSecretExpiresAt: previousSecretHash == nil ? nil : (try row.optionalInt(at: 9) ?? 0),
            isProjectArchived: try row.optionalInt(at: 10) != nil,
            ownerHasProjectAccess: ownerType == .serviceAccount || isMember,
            rateLimits: limits.isUnlimited ? nil : limits
        )
    }

    func keyVerificationStates(after keyID: APIKeyID?, limit: Int) async throws -> [KeyVerificationState] {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(KeyVerificationStatesAfter(after: keyID?.rawValue ?? "", limit: limit))
        }
    }

    /// Keys in id order after `after` ("" for the first page): how the verification state loads, a page at a time.
    struct KeyVerificationStatesAfter: StoreQuery {
        static let sql = "\(keyVerificationSelect) WHERE k.id > $1 ORDER BY k.id LIMIT $2"

        var after: String
        var limit: Int

        var bindings: [any Encodable & Sendable] { [self.after, self.limit] }

        static func decode(_ row: any StoreRowReader) throws -> KeyVerificationState { try SQLStore.keyVerificationState(from: row) }
    }

    func keyVerificationState(keyID: APIKeyID) async throws -> KeyVerificationState? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(KeyVerificationStateByID(id: keyID)).first
        }
    }

    /// One key's state: what the change feed reads after most writes, which change one key.
    struct KeyVerificationStateByID: StoreQuery {
        static let sql = "\(keyVerificationSelect) WHERE k.id = $1"

        var id: APIKeyID

        var bindings: [any Encodable & Sendable] { [self.id] }

        static func decode(_ row: any StoreRowReader) throws -> KeyVerificationState { try SQLStore.keyVerificationState(from: row) }
    }

    /// Several keys' states in one read. One key (most writes change one) is a query of its own type, prepared; more
    /// are an `IN` list, whose text varies with their count.
    func keyVerificationStates(keyIDs: [APIKeyID]) async throws -> [KeyVerificationState] {
        guard !keyIDs.isEmpty else { return [] }
        if keyIDs.count == 1 {
            return try await self.keyVerificationState(keyID: keyIDs[0]).map { [$0] } ?? []
        }
        return try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(
                "\(unsafeRaw: Self.keyVerificationSelect) WHERE k.id IN (" + Self.list(keyIDs) + ")",
                decode: { try Self.keyVerificationState(from: $0) }
            )
        }
    }

    func revokedSecretHashes(keyIDs: [APIKeyID]) async throws -> [APIKeyID: [String]] {
        guard !keyIDs.isEmpty else { return [:] }
        if keyIDs.count == 1 {
            let hashes = try await self.revokedSecretHashes(keyID: keyIDs[0])
            return hashes.isEmpty ? [:] : [keyIDs[0]: hashes]
        }
        let rows = try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows("SELECT key_id, secret_hash FROM revoked_secrets WHERE key_id IN (" + Self.list(keyIDs) + ")") {
                (try $0.id(at: 0) as APIKeyID, try $0.string(at: 1))
            }
        }
        return Dictionary(grouping: rows, by: \.0).mapValues { $0.map(\.1) }
    }

    /// `values` bound one by one, separated by commas, for an `IN (…)` list.
    private static func list(_ values: [APIKeyID]) -> SQLQueryString {
        var list: SQLQueryString = ""
        for (index, value) in values.enumerated() {
            list = index == 0 ? "\(bind: value)" : list + ", \(bind: value)"
        }
        return list
    }

    func revokedSecretHashes(keyID: APIKeyID) async throws -> [String] {
        try await self.engine.unsafeRead(logger: self.logger) { database in try await database.rows(RevokedSecretHashes(keyID: keyID)) }
    }

    /// The digests of one key's secrets that no longer verify.
    struct RevokedSecretHashes: StoreQuery {
        static let sql = "SELECT secret_hash FROM revoked_secrets WHERE key_id = $1"

        var keyID: APIKeyID

        var bindings: [any Encodable & Sendable] { [self.keyID] }

        static func decode(_ row: any StoreRowReader) throws -> String { try row.string(at: 0) }
    }

    func revokedSecret(secretHash: String) async throws -> RevokedSecret? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(RevokedSecretByHash(secretHash: secretHash)).first
        }
    }

    struct RevokedSecretByHash: StoreQuery {
        static let sql = "SELECT key_id, organization_id, project_id, revoked_at FROM revoked_secrets WHERE secret_hash = $1"

        var secretHash: String

        var bindings: [any Encodable & Sendable] { [self.secretHash] }

        static func decode(_ row: any StoreRowReader) throws -> RevokedSecret {
            RevokedSecret(keyID: try row.id(at: 0), organizationID: try row.id(at: 1), projectID: try row.id(at: 2), revokedAt: try row.int(at: 3))
        }
    }

    func isProjectArchived(projectID: ProjectID) async throws -> Bool? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(ProjectArchived(projectID: projectID)).first
        }
    }

    /// Whether the project is archived (a row for each project that exists).
    struct ProjectArchived: StoreQuery {
        static let sql = "SELECT archived_at FROM projects WHERE id = $1"

        var projectID: ProjectID

        var bindings: [any Encodable & Sendable] { [self.projectID] }

        static func decode(_ row: any StoreRowReader) throws -> Bool { try row.optionalInt(at: 0) != nil }
    }

    func isProjectMember(projectID: ProjectID, userID: UserID) async throws -> Bool {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            !(try await database.rows(Membership(projectID: projectID, userID: userID)).isEmpty)
        }
    }

    /// A row when the user is a member of the project.
    struct Membership: StoreQuery {
        static let sql = "SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2"

        var projectID: ProjectID
        var userID: UserID

        var bindings: [any Encodable & Sendable] { [self.projectID, self.userID] }

        static func decode(_ row: any StoreRowReader) throws -> Int { try row.int(at: 0) }
    }

    // MARK: The change log

    func latestChangePosition() async throws -> ChangePosition {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            // Never behind the last pruned entry: a reader that loads everything from here must not find that it
            // missed what was pruned. (An entry before that mark that has not committed yet would be skipped; it
            // would belong to a transaction open for longer than the log's retention, which Keysmith's sessions,
            // ended after 10 s idle in a transaction and 30 s in a statement, never are.)
            try await database.rows(
                """
                SELECT \(unsafeRaw: database.dialect.changeLogHorizon) AS horizon,
                       (SELECT COALESCE(MAX(sequence), 0) FROM keysmith_changes) AS latest,
                       transaction_id, sequence
                FROM keysmith_changes_pruned
                """
            ) { row in
                let read = Self.readPosition(
                    horizon: try row.optionalInt(at: 0),
                    otherwise: ChangePosition(transaction: 0, sequence: Int64(try row.int(at: 1)))
                )
                let pruned = ChangePosition(transaction: Int64(try row.int(at: 2)), sequence: Int64(try row.int(at: 3)))
                return max(read, pruned)
            }.first ?? .start
        }
    }

    /// The position of the newest entry the log holds, read or not (for tests: a reader that reaches it has read
    /// every entry committed so far).
    func newestChangePosition() async throws -> ChangePosition {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(
                "SELECT transaction_id, sequence FROM keysmith_changes ORDER BY transaction_id DESC, sequence DESC LIMIT 1"
            ) { ChangePosition(transaction: Int64(try $0.int(at: 0)), sequence: Int64(try $0.int(at: 1))) }.first ?? .start
        }
    }

    /// Where a reader is once it has read what the log holds: below the horizon on PostgreSQL (every entry of a
    /// transaction before it); on SQLite, which has none, `read`: the newest entry it read.
    private static func readPosition(horizon: Int?, otherwise read: ChangePosition) -> ChangePosition {
        horizon.map { ChangePosition(transaction: Int64($0) - 1, sequence: .max) } ?? read
    }

    func changes(after position: ChangePosition, limit: Int) async throws -> ChangeBatch {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            let rows = try await database.rows(ChangeLogRead(after: position, limit: limit))
            guard let bounds = rows.first else { throw StoreRowError(column: "horizon", problem: "the change log's bounds are missing") }
            let horizon = bounds.horizon
            let pruned = bounds.pruned
            let records = rows.compactMap(\.record)
            let isCut = records.count >= limit
            let reached =
                isCut
                ? records[records.count - 1].position
                : max(position, Self.readPosition(horizon: horizon, otherwise: records.last?.position ?? position))
            return ChangeBatch(
                records: records,
                position: reached,
                newest: bounds.newest,
                isCut: isCut,
                missedPrunedEntries: pruned > position
            )
        }
    }

    /// One read of the change log, in one statement, so one snapshot: the horizon, the pruning mark, the newest
    /// entry and up to `$3` entries after (`$1`, `$2`) agree. PostgreSQL joins the entries LATERAL to the horizon
    /// that bounds them; SQLite has no horizon.
    struct ChangeLogRead: StoreQuery {
        static func text(_ dialect: StoreDialect) -> String {
            let postgres = dialect == .postgres
            // On SQLite every entry's transaction is 0 (one writer commits in sequence order), and the condition says
            // so: SQLite makes the row value `(transaction_id, sequence) > (0, S)` an index range on transaction_id
            // alone, which, that column being constant, read the whole log on every catch-up (16.7 ms at 130,000
            // entries, against 0.01 ms for `transaction_id = 0 AND sequence > S`).
            let after = postgres ? "(transaction_id, sequence) > ($1, $2)" : "transaction_id = $1 AND sequence > $2"
            return """
                SELECT bounds.horizon, pruned.transaction_id, pruned.sequence, newest.transaction_id, newest.sequence,
                       entry.transaction_id, entry.sequence, entry.subject, entry.subject_id, entry.related_id
                FROM (SELECT \(dialect.changeLogHorizon) AS horizon) AS bounds
                CROSS JOIN keysmith_changes_pruned AS pruned
                LEFT JOIN (
                    SELECT transaction_id, sequence FROM keysmith_changes
                    ORDER BY transaction_id DESC, sequence DESC LIMIT 1
                ) AS newest ON \(postgres ? "TRUE" : "1 = 1")
                LEFT JOIN \(postgres ? "LATERAL" : "") (
                    SELECT transaction_id, sequence, subject, subject_id, related_id FROM keysmith_changes
                    WHERE \(after)
                    \(postgres ? "AND transaction_id < bounds.horizon" : "")
                    ORDER BY transaction_id, sequence LIMIT $3
                ) AS entry ON \(postgres ? "TRUE" : "1 = 1")
                ORDER BY entry.transaction_id, entry.sequence
                """
        }
        static let sql = text(.postgres)
        static let sqliteSQL = sqliteText(text(.sqlite))

        var after: ChangePosition
        var limit: Int

        var bindings: [any Encodable & Sendable] { [self.after.transaction, self.after.sequence, self.limit] }

        typealias Row = (horizon: Int?, pruned: ChangePosition, newest: ChangePosition, record: ChangeRecord?)

        static func decode(_ row: any StoreRowReader) throws -> Row {
            let horizon = try row.optionalInt(at: 0)
            let pruned = ChangePosition(transaction: Int64(try row.int(at: 1)), sequence: Int64(try row.int(at: 2)))
            let newest = ChangePosition(
                transaction: Int64(try row.optionalInt(at: 3) ?? 0),
                sequence: Int64(try row.optionalInt(at: 4) ?? 0)
            )
            guard let transaction = try row.optionalInt(at: 5) else { return (horizon, pruned, newest, nil) }
            let subject = try row.string(at: 7)
            guard
                let change = KeysmithChange(subject: subject, id: try row.string(at: 8), relatedID: try row.optionalString(at: 9))
            else {
                throw StoreRowError(column: "subject", problem: "holds '\(subject)', which is not a change this build knows")
            }
            let record = ChangeRecord(
                position: ChangePosition(transaction: Int64(transaction), sequence: Int64(try row.int(at: 6))),
                change: change
            )
            return (horizon, pruned, newest, record)
        }
    }

    func pruneChanges(before time: UnixSeconds) async throws -> Int {
        try await self.engine.write(logger: self.logger) { database in
            // The newest entry stays whatever its age, so that MAX(sequence) always tells a SQLite reader where the
            // log is. The last position deleted is kept, so that a reader behind it knows it missed entries.
            let deleted = try await database.rows(
                """
                DELETE FROM keysmith_changes
                WHERE changed_at < \(bind: time) AND sequence < (SELECT MAX(sequence) FROM keysmith_changes)
                RETURNING transaction_id, sequence
                """
            ) { ChangePosition(transaction: Int64(try $0.int(at: 0)), sequence: Int64(try $0.int(at: 1))) }
            if let last = deleted.max() {
                try await database.raw(
                    """
                    UPDATE keysmith_changes_pruned
                    SET transaction_id = \(bind: last.transaction), sequence = \(bind: last.sequence)
                    WHERE (transaction_id, sequence) < (\(bind: last.transaction), \(bind: last.sequence))
                    """
                ).run()
            }
            return deleted.count
        }
    }
}
