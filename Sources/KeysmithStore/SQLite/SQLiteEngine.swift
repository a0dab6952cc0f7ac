public import Logging
import NIOCore
import NIOPosix
import SQLKit
import Synchronization

/// SQLite: one writer connection, and for a file database two reader connections in WAL mode, so that list pages
/// and lookups never wait for a write. An in-memory database has one connection for all.
///
/// Every statement runs on a thread of the engine's own, never on Swift's cooperative threads or NIO's event loops,
/// since SQLite's calls block. The writer has one thread and is held for a whole transaction. The readers have a
/// thread each and are not held between statements: each read statement runs on whichever reader thread is free,
/// with whichever reader connection is idle (as many as there are threads, so one always is).
public final class SQLiteEngine: SQLEngine {
    private let writer: SQLiteConnection
    private let writerThread: NIOThreadPool
    private let writeLock = AsyncLock()
    private let readers: ReaderPool?

    /// Opens (creating if need be) the database at `url`, which must be a SQLite URL.
    public static func open(_ url: DatabaseURL, logger: Logger) async throws -> SQLiteEngine {
        logger.debug("Opening the SQLite database", metadata: ["database": "\(url)"])
        switch url {
        case .sqliteMemory:
            let engine = SQLiteEngine(writer: try SQLiteConnection(path: ":memory:"), readers: [])
            do {
                try await engine.configure(.writer(engine.writer, engine.writerThread), ["PRAGMA foreign_keys = ON"])
            } catch {
                // Its threads must be shut down before it goes.
                try? await engine.close()
                throw error
            }
            return engine
        case .sqliteFile(let path):
            var connections: [SQLiteConnection] = []
            do {
                for _ in 0..<3 {
                    connections.append(try SQLiteConnection(path: path))
                }
            } catch {
                for connection in connections { connection.close() }
                throw SQLiteOpenError(path: path, underlying: error)
            }
            let engine = SQLiteEngine(writer: connections[0], readers: Array(connections[1...]))
            do {
                try await engine.configure(
                    .writer(engine.writer, engine.writerThread),
                    [
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                    ]
                )
                for reader in connections[1...] {
                    // Configured on the writer's thread, before the readers are shared.
                    try await engine.configure(
                        .writer(reader, engine.writerThread),
                        ["PRAGMA busy_timeout = 5000", "PRAGMA query_only = 1"]
                    )
                }
            } catch {
                try? await engine.close()
                throw SQLiteOpenError(path: path, underlying: error)
            }
            return engine
        case .postgres:
            preconditionFailure("SQLiteEngine.open called with a PostgreSQL URL")
        }
    }

    private init(writer: SQLiteConnection, readers: [SQLiteConnection]) {
        self.writer = writer
        self.writerThread = NIOThreadPool(numberOfThreads: 1)
        self.writerThread.start()
        self.readers = readers.isEmpty ? nil : ReaderPool(readers)
    }

    private func configure(_ target: SQLiteSession.Target, _ statements: [String]) async throws {
        let session = SQLiteSession(target: target)
        for statement in statements {
            // PRAGMAs that report their new value (journal_mode) return a row; it is not needed.
            _ = try await session.rows(SQLQueryString(statement))
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        guard let readers = self.readers else {
            // One connection: reading while a transaction is open on it would see uncommitted rows.
            let session = SQLiteSession(target: .writer(self.writer, self.writerThread))
            return try await self.writeLock.withLock { try await body(session) }
        }
        return try await body(SQLiteSession(target: .readers(readers)))
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        let session = SQLiteSession(target: .writer(self.writer, self.writerThread))
        return try await self.writeLock.withLock {
            try await session.raw("BEGIN IMMEDIATE").run()
            let result: T
            do {
                result = try await body(session)
            } catch {
                try? await session.raw("ROLLBACK").run()
                throw error
            }
            try await session.raw("COMMIT").run()
            return result
        }
    }

    /// The statement caches of all connections, summed.
    var statementStatistics: SQLiteStatementStatistics {
        ([self.writer] + (self.readers?.connections ?? [])).reduce(SQLiteStatementStatistics()) { $0 + $1.statistics }
    }

    public func close() async throws {
        // Statements already running finish; those still queued fail. Then the connections close.
        try await self.readers?.close()
        try await self.writeLock.withLock { self.writer.close() }
        try await self.writerThread.shutdownGracefully()
    }
}

/// The reader connections and their threads, one thread per connection.
final class ReaderPool: Sendable {
    private let idle: Mutex<[SQLiteConnection]>
    let connections: [SQLiteConnection]
    let threads: NIOThreadPool

    init(_ connections: [SQLiteConnection]) {
        self.connections = connections
        self.idle = Mutex(connections)
        self.threads = NIOThreadPool(numberOfThreads: connections.count)
        self.threads.start()
    }

    /// Runs `body` on one of ``threads`` with an idle connection. At most one statement runs per thread, so there
    /// is always one.
    func withConnection<T>(_ body: (SQLiteConnection) throws -> T) rethrows -> T {
        guard let connection = self.idle.withLock({ $0.popLast() }) else {
            preconditionFailure("more SQLite reads running at once than reader threads")
        }
        defer { self.idle.withLock { $0.append(connection) } }
        return try body(connection)
    }

