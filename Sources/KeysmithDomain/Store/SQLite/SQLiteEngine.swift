import KeysmithCore
import Logging
import NIOCore
import NIOPosix
import SQLKit
import Synchronization

/// SQLite: one writer connection, and for a file database two reader connections in WAL mode, so that list pages
/// and lookups never wait for a write, plus one connection for snapshot reads. An in-memory database has one
/// connection for all.
///
/// Every statement runs on a thread of the engine's own, never on Swift's cooperative threads or NIO's event loops,
/// since SQLite's calls block. The writer has one thread (``SQLiteThread``), held for a whole transaction, whose body
/// runs on that thread so that its statements run in place, without a hop each. The readers have a thread each and
/// are not held between statements: each read statement runs on whichever reader thread is free, with whichever
/// reader connection is idle (as many as there are threads, so one always is). Snapshot reads are rare
/// (multi-statement admin reads, loading verification state), so they share one connection and its thread, one at
/// a time.
final class SQLiteEngine: SQLEngine {
    let dialect = StoreDialect.sqlite
    private let writer: SQLiteConnection
    private let writerThread: SQLiteThread
    private let writeLock = AsyncLock()
    private let readers: ReaderPool?
    private let snapshotReader: SQLiteConnection?
    private let snapshotThread: SQLiteThread?
    private let snapshotLock = AsyncLock()
    private let logger: Logger
    private let observer: SQLStatementObserver?
    private let isClosed = Atomic(false)

    /// Opens (creating if need be) the database at `url`, which must be a SQLite URL.
    static func open(_ url: DatabaseURL, logger: Logger, observer: SQLStatementObserver? = nil) async throws -> SQLiteEngine {
        logger.debug("Opening the SQLite database", metadata: ["database": "\(url)", "sqlite": "\(SQLiteLibrary.version)"])
        let missing = SQLiteLibrary.missingCapabilities
        guard missing.isEmpty else { throw SQLiteLibraryError(missing: missing) }
        switch url {
        case .sqliteMemory:
            let engine = SQLiteEngine(writer: try SQLiteConnection(path: ":memory:"), readers: [], snapshot: nil, logger: logger, observer: observer)
            do {
                try await engine.configure(engine.writer, ["PRAGMA foreign_keys = ON"])
            } catch {
                // Its threads must be shut down before it goes.
                try? await engine.close()
                throw error
            }
            return engine
        case .sqliteFile(let path, let synchronous):
            var connections: [SQLiteConnection] = []
            do {
                // Created readable by its owner only: it holds every key's digest (and, unless KEYSMITH_SECRET is
                // set, the secret they are made with). SQLite gives its WAL and shared-memory files the same mode.
                try SQLiteConnection.createPrivately(path)
                for _ in 0..<4 {
                    connections.append(try SQLiteConnection(path: path))
                }
            } catch {
                for connection in connections { connection.close() }
                throw SQLiteOpenError(path: path, underlying: error)
            }
            let engine = SQLiteEngine(
                writer: connections[0],
                readers: Array(connections[1...2]),
                snapshot: connections[3],
                logger: logger,
                observer: observer
            )
            do {
                try await engine.configure(
                    engine.writer,
                    [
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA journal_mode = WAL",
                        // FULL: a commit is on the disk before it is acknowledged, so that no acknowledged write (a
                        // revocation least of all) is lost to a power loss; NORMAL only when the URL asks for it.
                        "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")",
                        "PRAGMA foreign_keys = ON",
                    ]
                )
                for reader in connections[1...] {
                    // Configured on the writer's thread, before the readers are shared.
                    try await engine.configure(reader, ["PRAGMA busy_timeout = 5000", "PRAGMA query_only = 1"])
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

    private init(
        writer: SQLiteConnection,
        readers: [SQLiteConnection],
        snapshot: SQLiteConnection?,
        logger: Logger,
        observer: SQLStatementObserver?
    ) {
        self.writer = writer
        self.writerThread = SQLiteThread()
        self.readers = readers.isEmpty ? nil : ReaderPool(readers)
        self.snapshotReader = snapshot
        self.snapshotThread = snapshot.map { _ in SQLiteThread() }
        self.logger = logger
        self.observer = observer
    }

    private func configure(_ connection: SQLiteConnection, _ statements: [String]) async throws {
        let session = SQLiteSession(target: .connection(connection, self.writerThread), observer: nil)
        for statement in statements {
            try await session.execute(statement)
        }
    }

    private var writerSession: SQLiteSession {
        SQLiteSession(target: .connection(self.writer, self.writerThread), observer: self.observer)
    }

    /// Nothing runs in the background: the engine's threads start when it opens.
    func run() async {}

    func unsafeRead<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        guard let readers = self.readers else {
            // One connection: reading while a transaction is open on it would see uncommitted rows.
            return try await withTaskExecutorPreference(self.writerThread) {
                try await self.writeLock.withLock { try await body(self.writerSession) }
            }
        }
        return try await body(SQLiteSession(target: .readers(readers), observer: self.observer))
    }

    func snapshot<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        guard let connection = self.snapshotReader, let thread = self.snapshotThread else {
            // One connection, held for the whole body: one snapshot by construction.
            return try await withTaskExecutorPreference(self.writerThread) {
                try await self.writeLock.withLock { try await body(self.writerSession) }
            }
        }
        let session = SQLiteSession(target: .connection(connection, thread), observer: self.observer)
        return try await withTaskExecutorPreference(thread) {
            try await self.snapshotLock.withLock {
                // A deferred transaction takes its snapshot at its first read and keeps it until it ends.
                try await session.execute("BEGIN")
                let result: T
                do {
                    result = try await body(session)
                } catch {
                    await self.endTransaction(session, after: error, logger: logger)
                    throw error
                }
                try await session.execute("COMMIT")
                return result
            }
        }
    }

    func write<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        let session = self.writerSession
        return try await withTaskExecutorPreference(self.writerThread) {
            try await self.writeLock.withLock {
                try await session.execute("BEGIN IMMEDIATE")
                let result: T
                do {
                    result = try await body(session)
                    // A failed COMMIT (a deferred constraint, a full disk) leaves the transaction open: it must be
                    // rolled back below, or every later BEGIN on this connection would fail.
                    try await session.execute("COMMIT")
                } catch {
                    await self.endTransaction(session, after: error, logger: logger)
                    throw error
                }
                return result
            }
        }
    }

