public import KeysmithCore
import SQLKit

extension SQLStore {
    /// Records `event` in the audit log inside the caller's write transaction, with the task's actor
    /// (``AuditContext``): the event commits with its change or not at all. Call it before ``recordChanges(_:_:at:)``,
    /// which must stay a transaction's last statement. The project's name is copied as it is at the time of the event.
    static func recordEvent(_ database: any SQLSession, _ event: AuditEvent, organizationID: String, at time: UnixSeconds) async throws {
        let actor = AuditContext.actor
        try await database.raw(
            """
            INSERT INTO audit_logs
                (id, organization_id, type, effective_at, project_id, project_name, actor_id, actor, resource_id, details)
            VALUES (\(bind: IDGenerator.shared.make(.auditLog)), \(bind: organizationID), \(bind: event.type.rawValue),
                    \(bind: time), \(bind: event.projectID), (SELECT name FROM projects WHERE id = \(bind: event.projectID)),
                    \(bind: actor.id), \(bind: actor.json), \(bind: event.resourceID), \(bind: event.details))
            """
        ).run()
    }

    static let auditColumns = "a.id, a.type, a.effective_at, a.project_id, a.project_name, a.actor, a.details"

    static func auditEntry(from row: some StoreRowReader) throws -> AuditLogEntry {
        AuditLogEntry(
            id: try row.string(at: 0),
            type: try enumValue(AuditEventType.self, row.string(at: 1), column: "type"),
            effectiveAt: try row.int(at: 2),
            projectID: try row.optionalString(at: 3),
            projectName: try row.optionalString(at: 4),
            actorJSON: try row.string(at: 5),
            details: try row.string(at: 6)
        )
    }

    /// The organization's audit log, newest first, filtered. `after` pages towards older events, `before` towards
    /// newer ones (the page is still newest first). Keyset paging on the insertion sequence, on indexed columns.
    public func listAuditLogs(
        organizationID: String,
        filter: AuditLogFilter,
        limit: Int,
        after: String?,
        before: String?
    ) async throws -> Page<AuditLogEntry> {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.auditColumns) FROM audit_logs a WHERE a.organization_id = \(bind: organizationID)"
        if let bound = filter.effectiveAfter { query = query + " AND a.effective_at > \(bind: bound)" }
        if let bound = filter.effectiveFrom { query = query + " AND a.effective_at >= \(bind: bound)" }
        if let bound = filter.effectiveBefore { query = query + " AND a.effective_at < \(bind: bound)" }
        if let bound = filter.effectiveThrough { query = query + " AND a.effective_at <= \(bind: bound)" }
        if !filter.projectIDs.isEmpty { query = query + " AND a.project_id IN (\(binds: filter.projectIDs))" }
        if !filter.types.isEmpty { query = query + " AND a.type IN (\(binds: filter.types.map(\.rawValue)))" }
        if !filter.actorIDs.isEmpty { query = query + " AND a.actor_id IN (\(binds: filter.actorIDs))" }
        if !filter.resourceIDs.isEmpty { query = query + " AND a.resource_id IN (\(binds: filter.resourceIDs))" }
        if !filter.actorEmails.isEmpty {
            // Keysmith's actors are admin keys and offline commands: none acts as a user with an email address.
            query = query + " AND 1 = 0"
        }
        let cursor = after ?? before
        let cursorQuery: SQLQueryString =
            "SELECT sequence FROM audit_logs WHERE id = \(bind: cursor ?? "") AND organization_id = \(bind: organizationID)"
        let towardsNewer = after == nil && before != nil
        if cursor != nil {
            query = query + " AND a.sequence \(unsafeRaw: towardsNewer ? ">" : "<") (" + cursorQuery + ")"
        }
        query = query + " ORDER BY a.sequence \(unsafeRaw: towardsNewer ? "ASC" : "DESC") LIMIT \(literal: limit + 1)"
        let finalQuery = query
        let decode: @Sendable (any StoreRowReader) throws -> AuditLogEntry = { try Self.auditEntry(from: $0) }
        var rows = try await self.engine.read { database in try await database.rows(finalQuery, decode: decode) }
        if rows.isEmpty, let cursor {
            // No rows: the end of the log, or a cursor that is not one of its events. Tell them apart in one snapshot.
            rows = try await self.engine.snapshot { database in
                let rows = try await database.rows(finalQuery, decode: decode)
                if rows.isEmpty, try await database.raw(cursorQuery).first() == nil {
                    throw after != nil ? KeysmithError.unknownCursor(cursor) : KeysmithError.unknownBeforeCursor(cursor)
                }
                return rows
            }
        }
        var items = Array(rows.prefix(limit))
        if towardsNewer { items.reverse() }
        return Page(items: items, hasMore: rows.count > limit)
    }
}
