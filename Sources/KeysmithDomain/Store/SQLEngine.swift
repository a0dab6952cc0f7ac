import Logging
import SQLKit

/// A database engine as the store uses it.
///
/// The rule for reads: ``unsafeRead(logger:_:)`` gives each statement the data committed when that statement starts, and may run
/// two statements of one body on different connections, so they can see different snapshots. That is right for a
/// body of one statement, and for the hot paths, which are one statement each. A body whose statements must agree
/// (a page and the check that tells an unknown cursor from the end of the list; an object and the check that says
/// which of two ids is unknown) uses ``snapshot(logger:_:)``: one connection, one read transaction. Writes run in one
/// transaction each, serialised, so that a check and the change it guards cannot interleave with another write.
///
/// Queries are SQLKit `SQLQueryString`s (values always bound, never concatenated); rows come back as
/// ``StoreRow``s read column by column, because decoding rows through `Codable` costs more than the query on the
/// hot paths.
protocol SQLEngine: Sendable {
    /// How the store writes SQL for this engine.
    var dialect: StoreDialect { get }

    /// Runs what the engine needs in the background (PostgreSQL's connection pool) until the ServiceGroup shuts
    /// down; returns at once when there is nothing to run (SQLite).
    func run() async

    /// Runs `body` without a snapshot: each of its statements sees the data committed when that statement starts,
    /// so two statements may see different states. Fine for one statement, or several that need not agree; use
    /// ``snapshot(logger:_:)`` when they must. (GRDB calls its read of this kind `unsafeRead` too.)
    ///
    /// `logger` is the caller's (a request's, with its request id): what the engine and its driver log about these
    /// statements goes there, so that a database error in the log says which request met it.
    func unsafeRead<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Runs `body` in one read transaction: every statement sees the same committed snapshot.
    func snapshot<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Runs `body` in a transaction: committed if it returns, rolled back if it (or the commit) throws.
    func write<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Closes every connection. Statements asked for after it fail; a second close does nothing.
    func close() async throws
}

/// One connection's worth of queries.
protocol SQLSession: Sendable {
    /// The engine's dialect, for the statements that differ (``StoreDialect``).
    var dialect: StoreDialect { get }

    func rows(_ query: SQLQueryString) async throws -> [StoreRow]

    /// Makes one value of each row with `decode`, which reads the row where the engine has it, without copying it
    /// into a ``StoreRow`` first: for the hot paths (a page of 100 keys is 2,000 values).
    func rows<T: Sendable>(
        _ query: SQLQueryString,
        decode: @escaping @Sendable (any StoreRowReader) throws -> T
    ) async throws -> [T]

    /// Runs a query of a type of its own (``StoreQuery``): prepared once per connection on PostgreSQL.
    func rows<Query: StoreQuery>(_ query: Query) async throws -> [Query.Row]

    /// Runs one statement of schema or configuration (DDL, a PRAGMA) that runs once, so it is not kept prepared.
    func execute(_ sql: String) async throws
}

extension SQLSession {
    /// A statement to run, in the spelling of SQLKit's raw builder: `.run()`, `.first()`, `.all()`.
    func raw(_ query: SQLQueryString) -> SQLStatement {
        SQLStatement(session: self, query: query)
    }
}

struct SQLStatement {
    let session: any SQLSession
    let query: SQLQueryString

    func run() async throws {
        _ = try await self.session.rows(self.query)
    }

    func all() async throws -> [StoreRow] {
        try await self.session.rows(self.query)
    }

    func first() async throws -> StoreRow? {
        try await self.session.rows(self.query).first
    }
}

/// Where SQLite and PostgreSQL differ in what the store says. Every such difference is here (the engines' own
/// transaction handling aside), and the store suites, which run on both engines, check each.
enum StoreDialect: Sendable {
    case sqlite
    case postgres

    /// The transaction-scoped advisory locks of PostgreSQL that Keysmith takes, each by its key.
    enum AdvisoryLock: Int64 {
        /// Migrations, the server secret, bootstrapping an empty database: one process at a time.
        case setup = 0x6B65_7973_0001
    }

    /// The statement that waits for `lock` and holds it until the transaction ends: `pg_advisory_xact_lock` on
    /// PostgreSQL; nothing on SQLite, whose one writer holds every lock there is.
    func advisoryLock(_ lock: AdvisoryLock) -> SQLQueryString? {
        switch self {
        case .sqlite: nil
        case .postgres: "SELECT pg_advisory_xact_lock(\(literal: lock.rawValue))"
        }
    }

    /// What the statement that writes change log entries joins with, so that the same statement asks for the other
    /// processes' change feeds to be woken when the transaction commits (LISTEN/NOTIFY; PostgreSQL delivers one
    /// notification per channel and payload per transaction). Nothing on SQLite, whose other processes (on the same
    /// machine) poll.
    var changeLogNotification: SQLQueryString? {
        switch self {
        case .sqlite: nil
        case .postgres: "CROSS JOIN (SELECT pg_notify(\(literal: Self.changesChannel), \(unsafeRaw: Self.notifierPayload))) AS notified"
        }
    }

    /// How far the change log can be read, as of the statement's snapshot: on PostgreSQL, entries of transactions
    /// below the oldest one still in progress (`pg_snapshot_xmin`), every one of which has committed or rolled back,
    /// so that no entry can become visible later behind the position a reader reaches; nil on SQLite, whose one
    /// writer commits in sequence order, so that every visible entry can be read.
    var changeLogHorizon: String {
        switch self {
        case .sqlite: "CAST(NULL AS INTEGER)"
        case .postgres: "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
        }
    }

    /// Whether a write must lock the rows its checks read (PostgreSQL, READ COMMITTED, several writers); SQLite
    /// runs one write at a time, so its checks and changes never interleave with another write's.
    var locksRows: Bool { self == .postgres }

    /// A notification's payload: the writing process's name (`PostgresEngine.notifier`), so that its own listener
    /// can skip it.
    static let notifierPayload = "COALESCE(current_setting('keysmith.notifier', TRUE), '')"

    /// The channel ``changeLogNotification`` notifies on.
    static let changesChannel = "keysmith_changes"

    /// One batch of key uses, `{"id": time, …}` bound as one JSON document, into `table`'s `last_used_at`: one
    /// statement whatever the batch's size, and never a time moved back.
    func recordUses(table: String, json: String) -> SQLQueryString {
        let source: SQLQueryString
        let time: String
        switch self {
        case .sqlite:
            source = "(SELECT key, value FROM json_each(\(bind: json)))"
            time = "used.value"
        case .postgres:
            source = "jsonb_each_text(CAST(\(bind: json) AS jsonb))"
            time = "CAST(used.value AS BIGINT)"
        }
        return """
            UPDATE \(unsafeRaw: table) SET last_used_at = \(unsafeRaw: time)
            FROM \(source) AS used
            WHERE \(unsafeRaw: table).id = used.key
              AND (\(unsafeRaw: table).last_used_at IS NULL OR \(unsafeRaw: table).last_used_at < \(unsafeRaw: time))
            """
    }
}