    /// Rolls back the transaction that `error` interrupted, if SQLite has not already; a failed rollback is logged,
    /// never swallowed silently, since it leaves the connection unusable for writes.
    private func endTransaction(_ session: SQLiteSession, after error: any Error, logger: Logger) async {
        do {
            try await session.rollbackIfInTransaction()
        } catch let rollbackError {
            logger.error(
                "Could not roll back a failed transaction",
                metadata: ["error": "\(rollbackError)", "cause": "\(error)"]
            )
        }
    }

    /// The statement caches of all connections, summed.
    var statementStatistics: SQLiteStatementStatistics {
        ([self.writer] + (self.readers?.connections ?? []) + [self.snapshotReader].compactMap { $0 })
            .reduce(SQLiteStatementStatistics()) { $0 + $1.statistics }
    }

    /// Copies the database to a new file at `destination` (see ``SQLiteConnection/backup(to:)``), on the snapshot
    /// connection for a file database.
    func backup(to destination: String) async throws {
        guard let connection = self.snapshotReader, let thread = self.snapshotThread else {
            try await self.writeLock.withLock {
                try await SQLiteSession.on(self.writerThread, sql: nil) { try self.writer.backup(to: destination) }
            }
            return
        }
        try await self.snapshotLock.withLock {
            try await SQLiteSession.on(thread, sql: nil) { try connection.backup(to: destination) }
        }
    }

