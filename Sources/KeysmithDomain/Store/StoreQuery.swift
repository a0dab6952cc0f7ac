import Synchronization

/// One query as one type: its SQL, its bindings and how its rows decode, side by side, so that the SELECT list and
/// the reader of its columns cannot drift apart (as postgres-nio's `PostgresPreparedStatement` has them).
///
/// The SQL is fixed per type, with `$1`, `$2`, … for the bindings, and the same text runs on both engines: SQLite
/// reads it with `?1`, `?2`, … (``sqliteSQL``) from its statement cache; PostgreSQL prepares it once per connection,
/// as a named statement (``name``), and from then on only binds and executes it, where a query built as a
/// `SQLQueryString` is parsed and planned again on every call.
protocol StoreQuery: Sendable {
    associatedtype Row: Sendable

    /// Its name on PostgreSQL, unique among the store's queries: the type's name.
    static var name: String { get }
    /// The SQL, with `$N` for the Nth binding; no other `$` in it. PostgreSQL's, when the engines differ.
    static var sql: String { get }
    /// SQLite's: ``sql`` with `?N` for `$N`, unless a query that must differ (a row lock SQLite has no use for)
    /// says otherwise.
    static var sqliteSQL: String { get }
    /// The values of `$1`, `$2`, … in order (nil as an `Optional` for NULL).
    var bindings: [any Encodable & Sendable] { get }
    /// Makes one row into a value, reading the columns by the positions of ``sql``'s SELECT list.
    static func decode(_ row: any StoreRowReader) throws -> Row
}

extension StoreQuery {
    static var name: String { "keysmith." + String(describing: Self.self) }

    /// ``sql`` as SQLite numbers its parameters (`?N`), made once per type.
    static var sqliteSQL: String {
        let key = ObjectIdentifier(Self.self)
        if let sql = sqliteTexts.withLock({ $0[key] }) { return sql }
        let converted = Self.sqliteText(Self.sql)
        sqliteTexts.withLock { $0[key] = converted }
        return converted
    }

    /// `sql` with SQLite's `?N` for `$N`.
    static func sqliteText(_ sql: String) -> String {
        String(sql.map { $0 == "$" ? "?" : $0 })
    }
}

private let sqliteTexts = Mutex<[ObjectIdentifier: String]>([:])
