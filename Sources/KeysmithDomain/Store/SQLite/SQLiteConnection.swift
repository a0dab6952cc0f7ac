import Synchronization
import VaporCSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

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
    /// dozen statement texts, plus one per `limit` a list is asked for (it is a literal, see ``SQLStore``), so
    /// usual traffic stays in the cache; a client cycling through every `limit` costs prepares, as before the cache.
    static let statementCacheCapacity = 128

    private let handle: Mutex<SQLiteHandle>

    /// Opens the database at `path` (`:memory:` for an in-memory database), creating the file if need be.
    init(path: String) throws {
        self.handle = Mutex(try SQLiteHandle(path: path))
    }

    /// Runs one statement with its binds (`?1`, `?2`, … in order) and returns every row it produces. `caching`
    /// says whether the prepared statement is kept for the next use of the same text.
    func query(_ sql: String, _ binds: [StoreValue], caching: StatementCaching = .cached) throws -> [StoreRow] {
        try self.handle.withLock { try $0.query(sql, binds, caching: caching) { $0.copy() } }
    }

    /// Runs one statement and makes one value of each row with `decode`, which reads the row in place.
    func query<T: Sendable>(
        _ sql: String,
        _ binds: [StoreValue],
        caching: StatementCaching = .cached,
        decode: @Sendable (any StoreRowReader) throws -> T
    ) throws -> [T] {
        try self.handle.withLock { try $0.query(sql, binds, caching: caching, decode) }
    }

    /// Creates an empty file at `path`, readable and writable by its owner only, unless something is there already
    /// (SQLite opens an empty file as a new database, and creates its WAL and shared-memory files with the mode of
    /// the database file).
    static func createPrivately(_ path: String) throws {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if descriptor >= 0 {
            closeFile(descriptor)
            return
        }
        guard errno == EEXIST else {
            let reason = String(cString: strerror(errno))
            throw SQLiteFailure(code: SQLITE_CANTOPEN, message: "cannot create \(path): \(reason)", sql: nil)
        }
    }

    /// Copies the whole database into a new database file at `destination` with SQLite's online backup API, as one
    /// consistent snapshot. The copy is written to a new file of its own beside `destination` (readable by its owner
    /// only), flushed to the disk, and linked into place only when complete: never over a file that is there.
    func backup(to destination: String) throws {
        try self.handle.withLock { try $0.backup(to: destination) }
    }

    /// Finalizes every cached statement and closes the connection. Idempotent; queries then fail.
    func close() {
        self.handle.withLock { $0.close() }
    }

    var statistics: SQLiteStatementStatistics {
        self.handle.withLock { $0.statistics }
    }

    /// Whether a transaction is open on the connection (SQLite is not in autocommit mode).
    var isInTransaction: Bool {
        self.handle.withLock { $0.isInTransaction }
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

    var isInTransaction: Bool {
        guard let handle = self.handle else { return false }
        return sqlite_nio_sqlite3_get_autocommit(handle) == 0
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

    func query<T>(
        _ sql: String,
        _ binds: [StoreValue],
        caching: StatementCaching,
        _ decode: (SQLiteCurrentRow) throws -> T
    ) throws -> [T] {
        guard let handle = self.handle else {
            throw SQLiteFailure.closed(sql: sql)
        }
        let statement: PreparedStatement
        switch caching {
        case .cached:
            statement = try self.prepared(sql, handle: handle)
        case .uncached:
            statement = try self.prepare(sql, handle: handle, persistent: false)
        }
        let pointer = statement.pointer
        // Resetting at the end, whatever happened, ends the statement's read transaction. The binds stay until the
        // next use binds every parameter again: sqlite3_clear_bindings would mark a statement whose plan depends on a
        // parameter (a bound LIMIT, say) for re-preparing, and so undo the cache. An uncached statement is finalized.
        defer {
            switch caching {
            case .cached: sqlite_nio_sqlite3_reset(pointer)
            case .uncached: sqlite_nio_sqlite3_finalize(pointer)
            }
        }
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
                    // As with text, a null pointer would bind NULL rather than an empty blob.
                    guard let start = buffer.baseAddress, !buffer.isEmpty else {
                        return sqlite_nio_sqlite3_bind_zeroblob(pointer, position, 0)
                    }
                    return sqlite_nio_sqlite3_bind_blob64(pointer, position, start, UInt64(buffer.count), sqliteTransient)
                }
            }
            guard status == SQLITE_OK else { throw self.failure(status, sql: sql) }
        }

        var results: [T] = []
        var isFirst = true
        while true {
            let status = sqlite_nio_sqlite3_step(pointer)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else { throw self.failure(status, sql: sql) }
            if isFirst {
                // The first step re-prepares the statement if the schema changed since; its columns may have too.
                statement.refreshColumnsIfReprepared()
                isFirst = false
            }
            results.append(try decode(SQLiteCurrentRow(statement: pointer, columns: statement.columns)))
        }
        return results
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
        let statement = try self.prepare(sql, handle: handle, persistent: true)
        self.statements[sql] = statement
        return statement
    }

    /// Prepares `sql`, which must hold exactly one statement: SQLite would silently ignore whatever follows the
    /// first one, so text after it (other than whitespace and semicolons) is refused.
    private func prepare(_ sql: String, handle: OpaquePointer, persistent: Bool) throws -> PreparedStatement {
        var pointer: OpaquePointer?
        var remainder = ""
        let status = sql.withCString { text in
            var tail: UnsafePointer<CChar>?
            let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
            let status = sqlite_nio_sqlite3_prepare_v3(handle, text, -1, flags, &pointer, &tail)
            if let tail { remainder = String(cString: tail) }
            return status
        }
        guard status == SQLITE_OK else { throw self.failure(status, sql: sql) }
        guard let pointer else {
            // An empty statement (only whitespace or a comment) prepares to nothing.
            throw SQLiteFailure(code: SQLITE_MISUSE, message: "the statement is empty", sql: sql)
        }
        guard remainder.allSatisfy({ $0.isWhitespace || $0 == ";" }) else {
            sqlite_nio_sqlite3_finalize(pointer)
            throw SQLiteFailure(
                code: SQLITE_MISUSE,
                message: "the text holds more than one statement; run each on its own",
                sql: sql
            )
        }
        return PreparedStatement(pointer: pointer, lastUse: self.useCounter)
    }

    func backup(to destination: String) throws {
        guard let source = self.handle else { throw SQLiteFailure.closed(sql: nil) }
        func failure(_ message: String) -> SQLiteFailure {
            SQLiteFailure(code: SQLITE_CANTOPEN, message: message, sql: nil)
        }
        // A new file with a name of its own, created here and nowhere else (O_EXCL, not through a link).
        let partial = destination + ".partial-" + String(UInt64.random(in: .min ... .max), radix: 36)
        let descriptor = open(partial, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw failure("cannot create \(partial): \(String(cString: strerror(errno)))") }
        closeFile(descriptor)
        var target: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        var status = sqlite_nio_sqlite3_open_v2(partial, &target, flags, nil)
        guard status == SQLITE_OK, let target else {
            let message = target.flatMap { sqlite_nio_sqlite3_errmsg($0) }.map { String(cString: $0) } ?? Self.describe(status)
            sqlite_nio_sqlite3_close(target)
            unlink(partial)
            throw SQLiteFailure(code: status, message: "cannot open \(partial): \(message)", sql: nil)
        }
        var closed = false
        defer { if !closed { sqlite_nio_sqlite3_close(target) } }
        guard let backup = sqlite_nio_sqlite3_backup_init(target, "main", source, "main") else {
            let message = String(cString: sqlite_nio_sqlite3_errmsg(target))
            unlink(partial)
            throw SQLiteFailure(code: sqlite_nio_sqlite3_extended_errcode(target), message: message, sql: nil)
        }
        // One step copies every page under one read transaction: a consistent snapshot, which in WAL mode does not
        // block the server's writer.
        status = sqlite_nio_sqlite3_backup_step(backup, -1)
        let finish = sqlite_nio_sqlite3_backup_finish(backup)
        guard status == SQLITE_DONE, finish == SQLITE_OK else {
            let message = String(cString: sqlite_nio_sqlite3_errmsg(target))
            unlink(partial)
            throw SQLiteFailure(code: status == SQLITE_DONE ? finish : status, message: message, sql: nil)
        }
        // The copy is a database of its own: no WAL left behind, so that the one file is the whole backup.
        status = sqlite_nio_sqlite3_exec(target, "PRAGMA journal_mode = DELETE", nil, nil, nil)
        guard status == SQLITE_OK else {
            unlink(partial)
            throw SQLiteFailure(code: status, message: String(cString: sqlite_nio_sqlite3_errmsg(target)), sql: nil)
        }
        sqlite_nio_sqlite3_close(target)
        closed = true
        // On the disk before it is in place, and in place only where nothing is: link() refuses an existing name.
        let flushed = open(partial, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard flushed >= 0, fsync(flushed) == 0 else {
            let reason = String(cString: strerror(errno))
            if flushed >= 0 { closeFile(flushed) }
            unlink(partial)
            throw failure("cannot flush the backup to the disk: \(reason)")
        }
        closeFile(flushed)
        guard link(partial, destination) == 0 else {
            let reason = errno == EEXIST ? "\(destination) appeared while the backup was made" : String(cString: strerror(errno))
            unlink(partial)
            throw failure("cannot move the backup into place: \(reason)")
        }
        unlink(partial)
        Self.flushDirectory(of: destination)
    }

    /// Flushes the directory holding `path`, so that a new name in it survives a power loss.
    private static func flushDirectory(of path: String) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let descriptor = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_CLOEXEC | O_DIRECTORY)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        closeFile(descriptor)
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
    /// Statements prepared for the cache since the connection opened; each cache miss is one. (Uncached statements,
    /// prepared on every use by design, are not counted.)
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

