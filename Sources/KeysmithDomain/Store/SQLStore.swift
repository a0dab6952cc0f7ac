import KeysmithCore
import Logging
import SQLKit

/// The one ``KeysmithStore``: bound SQL through SQLKit over an ``SQLEngine``.
struct SQLStore: KeysmithStore {
    let engine: any SQLEngine
    let clock: KeysmithClock
    /// Where the engine logs what happens to this store's statements: the database's own logger, or a request's
    /// (``logging(to:)``), whose metadata (the request id) every line then carries.
    private(set) var logger: Logger

    init(engine: any SQLEngine, clock: KeysmithClock = .system, logger: Logger) {
        self.engine = engine
        self.clock = clock
        self.logger = logger
    }

    /// This store, its statements logged to `logger`.
    func logging(to logger: Logger) -> any KeysmithStore {
        var copy = self
        copy.logger = logger
        return copy
    }

    /// Opens the database `url` names. PostgreSQL's pool starts working once ``run()`` runs; until then the store
    /// uses one connection of its own (see ``PostgresEngine``).
    /// `poolSize` is PostgreSQL's most connections at once; SQLite has its fixed few.
    static func open(
        _ url: DatabaseURL,
        clock: KeysmithClock = .system,
        logger: Logger,
        observer: SQLStatementObserver? = nil,
        poolSize: Int = 20
    ) async throws -> SQLStore {
        switch url {
        case .sqliteFile, .sqliteMemory:
            return SQLStore(engine: try await SQLiteEngine.open(url, logger: logger, observer: observer), clock: clock, logger: logger)
        case .postgres(let settings):
            return SQLStore(
                engine: try PostgresEngine(settings, logger: logger, observer: observer, maximumConnections: poolSize),
                clock: clock,
                logger: logger
            )
        }
    }

    var pushesChanges: Bool { self.engine is PostgresEngine }

    func listenForChanges(
        onListening: @escaping @Sendable () async -> Void,
        onNotification: @escaping @Sendable () async -> Void
    ) async throws {
        guard let postgres = self.engine as? PostgresEngine else { throw ChangesNotPushedError() }
        try await postgres.listen(StoreDialect.changesChannel, onListening: onListening, onNotification: onNotification)
    }

    /// Runs the engine's background work (PostgreSQL's pool) until the ServiceGroup shuts down.
    func run() async {
        await self.engine.run()
    }

    func close() async throws {
        try await self.engine.close()
    }
}

/// The engine does not push changes (SQLite): its readers poll the change log.
struct ChangesNotPushedError: Error, CustomStringConvertible {
    var description: String { "this database does not push changes; poll the change log" }
}

// MARK: - Pagination

extension SQLStore {
    /// A keyset-paginated list: `base` (a SELECT with its WHERE clause) continued with
    /// `AND (time, id) > (cursor's time, cursor's id) ORDER BY time, id LIMIT limit + 1`.
    struct ListQuery: Sendable {
        var base: SQLQueryString
        var page: PageRequest
        var time: String
        var id: String
        /// Selects the `after` item's time among the list's items.
        var cursor: SQLQueryString
        var descending = false
        /// Throws ``KeysmithError/notFound(_:id:)`` when the list's owner (a project, say) does not exist.
        var ensureListExists: (@Sendable (any SQLSession) async throws -> Void)? = nil

        var pageQuery: SQLQueryString {
            var query = self.base
            let comparison = self.descending ? "<" : ">"
            let direction = self.descending ? "DESC" : "ASC"
            if let after = self.page.after {
                query =
                    query
                    + " AND (\(unsafeRaw: self.time), \(unsafeRaw: self.id)) \(unsafeRaw: comparison) (("
                    + self.cursor + "), \(bind: after))"
            }
            // LIMIT is a literal, not a bind: SQLite re-prepares a statement whenever a bound LIMIT changes, which
            // would defeat the engine's statement cache (see SQLiteConnection).
            return query
                + " ORDER BY \(unsafeRaw: self.time) \(unsafeRaw: direction), \(unsafeRaw: self.id) \(unsafeRaw: direction)"
                + " LIMIT \(literal: self.page.limit + 1)"
        }
    }

