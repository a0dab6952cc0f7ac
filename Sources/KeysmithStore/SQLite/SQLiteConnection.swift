import Synchronization
import VaporCSQLite

/// One SQLite connection with a cache of prepared statements, used synchronously by one thread at a time.
///
/// This is a thin layer over the SQLite that sqlite-nio vendors (its `VaporCSQLite` module, compiled with the
/// package, so no system SQLite library is needed). sqlite-nio itself prepares every statement anew; for the
/// four-table join of a key list page, preparing costs about as much as running it. Here each statement text is
/// prepared once per connection and reused (`sqlite3_reset`, then new binds); SQLite re-prepares it by itself if
/// the schema changes underneath.
///
/// ``SQLiteEngine`` gives each connection to one query at a time, on a thread of its own pools, so the mutex that
/// guards the handle is never contended; it is what makes sharing the connection between threads safe.
final class SQLiteConnection: Sendable {
    /// How many prepared statements a connection keeps; the least recently used goes first. The store has a few
    /// dozen statement texts, so this bounds the cache without ever evicting on the hot paths.
    static let statementCacheCapacity = 128

    private let handle: Mutex<SQLiteHandle>

    /// Opens the database at `path` (`:memory:` for an in-memory database), creating the file if need be.
    init(path: String) throws {
        self.handle = Mutex(try SQLiteHandle(path: path))
    }

    /// Runs one statement with its binds (`?1`, `?2`, … in order) and returns every row it produces.
    func query(_ sql: String, _ binds: [StoreValue]) throws -> [StoreRow] {
        try self.handle.withLock { try $0.query(sql, binds) }
    }

    /// Finalizes every cached statement and closes the connection. Idempotent; queries then fail.
    func close() {
        self.handle.withLock { $0.close() }
    }

    var statistics: SQLiteStatementStatistics {
        self.handle.withLock { $0.statistics }
    }
}

/// The `sqlite3` handle and its statements. Not thread-safe: only reached through ``SQLiteConnection``'s mutex.
private final class SQLiteHandle {
    private var handle: OpaquePointer?
    private var statements: [String: PreparedStatement] = [:]
    private var useCounter: UInt64 = 0
    private var prepareCount = 0

    init(path: String) throws {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let status = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.flatMap { sqlite_nio_sqlite3_errmsg($0) }.map { String(cString: $0) } ?? Self.describe(status)
            sqlite_nio_sqlite3_close(handle)
            throw SQLiteFailure(code: status, message: message, sql: nil)
        }
        self.handle = handle
    }

    deinit {
        self.close()
    }

    func close() {
        for statement in self.statements.values {
            sqlite_nio_sqlite3_finalize(statement.pointer)
        }
        self.statements = [:]
        if let handle = self.handle {
            sqlite_nio_sqlite3_close(handle)
            self.handle = nil
        }
    }

    func query(_ sql: String, _ binds: [StoreValue]) throws -> [StoreRow] {
        guard let handle = self.handle else {
            throw SQLiteFailure.closed(sql: sql)
        }
        let statement = try self.prepared(sql, handle: handle)
        let pointer = statement.pointer
        // Resetting at the end, whatever happened, ends the statement's read transaction. The binds stay until the
        // next use binds every parameter again: sqlite3_clear_bindings would mark a statement whose plan depends on a
        // parameter (a bound LIMIT, say) for re-preparing, and so undo the cache.
        defer { sqlite_nio_sqlite3_reset(pointer) }
        // Every parameter is bound on every use, so no value can linger from the previous one.
        guard sqlite_nio_sqlite3_bind_parameter_count(pointer) == binds.count else {
            throw SQLiteFailure(
                code: SQLITE_RANGE,
                message: "the statement has \(sqlite_nio_sqlite3_bind_parameter_count(pointer)) parameters, given \(binds.count)",
                sql: sql
            )
        }
        for (index, value) in binds.enumerated() {
            let position = Int32(index + 1)
            let status: Int32
            switch value {
            case .null:
                status = sqlite_nio_sqlite3_bind_null(pointer, position)
            case .integer(let integer):
                status = sqlite_nio_sqlite3_bind_int64(pointer, position, integer)
            case .real(let real):
                status = sqlite_nio_sqlite3_bind_double(pointer, position, real)
            case .text(let text):
                var text = text
                status = text.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { characters in
                        // A null pointer would bind NULL; an empty string must bind ''.
                        guard let start = characters.baseAddress, !characters.isEmpty else {
                            return sqlite_nio_sqlite3_bind_text64(pointer, position, "", 0, sqliteTransient, UInt8(SQLITE_UTF8))
                        }
                        return sqlite_nio_sqlite3_bind_text64(
                            pointer,
                            position,
                            start,
                            UInt64(characters.count),
                            sqliteTransient,
                            UInt8(SQLITE_UTF8)
                        )
                    }
                }
            case .blob(let bytes):
                status = bytes.withUnsafeBytes { buffer in
                    sqlite_nio_sqlite3_bind_blob64(pointer, position, buffer.baseAddress, UInt64(buffer.count), sqliteTransient)
                }
            }
            guard status == SQLITE_OK else { throw self.failure(status, sql: sql) }
        }

        var rows: [StoreRow] = []
        var columnCount: Int32 = 0
        while true {
            let status = sqlite_nio_sqlite3_step(pointer)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else { throw self.failure(status, sql: sql) }
            if rows.isEmpty {
                // The first step re-prepares the statement if the schema changed since; its columns may have too.
                statement.refreshColumnsIfReprepared()
                columnCount = Int32(statement.columns.names.count)
            }
            var values: [StoreValue] = []
            values.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                values.append(Self.value(pointer, column))
            }
            rows.append(StoreRow(columns: statement.columns, values: values))
        }
        return rows
    }

    private static func value(_ statement: OpaquePointer, _ column: Int32) -> StoreValue {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER:
            return .integer(sqlite_nio_sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT:
            return .real(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            // Text first, then its length in bytes, as SQLite's documentation asks.
            guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let start = sqlite_nio_sqlite3_column_blob(statement, column)
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            guard let start, count > 0 else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: start, count: count)))
        default:
            return .null
        }
    }

    /// The cached statement for `sql`, prepared now if it is not cached.
    private func prepared(_ sql: String, handle: OpaquePointer) throws -> PreparedStatement {
        self.useCounter &+= 1
        if let statement = self.statements[sql] {
            statement.lastUse = self.useCounter
            return statement
        }
        if self.statements.count >= SQLiteConnection.statementCacheCapacity {
            self.evictLeastRecentlyUsed()
        }
        self.prepareCount += 1
        var pointer: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let status = sql.withCString { text in
            sqlite_nio_sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, &tail)
        }
        guard status == SQLITE_OK else { throw self.failure(status, sql: sql) }
        guard let pointer else {
            // An empty statement (only whitespace or a comment) prepares to nothing.
            throw SQLiteFailure(code: SQLITE_MISUSE, message: "the statement is empty", sql: sql)
        }
        let statement = PreparedStatement(pointer: pointer, lastUse: self.useCounter)
        self.statements[sql] = statement
        return statement
    }

    private func evictLeastRecentlyUsed() {
        guard let (sql, statement) = self.statements.min(by: { $0.value.lastUse < $1.value.lastUse }) else { return }
        sqlite_nio_sqlite3_finalize(statement.pointer)
        self.statements[sql] = nil
    }

    private func failure(_ status: Int32, sql: String) -> SQLiteFailure {
        let message = self.handle.flatMap { sqlite_nio_sqlite3_errmsg($0) }.map { String(cString: $0) } ?? Self.describe(status)
        return SQLiteFailure(code: status, message: message, sql: sql)
    }

    private static func describe(_ status: Int32) -> String {
        sqlite_nio_sqlite3_errstr(status).map { String(cString: $0) } ?? "SQLite error \(status)"
    }

    var statistics: SQLiteStatementStatistics {
        SQLiteStatementStatistics(
            cached: self.statements.count,
            prepared: self.prepareCount,
            reprepared: self.statements.values.reduce(0) { $0 + Int(PreparedStatement.reprepareCount($1.pointer)) }
        )
    }
}