    /// Closes every connection; a second call does nothing.
    func close() async throws {
        guard !self.isClosed.exchange(true, ordering: .relaxed) else { return }
        // Statements already running finish; those still queued fail. Then the connections close.
        try await self.readers?.close()
        if let snapshotReader, let snapshotThread {
            try await self.snapshotLock.withLock { snapshotReader.close() }
            try await snapshotThread.shutdown()
        }
        try await self.writeLock.withLock { self.writer.close() }
        try await self.writerThread.shutdown()
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

/// Queries on one connection (the writer within its transaction, or the snapshot reader within its read
/// transaction) or on any reader. SQLKit turns the query into SQL with numbered placeholders and its binds; the
/// statement then runs on the target's thread.
struct SQLiteSession: SQLSession {
    enum Target: Sendable {
        case connection(SQLiteConnection, SQLiteThread)
        case readers(ReaderPool)
    }

    let target: Target
    let observer: SQLStatementObserver?
    var dialect: StoreDialect { .sqlite }

    fileprivate init(target: Target, observer: SQLStatementObserver?) {
        self.target = target
        self.observer = observer
    }

    func rows(_ query: SQLQueryString) async throws -> [StoreRow] {
        let (sql, binds) = try Self.serialize(query)
        return try await self.run(sql) { connection in try connection.query(sql, binds) }
    }

    func rows<T: Sendable>(
        _ query: SQLQueryString,
        decode: @escaping @Sendable (any StoreRowReader) throws -> T
    ) async throws -> [T] {
        let (sql, binds) = try Self.serialize(query)
        return try await self.run(sql) { connection in try connection.query(sql, binds, decode: decode) }
    }

    func rows<Query: StoreQuery>(_ query: Query) async throws -> [Query.Row] {
        let sql = Query.sqliteSQL
        let binds = try query.bindings.map(SQLiteBind.value(of:))
        return try await self.run(sql) { connection in try connection.query(sql, binds, decode: Query.decode) }
    }

    func execute(_ sql: String) async throws {
        _ = try await self.run(sql) { connection in try connection.query(sql, [], caching: .uncached) }
    }

    /// Rolls back the connection's open transaction, if it has one (SQLite ends some on its own when a statement
    /// fails).
    func rollbackIfInTransaction() async throws {
        _ = try await self.run("ROLLBACK") { connection in
            if connection.isInTransaction {
                _ = try connection.query("ROLLBACK", [], caching: .uncached)
            }
        }
    }

    private static func serialize(_ query: SQLQueryString) throws -> (String, [StoreValue]) {
        var serializer = SQLSerializer(database: SerializingDatabase.sqlite)
        query.serialize(to: &serializer)
        return (serializer.sql, try serializer.binds.map(SQLiteBind.value(of:)))
    }

    /// Runs `body` on the target's thread and connection, and tells the observer how it went.
    private func run<T: Sendable>(_ sql: String, _ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let started = ContinuousClock.now
        do {
            let result: T
            switch self.target {
            case .connection(let connection, let thread):
                result = try await Self.on(thread, sql: sql) { try body(connection) }
            case .readers(let readers):
                result = try await Self.onThread(readers.threads, sql: sql) { try readers.withConnection(body) }
            }
            self.observer?.statementFinished(ContinuousClock.now - started, false)
            return result
        } catch {
            self.observer?.statementFinished(ContinuousClock.now - started, true)
            throw error
        }
    }

    /// Runs `work` on `thread`: in place when the caller already runs there (inside a transaction body), else by
    /// hopping there and back.
    static func on<T: Sendable>(_ thread: SQLiteThread, sql: String?, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        if thread.isCurrent { return try work() }
        guard !thread.hasStopped else { throw SQLiteFailure.closed(sql: sql) }
        return try await withTaskExecutorPreference(thread) {
            // Off the thread only when it had stopped and the job went to the global executor instead.
            guard thread.isCurrent || !thread.hasStopped else { throw SQLiteFailure.closed(sql: sql) }
            return try work()
        }
    }

    /// Runs `work` on one of `threads`.
    static func onThread<T: Sendable>(_ threads: NIOThreadPool, sql: String?, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        // Not `NIOThreadPool.runIfActive(_:)`, which skips the work if the task is cancelled: a ROLLBACK must run
        // whatever happens to the task that asked for it.
        try await withCheckedThrowingContinuation { continuation in
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
        case let id as any TypedID: .text(id.rawValue)
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

/// A bound value that may be an optional, for telling NULL from a value whatever its type.
protocol OptionalBind {
    var isNone: Bool { get }
}

extension Optional: OptionalBind {
    var isNone: Bool { self == nil }
}

/// A bind of a type the store never binds: a bug, caught by the tests.
struct UnsupportedBindError: Error, CustomStringConvertible {
    var type: String
    var description: String { "cannot bind a value of type \(self.type) to SQLite" }
}

extension SerializingDatabase {
    static let sqlite = SerializingDatabase(dialect: SQLiteSQLDialect())
}

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
struct SQLiteOpenError: Error, CustomStringConvertible {
    var path: String
    var underlying: any Error

    var description: String {
        "cannot open the SQLite database at \(self.path): \(self.underlying)"
    }
}