/// The row a statement is on, read in place: valid only until the statement steps again, so it is handed to a
/// decoding closure and never kept (it is not `Sendable`, and decoded values must be).
struct SQLiteCurrentRow: StoreRowReader {
    let statement: OpaquePointer
    let columns: StoreColumns

    var columnNames: [String] { self.columns.names }

    func copy() -> StoreRow {
        StoreRow(columns: self.columns, values: (0..<self.columns.names.count).map { self.value(at: $0) })
    }

    func value(at position: Int) -> StoreValue {
        let column = Int32(position)
        switch sqlite_nio_sqlite3_column_type(self.statement, column) {
        case SQLITE_INTEGER:
            return .integer(sqlite_nio_sqlite3_column_int64(self.statement, column))
        case SQLITE_FLOAT:
            return .real(sqlite_nio_sqlite3_column_double(self.statement, column))
        case SQLITE_TEXT:
            return .text(self.text(column))
        case SQLITE_BLOB:
            let start = sqlite_nio_sqlite3_column_blob(self.statement, column)
            let count = Int(sqlite_nio_sqlite3_column_bytes(self.statement, column))
            guard let start, count > 0 else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: start, count: count)))
        default:
            return .null
        }
    }

    private func text(_ column: Int32) -> String {
        // Text first, then its length in bytes, as SQLite's documentation asks.
        guard let text = sqlite_nio_sqlite3_column_text(self.statement, column) else { return "" }
        let count = Int(sqlite_nio_sqlite3_column_bytes(self.statement, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    private func type(at position: Int) -> Int32 {
        precondition(position >= 0 && position < self.columns.names.count, "column \(position) is not in the result")
        return sqlite_nio_sqlite3_column_type(self.statement, Int32(position))
    }

    private func error(at position: Int, _ problem: String) -> StoreRowError {
        StoreRowError(column: self.columns.names[position], problem: problem)
    }

    func string(at position: Int) throws -> String {
        guard self.type(at: position) == SQLITE_TEXT else { throw self.error(at: position, "is not text") }
        return self.text(Int32(position))
    }

    func optionalString(at position: Int) throws -> String? {
        switch self.type(at: position) {
        case SQLITE_NULL: return nil
        case SQLITE_TEXT: return self.text(Int32(position))
        default: throw self.error(at: position, "is not text")
        }
    }

    func int(at position: Int) throws -> Int {
        guard self.type(at: position) == SQLITE_INTEGER else { throw self.error(at: position, "is not an integer") }
        return Int(sqlite_nio_sqlite3_column_int64(self.statement, Int32(position)))
    }

    func optionalInt(at position: Int) throws -> Int? {
        switch self.type(at: position) {
        case SQLITE_NULL: return nil
        case SQLITE_INTEGER: return Int(sqlite_nio_sqlite3_column_int64(self.statement, Int32(position)))
        default: throw self.error(at: position, "is not an integer")
        }
    }
}

/// `SQLITE_TRANSIENT`: SQLite copies a bound text or blob before the call returns. The C macro is a cast of -1 that
/// Swift does not import.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Whether a connection keeps a statement prepared for its next use. The store's queries are cached; DDL and
/// PRAGMAs, which run once, are not.
enum StatementCaching: Sendable {
    case cached
    case uncached
}

/// SQLite refused a statement, or the connection could not be opened.
///
/// Its description names SQLite's result code and the statement's SQL, which has `?N` placeholders where values are
/// bound: never the bound values themselves, which can be secret digests.
struct SQLiteFailure: Error, CustomStringConvertible {
    /// The extended result code.
    var code: Int32
    var message: String
    var sql: String?

    var description: String {
        let name = sqlite_nio_sqlite3_errstr(self.code).map { String(cString: $0) } ?? "unknown"
        var text = "SQLite error \(self.code) (\(name)): \(self.message)"
        if let sql = self.sql {
            // On one line: whitespace runs (the indentation of multi-line queries) become one space.
            text += "; SQL: " + sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        return text
    }

    /// A constraint failed (`SQLITE_CONSTRAINT` and its extended codes).
    var isConstraintViolation: Bool { self.code & 0xFF == SQLITE_CONSTRAINT }

    static func closed(sql: String?) -> SQLiteFailure {
        SQLiteFailure(code: SQLITE_MISUSE, message: "the database connection is closed", sql: sql)
    }
}

/// `close(2)`, out of reach of the types' own `close()` methods.
private func closeFile(_ descriptor: Int32) {
    _ = close(descriptor)
}
