public import KeysmithCore
import SQLKit

extension SQLStore {
    public func lookUp(secretHash: String) async throws -> KeyLookup {
        try await self.engine.read { database in
            let row = try await database.raw(
                """
                SELECT \(unsafeRaw: Self.apiKeyColumns), p.archived_at AS project_archived_at,
                       k.previous_secret_hash, k.previous_secret_expires_at
                \(unsafeRaw: Self.apiKeyJoins)
                JOIN projects p ON p.id = k.project_id
                WHERE k.secret_hash = \(bind: secretHash) OR k.previous_secret_hash = \(bind: secretHash)
                """
            ).first()
            if let row {
                let isPrevious = try row.optionalString("previous_secret_hash") == secretHash
                return .key(
                    KeyVerificationRecord(
                        key: try Self.apiKey(from: row),
                        projectArchivedAt: try row.optionalInt("project_archived_at"),
                        // A previous secret without an end would be a bug; treat it as already ended.
                        previousSecretExpiresAt: isPrevious ? try row.optionalInt("previous_secret_expires_at") ?? 0 : nil
                    )
                )
            }
            let revoked = try await database.raw(
                "SELECT key_id, organization_id, project_id FROM revoked_secrets WHERE secret_hash = \(bind: secretHash)"
            ).first()
            if let revoked {
                return .revoked(
                    keyID: try revoked.string("key_id"),
                    organizationID: try revoked.string("organization_id"),
                    projectID: try revoked.string("project_id")
                )
            }
            return .unknown
        }
    }

    public func rotateAPIKey(
        id: String,
        projectID: String,
        organizationID: String,
        secret: NewKeySecret,
        graceEndsAt: UnixSeconds?,
        now: UnixSeconds
    ) async throws -> APIKey {
        try await self.engine.write { database in
            let key = try await Self.unexpiredKey(database, id: id, projectID: projectID, organizationID: organizationID, now: now, for: "rotated")
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
            var rotated = key
            rotated.redactedValue = secret.redactedValue
            return rotated
        }
    }

    public func recordUses(apiKeys: [String: UnixSeconds], adminKeys: [String: UnixSeconds]) async throws {
        guard !apiKeys.isEmpty || !adminKeys.isEmpty else { return }
        try await self.engine.write { database in
            for (table, uses) in [("api_keys", apiKeys), ("admin_keys", adminKeys)] {
                for (id, time) in uses {
                    try await database.raw(
                        """
                        UPDATE \(unsafeRaw: table) SET last_used_at = \(bind: time)
                        WHERE id = \(bind: id) AND (last_used_at IS NULL OR last_used_at < \(bind: time))
                        """
                    ).run()
                }
            }
        }
    }
}
