import SQLKit
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
        StoreQueryText.cached(Self.self, .sqlite) { Self.sqliteText(Self.sql) }
    }

    /// `sql` with SQLite's `?N` for `$N`.
    static func sqliteText(_ sql: String) -> String {
        String(sql.map { $0 == "$" ? "?" : $0 })
    }
}

/// SQL text made once per query type and dialect: SQLite's spelling of every query (``StoreQuery/sqliteSQL``), and
/// the text of the queries built from another type's parts (``FirstPage``, ``PageAfter``, ``ListCursor``, the row
/// locks), which, being generic, cannot hold a `static let`.
enum StoreQueryText {
    private struct Key: Hashable {
        var type: ObjectIdentifier
        var dialect: StoreDialect
    }

    private static let texts = Mutex<[Key: String]>([:])

    static func cached(_ type: Any.Type, _ dialect: StoreDialect = .postgres, _ make: () -> String) -> String {
        let key = Key(type: ObjectIdentifier(type), dialect: dialect)
        if let text = texts.withLock({ $0[key] }) { return text }
        let text = make()
        texts.withLock { $0[key] = text }
        return text
    }
}

/// A keyset-paginated list as one type: its SELECT and filter, its order, the cursor's place in it, and its row
/// decoding. Its pages run as queries of their own types (``FirstPage``, ``PageAfter``), so each is prepared once
/// per connection on PostgreSQL, and a deep page costs what the first does: the cursor's time is read in the same
/// statement.
protocol StoreList: Sendable {
    associatedtype Item: Sendable
    /// `SELECT … FROM … WHERE …`: the filter's values are `$1`…`$N`, N being ``filters``' count.
    static var select: String { get }
    /// How many values the filter binds.
    static var filterCount: Int { get }
    /// The columns the list is ordered by, in ``select``'s spelling: a time, then an id that breaks ties.
    static var time: String { get }
    static var id: String { get }
    /// `SELECT <time> FROM … WHERE <id> = $CURSOR AND …`: the cursor's time, `$CURSOR` standing for its id; the
    /// filter's `$1`…`$N` may appear too.
    static var cursor: String { get }
    /// Newest first.
    static var descending: Bool { get }
    var filters: [any Encodable & Sendable] { get }
    static func decode(_ row: any StoreRowReader) throws -> Item
}

extension StoreList {
    static var descending: Bool { false }

    fileprivate static var orderBy: String {
        let direction = self.descending ? "DESC" : "ASC"
        return " ORDER BY \(self.time) \(direction), \(self.id) \(direction)"
    }

    fileprivate static func cursor(at placeholder: Int) -> String {
        self.cursor.replacing("$CURSOR", with: "$\(placeholder)")
    }
}

/// `List` the other way round: newest first.
struct NewestFirst<List: StoreList>: StoreList {
    var list: List

    static var select: String { List.select }
    static var filterCount: Int { List.filterCount }
    static var time: String { List.time }
    static var id: String { List.id }
    static var cursor: String { List.cursor }
    static var descending: Bool { !List.descending }

    var filters: [any Encodable & Sendable] { self.list.filters }

    static func decode(_ row: any StoreRowReader) throws -> List.Item { try List.decode(row) }
}

/// A list's first page: `limit` rows (the caller asks for one more than it shows, to know whether more follow).
struct FirstPage<List: StoreList>: StoreQuery {
    var list: List
    var limit: Int

    static var sql: String {
        StoreQueryText.cached(Self.self) { List.select + List.orderBy + " LIMIT $\(List.filterCount + 1)" }
    }

    var bindings: [any Encodable & Sendable] { self.list.filters + [self.limit] }

    static func decode(_ row: any StoreRowReader) throws -> List.Item { try List.decode(row) }
}

/// The page after the item `after`.
struct PageAfter<List: StoreList>: StoreQuery {
    var list: List
    var after: String
    var limit: Int

    static var sql: String {
        StoreQueryText.cached(Self.self) {
            let cursor = List.filterCount + 1
            let comparison = List.descending ? "<" : ">"
            return List.select
                + " AND (\(List.time), \(List.id)) \(comparison) ((\(List.cursor(at: cursor))), $\(cursor))"
                + List.orderBy + " LIMIT $\(cursor + 1)"
        }
    }

    var bindings: [any Encodable & Sendable] { self.list.filters + [self.after, self.limit] }

    static func decode(_ row: any StoreRowReader) throws -> List.Item { try List.decode(row) }
}

/// Whether `after` is an item of the list: what tells an unknown cursor from the end of the list.
struct ListCursor<List: StoreList>: StoreQuery {
    var list: List
    var after: String

    static var sql: String { StoreQueryText.cached(Self.self) { List.cursor(at: List.filterCount + 1) } }

    var bindings: [any Encodable & Sendable] { self.list.filters + [self.after] }

    static func decode(_ row: any StoreRowReader) throws -> Int { try row.int(at: 0) }
}

/// `Query` with its rows locked until the transaction ends: `FOR UPDATE` on PostgreSQL (no other transaction may
/// change or lock them meanwhile). SQLite, whose one writer runs one transaction at a time, reads `Query` as it is.
struct ForUpdate<Query: StoreQuery>: StoreQuery {
    var query: Query

    static var sql: String { StoreQueryText.cached(Self.self) { Query.sql + " FOR UPDATE" } }
    static var sqliteSQL: String { Query.sqliteSQL }

    var bindings: [any Encodable & Sendable] { self.query.bindings }

    static func decode(_ row: any StoreRowReader) throws -> Query.Row { try Query.decode(row) }
}

/// `Query` with its rows shared until the transaction ends: `FOR SHARE` on PostgreSQL (others may read and share
/// them, not change them); on SQLite, `Query` as it is.
struct ForShare<Query: StoreQuery>: StoreQuery {
    var query: Query

    static var sql: String { StoreQueryText.cached(Self.self) { Query.sql + " FOR SHARE" } }
    static var sqliteSQL: String { Query.sqliteSQL }

    var bindings: [any Encodable & Sendable] { self.query.bindings }

    static func decode(_ row: any StoreRowReader) throws -> Query.Row { try Query.decode(row) }
}

extension SQLSession {
    /// Runs `query`, its rows locked as `lock` says (nil: not locked).
    func rows<Query: StoreQuery>(_ query: Query, lock: SQLLockingClause?) async throws -> [Query.Row] {
        switch lock {
        case nil: try await self.rows(query)
        case .update?: try await self.rows(ForUpdate(query: query))
        case .share?: try await self.rows(ForShare(query: query))
        }
    }
}
