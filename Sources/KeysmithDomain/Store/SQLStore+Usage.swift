import KeysmithCore
import SQLKit

extension SQLStore {
    static let usageColumns = """
        organization_id, kind, minute, project_id, owner_id, api_key_id, model, requests, requests_without_usage,
        input_tokens, input_cached_tokens, output_tokens
        """

    /// Adds a batch of usage to what is recorded, 200 rows a statement: an upsert that adds each count to the
    /// minute's row, so that batches from several replicas (or two of one replica's) for the same minute sum.
    func recordModelUsage(_ usage: [ModelUsageKey: ModelUsageCounts]) async throws {
        guard !usage.isEmpty else { return }
        let rows = Array(usage)
        try await self.engine.write(logger: self.logger) { database in
            for start in stride(from: 0, to: rows.count, by: 200) {
                var values: [SQLQueryString] = []
                for (key, counts) in rows[start..<min(start + 200, rows.count)] {
                    values.append(
                        """
                        (\(bind: key.organizationID), \(bind: key.kind.rawValue), \(bind: key.minute), \(bind: key.projectID), \
                        \(bind: key.ownerID), \(bind: key.apiKeyID), \(bind: key.model), \(bind: counts.requests), \
                        \(bind: counts.requestsWithoutUsage), \(bind: counts.inputTokens), \(bind: counts.cachedInputTokens), \
                        \(bind: counts.outputTokens))
                        """
                    )
                }
                let statement: SQLQueryString =
                    "INSERT INTO usage_minutes (\(unsafeRaw: Self.usageColumns)) VALUES "
                    + values.joined(separator: ", ")
                        + """
                         ON CONFLICT (organization_id, kind, minute, project_id, owner_id, api_key_id, model) DO UPDATE SET
                            requests = usage_minutes.requests + excluded.requests,
                            requests_without_usage = usage_minutes.requests_without_usage + excluded.requests_without_usage,
                            input_tokens = usage_minutes.input_tokens + excluded.input_tokens,
                            input_cached_tokens = usage_minutes.input_cached_tokens + excluded.input_cached_tokens,
                            output_tokens = usage_minutes.output_tokens + excluded.output_tokens
                        """
                try await database.raw(statement).run()
            }
        }
    }

    /// One statement: the minutes in range, each put in its bucket (`start + ⌊(minute − start) / width⌋ · width`) and
    /// summed per bucket and group. Built per call, since the filters and groups vary (as the audit log's filtered
    /// pages are).
    func usage(_ query: UsageQuery) async throws -> [UsageTotals] {
        let groups: [(UsageGrouping, String)] = [(.projectID, "project_id"), (.userID, "owner_id"), (.apiKeyID, "api_key_id"), (.model, "model")]
        var statement: SQLQueryString =
            "SELECT \(bind: query.start) + ((minute - \(bind: query.start)) / \(bind: query.bucketWidth)) * \(bind: query.bucketWidth) AS bucket"
        for (grouping, column) in groups {
            statement = statement + (query.groupBy.contains(grouping) ? ", \(unsafeRaw: column)" : ", NULL")
        }
        statement =
            statement
                + """
                , CAST(SUM(requests) AS BIGINT), CAST(SUM(requests_without_usage) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
                  CAST(SUM(input_cached_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT)
                FROM usage_minutes
                WHERE organization_id = \(bind: query.organizationID) AND kind = \(bind: query.kind.rawValue)
                  AND minute >= \(bind: query.start) AND minute < \(bind: query.end)
                """
        for (values, column) in [
            (query.projectIDs, "project_id"), (query.userIDs, "owner_id"), (query.apiKeyIDs, "api_key_id"), (query.models, "model"),
        ]
        where !values.isEmpty {
            statement = statement + " AND \(unsafeRaw: column) IN (" + values.map { "\(bind: $0)" as SQLQueryString }.joined(separator: ", ") + ")"
        }
        statement = statement + " GROUP BY 1"
        for (grouping, column) in groups where query.groupBy.contains(grouping) {
            statement = statement + ", \(unsafeRaw: column)"
        }
        statement = statement + " ORDER BY 1"
        for (grouping, column) in groups where query.groupBy.contains(grouping) {
            statement = statement + ", \(unsafeRaw: column)"
        }
        let query = statement
        return try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(query) { row in
                UsageTotals(
                    bucketStart: try row.int(at: 0),
                    projectID: try row.optionalString(at: 1),
                    userID: try row.optionalString(at: 2),
                    apiKeyID: try row.optionalString(at: 3),
                    model: try row.optionalString(at: 4),
                    counts: ModelUsageCounts(
                        requests: try row.int(at: 5),
                        requestsWithoutUsage: try row.int(at: 6),
                        inputTokens: try row.int(at: 7),
                        cachedInputTokens: try row.int(at: 8),
                        outputTokens: try row.int(at: 9)
                    )
                )
            }
        }
    }
}