    /// Runs a list query. The cursor's time is read inside the page query, so a deep page costs what the first page
    /// costs, and a page with rows is one statement (one ``SQLEngine/unsafeRead(_:)``). A page without rows may mean an
    /// unknown cursor (400 naming `after`) or list owner (404) rather than the end of the list; only then does the
    /// page run again, with those checks, in one ``SQLEngine/snapshot(_:)``, so that the answer is the state of one
    /// moment. `decode` makes each row into an item as the engine reads it (``SQLSession/rows(_:decode:)``). The page
    /// is cut from `limit + 1` rows, so `hasMore` is exact.
    func fetchPage<Item: Sendable>(
        _ list: ListQuery,
        decode: @escaping @Sendable (any StoreRowReader) throws -> Item
    ) async throws -> Page<Item> {
        try await self.fetchPage(
            list.page,
            rows: { database in try await database.rows(list.pageQuery, decode: decode) },
            cursorExists: { database, _ in try await database.raw(list.cursor).first() != nil },
            ensureListExists: list.ensureListExists
        )
    }

    /// Runs a list of a type of its own (``StoreList``) as ``fetchPage(_:decode:)`` runs a built one: its pages and
    /// its cursor check are queries of their own types, prepared once per connection on PostgreSQL.
    func fetchPage<List: StoreList>(
        _ list: List,
        _ page: PageRequest,
        ensureListExists: (@Sendable (any SQLSession) async throws -> Void)? = nil
    ) async throws -> Page<List.Item> {
        try await self.fetchPage(
            page,
            rows: { database in
                if let after = page.after {
                    try await database.rows(PageAfter(list: list, after: after, limit: page.limit + 1))
                } else {
                    try await database.rows(FirstPage(list: list, limit: page.limit + 1))
                }
            },
            cursorExists: { database, after in !(try await database.rows(ListCursor(list: list, after: after)).isEmpty) },
            ensureListExists: ensureListExists
        )
    }

    /// Runs a list query given as `rows`, which reads up to `page.limit + 1` items, and `cursorExists`, which says
    /// whether the `after` cursor is an item of the list; otherwise as ``fetchPage(_:decode:)``.
    func fetchPage<Item: Sendable>(
        _ page: PageRequest,
        rows read: @escaping @Sendable (any SQLSession) async throws -> [Item],
        cursorExists: @escaping @Sendable (any SQLSession, String) async throws -> Bool,
        ensureListExists: (@Sendable (any SQLSession) async throws -> Void)?
    ) async throws -> Page<Item> {
        var rows = try await self.engine.unsafeRead(logger: self.logger, read)
        if rows.isEmpty, page.after != nil || ensureListExists != nil {
            rows = try await self.engine.snapshot(logger: self.logger) { database in
                let rows = try await read(database)
                guard rows.isEmpty else { return rows }
                try await ensureListExists?(database)
                if let after = page.after, try await !cursorExists(database, after) {
                    throw KeysmithError.unknownCursor(after)
                }
                return rows
            }
        }
        return Page(items: Array(rows.prefix(page.limit)), hasMore: rows.count > page.limit)
    }
}

// MARK: - The change log

extension SQLStore {
    /// Records `changes` in the change log, inside the caller's write transaction, in one statement (per 500
    /// changes), and tells the write's ``ChangeReceipt`` what and where. Writers do not take turns: on PostgreSQL
    /// each entry carries its transaction's id, and readers order by it (see ``ChangePosition``).
    static func recordChanges(_ database: any SQLSession, _ changes: [KeysmithChange], at time: UnixSeconds) async throws {
        if changes.count == 1 {
            // Most writes change one thing: a statement of a type of its own, prepared once.
            let positions = try await database.rows(RecordChange(change: changes[0], time: time))
            ChangeReceipt.current?.record(changes, at: positions.max())
            return
        }
        var remaining = changes[...]
        var last: ChangePosition?
        while !remaining.isEmpty {
            let batch = remaining.prefix(500)
            remaining = remaining.dropFirst(batch.count)
            var rows: [SQLQueryString] = []
            for change in batch {
                let (subject, id, relatedID) = change.columns
                rows.append("(\(bind: subject), \(bind: id), \(bind: relatedID), \(bind: time))")
            }
            var statement: SQLQueryString = """
                INSERT INTO keysmith_changes (subject, subject_id, related_id, changed_at)
                SELECT changed.column1, changed.column2, changed.column3, changed.column4
                FROM (VALUES
                """
            statement = statement + " " + rows.joined(separator: ", ") + ") AS changed"
            if let notification = database.dialect.changeLogNotification {
                statement = statement + " " + notification
            }
            statement = statement + " RETURNING transaction_id, sequence"
            let positions = try await database.rows(statement) {
                ChangePosition(transaction: Int64(try $0.int(at: 0)), sequence: Int64(try $0.int(at: 1)))
            }
            last = max(last ?? .start, positions.max() ?? .start)
        }
        ChangeReceipt.current?.record(changes, at: last)
    }
}

