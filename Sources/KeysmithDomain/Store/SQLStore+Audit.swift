import KeysmithCore
import SQLKit

extension SQLStore {
    /// Records `event` in the audit log inside the caller's write transaction, with the task's actor
    /// (``AuditContext``): the event commits with its change or not at all. Call it before ``recordChanges(_:_:at:)``,
    /// which must stay a transaction's last statement. The project's name is copied as it is at the time of the event.
    static func recordEvent(_ database: any SQLSession, _ event: AuditEvent, organizationID: OrganizationID, at time: UnixSeconds) async throws {
        let actor = AuditContext.actor
        _ = try await database.rows(
            InsertAuditEvent(
                id: IDGenerator.shared.makeText(.auditLog),
                organizationID: organizationID,
                event: event,
                time: time,
                actorID: actor.id,
                actorJSON: actor.json
            )
        )
    }

    struct InsertAuditEvent: StoreQuery {
        static let sql = """
            INSERT INTO audit_logs
                (id, organization_id, type, effective_at, project_id, project_name, actor_id, actor, resource_id, details)
            VALUES ($1, $2, $3, $4, $5, (SELECT name FROM projects WHERE id = $5), $6, $7, $8, $9)
            """

        var id: String
        var organizationID: OrganizationID
        var event: AuditEvent
        var time: UnixSeconds
        var actorID: String?
        var actorJSON: String

        var bindings: [any Encodable & Sendable] {
            [
                self.id, self.organizationID, self.event.type.rawValue, self.time, self.event.projectID, self.actorID,
                self.actorJSON, self.event.resourceID, self.event.details,
            ]
        }

        static func decode(_ row: any StoreRowReader) throws {}
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

    /// A time range holding at most this many events is read through the time index (and sorted); a wider one is
    /// read by walking the log newest first, as an unbounded list is.
    static let narrowTimeRange = 1_000

    /// The organization's audit log, newest first, filtered. `after` pages towards older events, `before` towards
    /// newer ones (the page is still newest first). Keyset paging on the insertion sequence, on indexed columns.
    ///
    /// An `effective_at` range has two ways to be read, each fast where the other is slow: walking the log newest
    /// first stops after a page of events inside the range, which for "since" ranges is at once and for a range
    /// that holds few or none of the newest events means the whole log; reading the range through the time index
    /// (`audit_logs_by_time`) costs what the range holds, sorted. A probe through the time index that stops at
    /// ``narrowTimeRange`` events tells which: a narrow range is read through the index, a wide one by the walk.
    func listAuditLogs(
        organizationID: OrganizationID,
        filter: AuditLogFilter,
        limit: Int,
        after: String?,
        before: String?
    ) async throws -> Page<AuditLogEntry> {
        func times(_ column: String) -> SQLQueryString {
            var bounds: SQLQueryString = ""
            if let bound = filter.effectiveAfter { bounds = bounds + " AND \(unsafeRaw: column) > \(bind: bound)" }
            if let bound = filter.effectiveFrom { bounds = bounds + " AND \(unsafeRaw: column) >= \(bind: bound)" }
            if let bound = filter.effectiveBefore { bounds = bounds + " AND \(unsafeRaw: column) < \(bind: bound)" }
            if let bound = filter.effectiveThrough { bounds = bounds + " AND \(unsafeRaw: column) <= \(bind: bound)" }
            return bounds
        }
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.auditColumns) FROM audit_logs a WHERE a.organization_id = \(bind: organizationID)"
        if filter.hasTimeBounds {
            let range: SQLQueryString = "SELECT sequence FROM audit_logs WHERE organization_id = \(bind: organizationID)" + times("effective_at")
            let probe: SQLQueryString =
                "SELECT count(*) AS events FROM (" + range + " LIMIT \(literal: Self.narrowTimeRange + 1)) AS probe"
            let events = try await self.engine.unsafeRead(logger: self.logger) { try await $0.raw(probe).first()?.int("events") } ?? 0
            if events == 0, after == nil, before == nil {
                // Nothing in the range, and no cursor to check: the page is empty without reading it.
                return Page(items: [], hasMore: false)
            }
            if events <= Self.narrowTimeRange {
                query = query + " AND a.sequence IN (" + range + ")"
            } else {
                // The walk reads the range's bounds as filters, not through the time index (`+` hides the column).
                query = query + times("+a.effective_at")
            }
        }
        if !filter.projectIDs.isEmpty { query = query + " AND a.project_id IN (\(binds: filter.projectIDs))" }
        if !filter.types.isEmpty || !filter.unrecordedTypes.isEmpty {
            query = query + " AND a.type IN (\(binds: filter.types.map(\.rawValue) + filter.unrecordedTypes))"
        }
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
        var rows = try await self.engine.unsafeRead(logger: self.logger) { database in try await database.rows(finalQuery, decode: decode) }
        if rows.isEmpty, let cursor {
            // No rows: the end of the log, or a cursor that is not one of its events. Tell them apart in one snapshot.
            rows = try await self.engine.snapshot(logger: self.logger) { database in
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
