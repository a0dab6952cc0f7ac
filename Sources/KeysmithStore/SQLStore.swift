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

// MARK: - Row reading

extension SQLRow {
    func string(_ column: String) throws -> String {
        try self.decode(column: column, as: String.self)
    }

    func optionalString(_ column: String) throws -> String? {
        try self.decodeNil(column: column) ? nil : self.decode(column: column, as: String.self)
    }

    func int(_ column: String) throws -> Int {
        try self.decode(column: column, as: Int.self)
    }

    func optionalInt(_ column: String) throws -> Int? {
        try self.decodeNil(column: column) ? nil : self.decode(column: column, as: Int.self)
    }
}

// MARK: - Pagination

extension SQLStore {
    /// Cuts a result fetched with `LIMIT limit + 1` into a page with an exact `hasMore`.
    static func page<Item>(_ rows: [Item], limit: Int) -> Page<Item> {
        Page(items: Array(rows.prefix(limit)), hasMore: rows.count > limit)
    }

    /// The creation time of the `after` cursor, which must be an item of the list being paged.
    static func cursorTime(
        _ database: any SQLDatabase,
        after: String,
        query: SQLQueryString
    ) async throws -> Int {
        guard let row = try await database.raw(query).first() else {
            throw KeysmithError.invalidRequest(
                message: "Invalid 'after': '\(after)' is not an object of this list.",
                param: "after",
                code: nil
            )
        }
        return try row.int("cursor_time")
    }
}

/// Comma-separated in the database; scopes are dotted tokens and never contain commas.
enum ScopeList {
    static func encode(_ scopes: [String]) -> String { scopes.joined(separator: ",") }

    static func decode(_ text: String) -> [String] {
        text.isEmpty ? [] : text.split(separator: ",").map(String.init)
    }
}