/// How a connection's statement cache has fared.
struct SQLiteStatementStatistics: Equatable, Sendable {
    /// Statements in the cache now.
    var cached = 0
    /// Statements prepared from their text since the connection opened; each cache miss is one.
    var prepared = 0
    /// Times SQLite re-prepared a cached statement by itself, after a schema change or because a bound value could
    /// change its plan; each costs what a cache miss does.
    var reprepared = 0

    static func + (lhs: Self, rhs: Self) -> Self {
        Self(cached: lhs.cached + rhs.cached, prepared: lhs.prepared + rhs.prepared, reprepared: lhs.reprepared + rhs.reprepared)
    }
}

/// A statement prepared once and reused, with its result's column names.
private final class PreparedStatement {
    let pointer: OpaquePointer
    private(set) var columns: StoreColumns
    var lastUse: UInt64
    /// How many times SQLite had re-prepared the statement when ``columns`` were read.
    private var reprepares: Int32

    init(pointer: OpaquePointer, lastUse: UInt64) {
        self.pointer = pointer
        self.lastUse = lastUse
        self.reprepares = Self.reprepareCount(pointer)
        self.columns = Self.columns(pointer)
    }

    func refreshColumnsIfReprepared() {
        let reprepares = Self.reprepareCount(self.pointer)
        guard reprepares != self.reprepares else { return }
        self.reprepares = reprepares
        self.columns = Self.columns(self.pointer)
    }

    static func reprepareCount(_ pointer: OpaquePointer) -> Int32 {
        sqlite_nio_sqlite3_stmt_status(pointer, Int32(SQLITE_STMTSTATUS_REPREPARE), 0)
    }

    private static func columns(_ pointer: OpaquePointer) -> StoreColumns {
        let names = (0..<sqlite_nio_sqlite3_column_count(pointer)).map { column in
            sqlite_nio_sqlite3_column_name(pointer, column).map { String(cString: $0) } ?? ""
        }
        return StoreColumns(names)
    }
}

/// `SQLITE_TRANSIENT`: SQLite copies a bound text or blob before the call returns. The C macro is a cast of -1 that
/// Swift does not import.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// SQLite refused a statement, or the connection could not be opened.
struct SQLiteFailure: Error, CustomStringConvertible {
    /// The extended result code.
    var code: Int32
    var message: String
    var sql: String?

    var description: String { self.message }

    static func closed(sql: String?) -> SQLiteFailure {
        SQLiteFailure(code: SQLITE_MISUSE, message: "the database connection is closed", sql: sql)
    }
}