/// One change log entry; on PostgreSQL the same statement asks for the other processes to be woken at commit
/// (``StoreDialect/changeLogNotification``).
struct RecordChange: StoreQuery {
    static let insert = """
        INSERT INTO keysmith_changes (subject, subject_id, related_id, changed_at)
        SELECT $1, $2, $3, $4
        """
    static let sql =
        insert
        + " FROM (SELECT pg_notify('\(StoreDialect.changesChannel)', \(StoreDialect.notifierPayload))) AS notified"
        + " RETURNING transaction_id, sequence"
    static let sqliteSQL = sqliteText(insert + " RETURNING transaction_id, sequence")

    var change: KeysmithChange
    var time: UnixSeconds

    var bindings: [any Encodable & Sendable] {
        let (subject, id, relatedID) = self.change.columns
        return [subject, id, relatedID, self.time]
    }

    static func decode(_ row: any StoreRowReader) throws -> ChangePosition {
        ChangePosition(transaction: Int64(try row.int(at: 0)), sequence: Int64(try row.int(at: 1)))
    }
}

extension KeysmithChange {
    /// How the change log spells it: subject, subject id, related id.
    var columns: (String, String, String?) {
        switch self {
        case .apiKey(let id): ("api_key", id.rawValue, nil)
        case .adminKey(let id): ("admin_key", id.rawValue, nil)
        case .project(let id): ("project", id.rawValue, nil)
        case .membership(let projectID, let userID): ("membership", projectID.rawValue, userID.rawValue)
        }
    }

    init?(subject: String, id: String, relatedID: String?) {
        switch (subject, relatedID) {
        case ("api_key", _): self = .apiKey(id: APIKeyID(rawValue: id))
        case ("admin_key", _): self = .adminKey(id: AdminKeyID(rawValue: id))
        case ("project", _): self = .project(id: ProjectID(rawValue: id))
        case ("membership", let userID?): self = .membership(projectID: ProjectID(rawValue: id), userID: UserID(rawValue: userID))
        default: return nil
        }
    }
}

/// Comma-separated in the database; scopes are dotted tokens and never contain commas.
enum ScopeList {
    static func encode(_ scopes: [String]) -> String { scopes.joined(separator: ",") }

    static func decode(_ text: String) -> [String] {
        text.isEmpty ? [] : text.split(separator: ",").map(String.init)
    }
}

// MARK: - Row locks

extension SQLStore {
    /// Locks the rows of `table` that `condition` selects until the transaction ends, with SQLKit's locking clause
    /// in the engine's dialect: `.share` keeps them from changing or going (a project from being archived while a
    /// key is added to it), `.update` also from other writers' shared locks. For rows a transaction then reads
    /// through outer joins, which PostgreSQL cannot lock in the same statement. On SQLite, whose writes run one at a
    /// time, there is nothing to lock and no statement runs.
    static func lock(_ database: any SQLSession, _ table: String, where condition: SQLQueryString, _ clause: SQLLockingClause) async throws {
        guard database.dialect.locksRows else { return }
        try await database.raw("SELECT 1 AS locked FROM \(unsafeRaw: table) WHERE " + condition + " \(clause)").run()
    }
}

// MARK: - Single objects

extension SQLStore {
    /// Reads one object with `find`, one statement. Only when it finds nothing does it run `find` again, in one
    /// snapshot with `explain`, which throws the error that says what is unknown (the object, or the project it
    /// would be in), so that the answer describes one moment.
    func findOne<T: Sendable>(
        _ find: @escaping @Sendable (any SQLSession) async throws -> T?,
        orExplain explain: @escaping @Sendable (any SQLSession) async throws -> Never
    ) async throws -> T {
        if let found = try await self.engine.unsafeRead(logger: self.logger, find) { return found }
        return try await self.engine.snapshot(logger: self.logger) { database in
            if let found = try await find(database) { return found }
            try await explain(database)
        }
    }
}

// MARK: - Constraint violations

/// A unique or primary key constraint refused a row: the race a check-then-insert loses on PostgreSQL when another
/// process inserted the same row between the check and the insert (SQLite's single writer never loses it). The
/// store maps it to the same domain error its check gives.
func isUniqueViolation(_ error: any Error) -> Bool {
    if let failure = error as? SQLiteFailure {
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY.
        return failure.code == 2067 || failure.code == 1555
    }
    if let failure = error as? PostgresFailure {
        return failure.sqlState == "23505"
    }
    return false
}
