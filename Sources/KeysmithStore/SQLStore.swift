public import KeysmithCore
public import Logging
import SQLKit

/// The one ``KeysmithStore``: bound SQL through SQLKit over an ``SQLEngine``.
public struct SQLStore: KeysmithStore {
    let engine: any SQLEngine
    let clock: KeysmithClock

    public init(engine: any SQLEngine, clock: KeysmithClock = .system) {
        self.engine = engine
        self.clock = clock
    }

    /// Opens the database `url` names. PostgreSQL is not supported yet.
    public static func open(_ url: DatabaseURL, clock: KeysmithClock = .system, logger: Logger) async throws -> SQLStore {
        switch url {
        case .sqliteFile, .sqliteMemory:
            return SQLStore(engine: try await SQLiteEngine.open(url, logger: logger), clock: clock)
        case .postgres:
            throw UnsupportedDatabaseError(url: url)
        }
    }

    public func close() async throws {
        try await self.engine.close()
    }
}

public struct UnsupportedDatabaseError: Error, CustomStringConvertible {
    public var url: DatabaseURL

    public var description: String {
        "PostgreSQL is not supported yet; use a sqlite: database URL (for example sqlite:keysmith.sqlite)"
    }
}

// MARK: - Pagination

extension SQLStore {
    /// Runs a keyset-paginated list query: `base` (a SELECT with its WHERE clause) continued with
    /// `AND (time, id) > (cursor's time, cursor's id) ORDER BY time, id LIMIT limit + 1`.
    ///
    /// `cursor` selects the `after` item's time among the list's items; it is read inside the same query, so a deep
    /// page costs what the first page costs. An `after` that names no item of the list yields no rows, and only
    /// then is it looked up on its own, to tell an unknown cursor (400 naming `after`) from the end of the list.
    /// `ensureListExists`, if given, runs first in that case, for lists whose owner is not otherwise checked.
    /// `decode` makes each row into an item as the engine reads it (``SQLSession/rows(_:decode:)``). The page is cut
    /// from `limit + 1` rows, so `hasMore` is exact.
    static func fetchPage<Item: Sendable>(
        _ database: any SQLSession,
        base: SQLQueryString,
        page: PageRequest,
        time: String,
        id: String,
        cursor: SQLQueryString,
        descending: Bool = false,
        ensureListExists: (@Sendable () async throws -> Void)? = nil,
        decode: @escaping @Sendable (any StoreRowReader) throws -> Item
    ) async throws -> Page<Item> {
        var query = base
        let comparison = descending ? "<" : ">"
        let direction = descending ? "DESC" : "ASC"
        if let after = page.after {
            query =
                query
                + " AND (\(unsafeRaw: time), \(unsafeRaw: id)) \(unsafeRaw: comparison) ((" + cursor + "), \(bind: after))"
        }
        // LIMIT is a literal, not a bind: SQLite re-prepares a statement whenever a bound LIMIT changes, which would
        // defeat the engine's statement cache (see SQLiteConnection).
        query =
            query
            + " ORDER BY \(unsafeRaw: time) \(unsafeRaw: direction), \(unsafeRaw: id) \(unsafeRaw: direction)"
            + " LIMIT \(literal: page.limit + 1)"
        let rows = try await database.rows(query, decode: decode)
        if rows.isEmpty, let ensureListExists {
            // No rows: the list itself (say, a project's keys) may not exist, which is a 404 rather than a 400.
            try await ensureListExists()
        }
        if rows.isEmpty, let after = page.after, try await database.raw(cursor).first() == nil {
            throw KeysmithError.invalidRequest(
                message: "Invalid 'after': '\(after)' is not an object of this list.",
                param: "after",
                code: nil
            )
        }
        return Page(items: Array(rows.prefix(page.limit)), hasMore: rows.count > page.limit)
    }
}

/// Comma-separated in the database; scopes are dotted tokens and never contain commas.
enum ScopeList {
    static func encode(_ scopes: [String]) -> String { scopes.joined(separator: ",") }

    static func decode(_ text: String) -> [String] {
        text.isEmpty ? [] : text.split(separator: ",").map(String.init)
    }
}
