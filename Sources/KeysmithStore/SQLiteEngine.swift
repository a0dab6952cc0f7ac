public import Logging
import NIOCore
import NIOPosix
public import SQLKit
import SQLiteKit
import Synchronization

/// SQLite through sqlite-nio: one writer connection, and for a file database two reader connections in WAL mode,
/// so that list pages and lookups never wait for a write. An in-memory database has one connection for all.
public final class SQLiteEngine: SQLEngine {
    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    private let nextReader = Atomic<Int>(0)
    private let writeLock = AsyncLock()

    /// Opens (creating if need be) the database at `url`, which must be a SQLite URL.
    public static func open(_ url: DatabaseURL, logger: Logger) async throws -> SQLiteEngine {
        var logger = logger
        logger[metadataKey: "database"] = "\(url)"
        switch url {
        case .sqliteMemory:
            let connection = try await openConnection(.memory, description: "an in-memory database", logger: logger)
            try await configure(connection, statements: ["PRAGMA foreign_keys = ON"])
            return SQLiteEngine(writer: connection, readers: [])
        case .sqliteFile(let path):
            let writer = try await openConnection(.file(path: path), description: path, logger: logger)
            do {
                try await configure(
                    writer,
                    statements: [
                        "PRAGMA busy_timeout = 5000",
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                    ]
                )
            } catch {
                try? await writer.close()
                throw SQLiteOpenError(path: path, underlying: error)
            }
            var readers: [SQLiteConnection] = []
            for _ in 0..<2 {
                let reader = try await openConnection(.file(path: path), description: path, logger: logger)
                try await configure(reader, statements: ["PRAGMA busy_timeout = 5000", "PRAGMA query_only = 1"])
                readers.append(reader)
            }
            return SQLiteEngine(writer: writer, readers: readers)
        case .postgres:
            preconditionFailure("SQLiteEngine.open called with a PostgreSQL URL")
        }
    }

    private init(writer: SQLiteConnection, readers: [SQLiteConnection]) {
        self.writer = writer
        self.readers = readers
    }

    private static func openConnection(
        _ storage: SQLiteConnection.Storage,
        description: String,
        logger: Logger
    ) async throws -> SQLiteConnection {
        do {
            return try await SQLiteConnection.open(storage: storage, logger: logger)
        } catch {
            throw SQLiteOpenError(path: description, underlying: error)
        }
    }

    private static func configure(_ connection: SQLiteConnection, statements: [String]) async throws {
        for statement in statements {
            _ = try await connection.query(statement, [])
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        if self.readers.isEmpty {
            // One connection: reading while a transaction is open on it would see uncommitted rows.
            let database = SQLiteSession(connection: self.writer)
            return try await self.writeLock.withLock { try await body(database) }
        }
        let index = self.nextReader.wrappingAdd(1, ordering: .relaxed).oldValue
        let reader = self.readers[(index & Int.max) % self.readers.count]
        return try await body(SQLiteSession(connection: reader))
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        let database = SQLiteSession(connection: self.writer)
        return try await self.writeLock.withLock {
            try await database.raw("BEGIN IMMEDIATE").run()
            let result: T
            do {
                result = try await body(database)
            } catch {
                try? await database.raw("ROLLBACK").run()
                throw error
            }
            try await database.raw("COMMIT").run()
            return result
        }
    }

    public func close() async throws {
        for reader in self.readers {
            try await reader.close()
        }
        try await self.writer.close()
    }
}

/// Queries on one sqlite-nio connection. SQLKit turns the query into SQL with `?` placeholders and its binds;
/// rows are handed back as sqlite-nio has them, without `Codable` decoding.
struct SQLiteSession: SQLSession {
    let connection: SQLiteConnection
    private static let encoder = SQLiteDataEncoder()

    init(connection: SQLiteConnection) {
        self.connection = connection
    }

    func rows(_ query: SQLQueryString) async throws -> [StoreRow] {
        var serializer = SQLSerializer(database: SQLiteSerializingDatabase.shared)
        query.serialize(to: &serializer)
        let binds = try serializer.binds.map { try Self.encoder.encode($0) }
        return try await self.connection.query(serializer.sql, binds).map(StoreRow.init)
    }
}

/// What SQLKit needs to serialize queries in SQLite's dialect; it never runs one.
private struct SQLiteSerializingDatabase: SQLDatabase {
    static let shared = SQLiteSerializingDatabase()

    var logger: Logger { Logger(label: "keysmith.sql") }
    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { SQLiteDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        self.eventLoop.makeFailedFuture(SQLiteSerializingOnlyError())
    }
}

private struct SQLiteSerializingOnlyError: Error {}

/// The database could not be opened or is not a SQLite database.
public struct SQLiteOpenError: Error, CustomStringConvertible {
    public var path: String
    public var underlying: any Error

    public var description: String {
        let reason = (self.underlying as? SQLiteError).map { $0.message } ?? "\(self.underlying)"
        return "cannot open the SQLite database at \(self.path): \(reason)"
    }
}