    func close() async throws {
        try await self.threads.shutdownGracefully()
        for connection in self.connections { connection.close() }
    }
}

/// Queries on the writer (within its transaction) or on any reader. SQLKit turns the query into SQL with numbered
/// placeholders and its binds; the statement then runs on the target's thread.
struct SQLiteSession: SQLSession {
    enum Target: Sendable {
        case writer(SQLiteConnection, NIOThreadPool)
        case readers(ReaderPool)
    }

    let target: Target

    fileprivate init(target: Target) {
        self.target = target
    }

    func rows(_ query: SQLQueryString) async throws -> [StoreRow] {
        try await self.run(query) { connection, sql, binds in try connection.query(sql, binds) }
    }

    func rows<T: Sendable>(
        _ query: SQLQueryString,
        decode: @escaping @Sendable (any StoreRowReader) throws -> T
    ) async throws -> [T] {
        try await self.run(query) { connection, sql, binds in try connection.query(sql, binds, decode: decode) }
    }

    /// Serializes `query` and runs `body` with it on the target's thread and connection.
    private func run<T: Sendable>(
        _ query: SQLQueryString,
        _ body: @escaping @Sendable (SQLiteConnection, String, [StoreValue]) throws -> T
    ) async throws -> T {
        var serializer = SQLSerializer(database: SQLiteSerializingDatabase.shared)
        query.serialize(to: &serializer)
        let sql = serializer.sql
        let binds = try serializer.binds.map(SQLiteBind.value(of:))
        let threads: NIOThreadPool
        let work: @Sendable () throws -> T
        switch self.target {
        case .writer(let connection, let thread):
            threads = thread
            work = { try body(connection, sql, binds) }
        case .readers(let readers):
            threads = readers.threads
            work = { try readers.withConnection { try body($0, sql, binds) } }
        }
        // Not `NIOThreadPool.runIfActive(_:)`, which skips the work if the task is cancelled: a ROLLBACK must run
        // whatever happens to the task that asked for it.
        return try await withCheckedThrowingContinuation { continuation in
            threads.submit { state in
                guard case .active = state else {
                    continuation.resume(throwing: SQLiteFailure.closed(sql: sql))
                    return
                }
                continuation.resume(with: Result { try work() })
            }
        }
    }
}

/// The values the store binds, as SQLite takes them.
enum SQLiteBind {
    static func value(of bind: any Encodable & Sendable) throws -> StoreValue {
        switch bind {
        case let optional as any OptionalBind where optional.isNone: .null
        case let text as String: .text(text)
        case let integer as Int: .integer(Int64(integer))
        case let integer as Int64: .integer(integer)
        case let integer as Int32: .integer(Int64(integer))
        case let flag as Bool: .integer(flag ? 1 : 0)
        case let real as Double: .real(real)
        case let bytes as [UInt8]: .blob(bytes)
        default: throw UnsupportedBindError(type: "\(type(of: bind))")
        }
    }
}

private protocol OptionalBind {
    var isNone: Bool { get }
}

extension Optional: OptionalBind {
    fileprivate var isNone: Bool { self == nil }
}

/// A bind of a type the store never binds: a bug, caught by the tests.
struct UnsupportedBindError: Error, CustomStringConvertible {
    var type: String
    var description: String { "cannot bind a value of type \(self.type) to SQLite" }
}

/// What SQLKit needs to serialize queries in SQLite's dialect; it never runs one.
private struct SQLiteSerializingDatabase: SQLDatabase {
    static let shared = SQLiteSerializingDatabase()

    var logger: Logger { Logger(label: "keysmith.sql") }
    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { SQLiteSQLDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        self.eventLoop.makeFailedFuture(SQLiteSerializingOnlyError())
    }
}

private struct SQLiteSerializingOnlyError: Error {}

/// SQLite's spelling of what the store's queries use: `"identifiers"`, `'strings'`, `?1` placeholders.
private struct SQLiteSQLDialect: SQLDialect {
    var name: String { "sqlite" }
    var identifierQuote: any SQLExpression { SQLRaw("\"") }
    var literalStringQuote: any SQLExpression { SQLRaw("'") }
    var supportsAutoIncrement: Bool { false }
    var autoIncrementClause: any SQLExpression { SQLRaw("AUTOINCREMENT") }
    var literalDefault: any SQLExpression { SQLLiteral.null }
    var enumSyntax: SQLEnumSyntax { .unsupported }
    var supportsDropBehavior: Bool { false }
    var supportsReturning: Bool { true }

    func bindPlaceholder(at position: Int) -> any SQLExpression { SQLRaw("?\(position)") }
    func literalBoolean(_ value: Bool) -> any SQLExpression { SQLRaw(value ? "TRUE" : "FALSE") }
}

/// The database could not be opened or is not a SQLite database.
public struct SQLiteOpenError: Error, CustomStringConvertible {
    public var path: String
    public var underlying: any Error

    public var description: String {
        "cannot open the SQLite database at \(self.path): \(self.underlying)"
    }
}
