public import SQLKit

/// A database engine as the store uses it.
///
/// The rule for reads: ``read(_:)`` gives each statement the data committed when that statement starts, and may run
/// two statements of one body on different connections, so they can see different snapshots. That is right for a
/// body of one statement, and for the hot paths, which are one statement each. A body whose statements must agree
/// (a page and the check that tells an unknown cursor from the end of the list; an object and the check that says
/// which of two ids is unknown) uses ``snapshot(_:)``: one connection, one read transaction. Writes run in one
/// transaction each, serialised, so that a check and the change it guards cannot interleave with another write.
///
/// Queries are SQLKit `SQLQueryString`s (values always bound, never concatenated); rows come back as
/// ``StoreRow``s read column by column, because decoding rows through `Codable` costs more than the query on the
/// hot paths.
public protocol SQLEngine: Sendable {
    /// Runs `body`; each of its statements sees the data committed when it starts.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Runs `body` in one read transaction: every statement sees the same committed snapshot.
    func snapshot<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Runs `body` in a transaction: committed if it returns, rolled back if it (or the commit) throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Closes every connection. Statements asked for after it fail; a second close does nothing.
    func close() async throws
}

/// One connection's worth of queries.
public protocol SQLSession: Sendable {
    func rows(_ query: SQLQueryString) async throws -> [StoreRow]

    /// Makes one value of each row with `decode`, which reads the row where the engine has it, without copying it
    /// into a ``StoreRow`` first: for the hot paths (a page of 100 keys is 2,000 values).
    func rows<T: Sendable>(
        _ query: SQLQueryString,
        decode: @escaping @Sendable (any StoreRowReader) throws -> T
    ) async throws -> [T]

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

/// Told about every statement an engine runs: how long it took from being asked for to its last row (queueing for
/// a connection included, as the caller waits for it), and whether it failed. For metrics.
public struct SQLStatementObserver: Sendable {
    public var statementFinished: @Sendable (_ duration: Duration, _ failed: Bool) -> Void

    public init(statementFinished: @escaping @Sendable (_ duration: Duration, _ failed: Bool) -> Void) {
        self.statementFinished = statementFinished
    }
}
