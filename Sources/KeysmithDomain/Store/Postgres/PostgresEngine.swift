import KeysmithCore
import Logging
import NIOCore
import NIOSSL
import PostgresKit
import PostgresNIO
import SQLKit
import Synchronization

/// PostgreSQL through postgres-nio's `PostgresClient`, a service in the application's ServiceGroup.
///
/// A `PostgresClient` leases connections only while its `run()` runs. The server's setup (migrations, the secret,
/// the first organization, loading the verification state) happens before its ServiceGroup starts, and the
/// command-line tool has no ServiceGroup at all; until ``run()`` is called, the engine therefore works over one
/// connection of its own (the setup connection), and from then on over the client's pool.
///
/// Waiting for a pooled connection is bounded: when the pool has leased no connection for ``operationTimeout`` (the
/// database is unreachable), a call fails with ``DatabaseUnavailableError`` instead of waiting forever; behind a busy
/// pool that makes progress it waits longer (``busyPoolWait``). Writes run in READ
/// COMMITTED transactions whose checks take row locks (`FOR SHARE`, `FOR UPDATE`, through SQLKit's locking clause);
/// a transaction that PostgreSQL aborts for a deadlock or a serialization failure is run again, a few times.
final class PostgresEngine: SQLEngine {
    let dialect = StoreDialect.postgres
    let client: PostgresClient
    private let connectionConfiguration: PostgresConnection.Configuration
    private let settings: PostgresSettings
    private let logger: Logger
    private let observer: SQLStatementObserver?
    /// How long an operation may wait for the database, connecting included.
    let operationTimeout: Duration
    /// The longest an operation waits for a connection of a pool that is busy but making progress.
    let busyPoolWait: Duration = .seconds(30)
    private let progress = PoolProgress()
    private let executors = EventLoopExecutors()
    private let state = Mutex(State.setup(nil))
    private let setupLock = AsyncLock()
    private let connectionIDs = Atomic(0)
    /// This process's name in change notifications: every session of this engine carries it
    /// (`keysmith.notifier`), each commit that writes the change log sends it as the notification's payload, and the
    /// listener skips notifications that carry it, since this process applies its own writes as it makes them.
    let notifier = "keysmith-" + Hex.encode((0..<8).map { _ in UInt8.random(in: .min ... .max) })

    private enum State {
        /// Before `run()`: the setup connection, once opened.
        case setup(PostgresConnection?)
        case running
        case closed
    }

    /// The session setting that names the process in change notifications (``notifier``).
    static let notifierSetting = "keysmith.notifier"

    /// How many times a write aborted for a deadlock or a serialization failure is tried in all.
    static let writeAttempts = 5

    /// What every session of Keysmith's sets when it connects. A session that stops in the middle of a transaction
    /// (its replica paused, its network cut) would hold its row locks until the
    /// server noticed the connection was gone, which with the operating system's TCP defaults takes about two hours:
    /// the server ends such a transaction after 10 s idle, and probes a silent client every 5 s after 10 s, giving up
    /// after 3 unanswered probes.
    static let sessionSettings: [(String, String)] = [
        ("application_name", "keysmith"),
        ("idle_in_transaction_session_timeout", "10s"),
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
    ]

    init(
        _ settings: PostgresSettings,
        logger: Logger,
        observer: SQLStatementObserver? = nil,
        maximumConnections: Int = 20,
        operationTimeout: Duration = .seconds(3)
    ) throws {
        let tls = try Self.tls(for: settings)
        var configuration = PostgresClient.Configuration(
            host: settings.host,
            port: settings.port,
            username: settings.username,
            password: settings.password,
            database: settings.database,
            tls: tls
        )
        configuration.options.connectTimeout = .seconds(2)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        let notifier = self.notifier
        configuration.options.additionalStartupParameters =
            Self.sessionSettings + [(Self.notifierSetting, notifier)] + [
                // A statement that runs this long is stuck, not slow: the request gets an error rather than hanging.
                ("statement_timeout", "30s"),
                // A write that waits this long for a row lock that another session holds
                // is answered 503 with Retry-After rather than joining a queue behind a holder that may never let go.
                // Longer than idle_in_transaction_session_timeout: a Keysmith session stuck inside a transaction is
                // ended before any waiter gives up, so its waiters go through; and a queue of writers that are all
                // making progress (twenty invites to one organization at once, on a busy machine) is not cut short.
                ("lock_timeout", "15s"),
            ]
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        var connection = PostgresConnection.Configuration(
            host: settings.host,
            port: settings.port,
            username: settings.username,
            password: settings.password,
            database: settings.database,
            tls: try Self.connectionTLS(for: settings)
        )
        connection.options.connectTimeout = .seconds(2)
        // The setup connection migrates (a migration may wait for another replica's, and take long itself) and
        // LISTENs: no statement or lock timeout.
        connection.options.additionalStartupParameters = Self.sessionSettings + [(Self.notifierSetting, notifier)]
        self.connectionConfiguration = connection
        self.settings = settings
        self.logger = logger
        self.observer = observer
        self.operationTimeout = operationTimeout
    }

    /// libpq's sslmode as a TLS configuration: nil for `disable`; `required` when the server must offer TLS.
    static func tlsConfiguration(for settings: PostgresSettings) -> (configuration: TLSConfiguration, required: Bool)? {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let path = settings.rootCertificatePath {
            tls.trustRoots = .file(path)
        }
        switch settings.tlsMode {
        case .disable:
            return nil
        case .prefer:
            tls.certificateVerification = .none
            return (tls, false)
        case .require:
            // As libpq: a CA file given makes `require` check the certificate against it (verify-ca).
            tls.certificateVerification = settings.rootCertificatePath == nil ? .none : .noHostnameVerification
            return (tls, true)
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
            return (tls, true)
        case .verifyFull:
            tls.certificateVerification = .fullVerification
            return (tls, true)
        }
    }

    static func tls(for settings: PostgresSettings) throws -> PostgresClient.Configuration.TLS {
        guard let (configuration, required) = self.tlsConfiguration(for: settings) else { return .disable }
        return required ? .require(configuration) : .prefer(configuration)
    }

    static func connectionTLS(for settings: PostgresSettings) throws -> PostgresConnection.Configuration.TLS {
        guard let (configuration, required) = self.tlsConfiguration(for: settings) else { return .disable }
        let context = try NIOSSLContext(configuration: configuration)
        return required ? .require(context) : .prefer(context)
    }

    /// Runs the connection pool until the ServiceGroup shuts down; from now on operations use it. The hand-over
    /// waits for an operation in flight on the setup connection, then closes that connection.
    func run() async {
        let setupConnection = try? await self.setupLock.withLock {
            self.state.withLock { state -> PostgresConnection? in
                guard case .setup(let connection) = state else { return nil }
                state = .running
                return connection
            }
        }
        // The client starts at once (it warns about any lease before it runs); the setup connection closes beside it.
        await withDiscardingTaskGroup { group in
            if let setupConnection {
                group.addTask { try? await setupConnection.close() }
            }
            await self.client.run()
        }
        self.state.withLock { $0 = .closed }
    }

    private var isRunning: Bool {
        get throws {
            try self.state.withLock { state in
                switch state {
                case .setup: return false
                case .running: return true
                case .closed: throw DatabaseUnavailableError(reason: "the database client has stopped")
                }
            }
        }
    }

    /// Leases a connection for `body`: from the pool once running, the wait for a connection bounded by
    /// ``operationTimeout`` (that wait is what never ends while the database is down); before that the setup
    /// connection, one caller at a time (a migration may take long; connecting is bounded by its own timeout).
    private func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        if try self.isRunning {
            return try await self.leased(body)
        }
        return try await self.setupLock.withLock {
            // The pool may have taken over while this waited for the lock.
            if try self.isRunning {
                return try await self.leased(body)
            }
            return try await self.mappingConnectionFailures { try await body(try await self.setupConnection()) }
        }
    }

    /// Runs `body` on a pooled connection; fails with ``DatabaseUnavailableError`` when none is leased within
    /// ``operationTimeout`` while the pool makes no progress. Waiting behind other operations of a busy pool is not an
    /// outage: while connections keep being leased and returned, the wait goes on (up to ``busyPoolWait``). Once
    /// `body` runs, it is not timed: waiting for a row lock under contention is work, not an outage (and statements
    /// are bounded by the server's `statement_timeout`).
    private func leased<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let lease = LeaseFlag()
        let began = ContinuousClock.now
        return try await self.mappingConnectionFailures {
            try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    try await self.client.withConnection { connection in
                        lease.started.store(true, ordering: .releasing)
                        self.progress.recordProgress()
                        let result = try await withTaskExecutorPreference(self.executors.executor(for: connection.eventLoop)) {
                            try await body(connection)
                        }
                        self.progress.recordProgress()
                        return result
                    }
                }
                group.addTask {
                    var deadline = began + self.operationTimeout
                    while true {
                        try await Self.sleep(until: deadline)
                        if lease.started.load(ordering: .acquiring) { return nil }
                        let now = ContinuousClock.now
                        let lastProgress = self.progress.last
                        guard lastProgress + self.operationTimeout > now, now - began < self.busyPoolWait else {
                            throw DatabaseUnavailableError(reason: "no connection to \(self.settings) within \(now - began)")
                        }
                        deadline = lastProgress + self.operationTimeout
                    }
                }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let value = result { return value }
                }
                preconditionFailure("the operation's task ended without a result")
            }
        }
    }

    /// Sleeps until `deadline` on an event loop's timer. Not `Task.sleep`: in this toolchain a `Task.sleep`
    /// cancelled before its deadline leaks its sleep task (about 230 bytes), and the timer of every operation that got
    /// its connection in time is cancelled (heaptrack: 28,511 leaked for 2,400 key creations).
    private static func sleep(until deadline: ContinuousClock.Instant) async throws {
        let delay = deadline - ContinuousClock.now
        let nanoseconds = max(0, delay.nanoseconds)
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(nanoseconds)) {}
        try await withTaskCancellationHandler {
            try await timer.futureResult.get()
        } onCancel: {
            timer.cancel()
        }
    }

    /// The setup connection, opened on first use; called with the setup lock held, before the pool runs.
    private func setupConnection() async throws -> PostgresConnection {
        if case .setup(let existing?) = self.state.withLock({ $0 }), !existing.isClosed {
            return existing
        }
        let connection = try await self.openConnection()
        self.state.withLock { $0 = .setup(connection) }
        return connection
    }

    /// A new connection outside the pool; closed again if the task was cancelled while it opened, since nobody
    /// would close it then.
    private func openConnection() async throws -> PostgresConnection {
        let connection = try await PostgresConnection.connect(
            configuration: self.connectionConfiguration,
            id: self.connectionIDs.add(1, ordering: .relaxed).newValue,
            logger: self.logger
        )
        if Task.isCancelled {
            try? await connection.close()
            throw CancellationError()
        }
        return connection
    }

    /// LISTENs on `channel` on a connection of its own, outside the pool (LISTEN holds its connection): calls
    /// `onListening` once it listens, `onNotification` for each notification, until cancelled or the connection
    /// fails.
    func listen(
        _ channel: String,
        onListening: @escaping @Sendable () async -> Void,
        onNotification: @escaping @Sendable () async -> Void
    ) async throws {
        let connection = try await self.connect()
        do {
            try await connection.listen(on: channel) { notifications in
                await onListening()
                for try await notification in notifications where notification.payload != self.notifier {
                    await onNotification()
                }
            }
        } catch {
            try? await connection.close()
            if Task.isCancelled { return }
            if let error = error as? PSQLError {
                throw DatabaseUnavailableError(reason: "lost the change notifications' connection: \(PostgresFailure(error, sql: nil))")
            }
            throw error
        }
        try? await connection.close()
    }

    /// Opens a connection of its own, outside the pool (for LISTEN, which holds its connection).
    func connect() async throws -> PostgresConnection {
        try await self.mappingConnectionFailures { try await self.openConnection() }
    }

    /// Runs `body`, reporting a failure to connect as ``DatabaseUnavailableError``.
    private func mappingConnectionFailures<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError where Self.isConnectionFailure(error) {
            throw DatabaseUnavailableError(reason: "cannot reach \(self.settings): \(error.underlying.map { "\($0)" } ?? "\(error.code)")")
        } catch  where Self.isConnectFailure(error) {
            throw DatabaseUnavailableError(reason: "cannot reach \(self.settings): \(error)")
        }
    }

    private static func isConnectionFailure(_ error: PSQLError) -> Bool {
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
            .sslUnsupported, .failedToAddSSLHandler:
            true
        default:
            false
        }
    }

    private static func isConnectFailure(_ error: any Error) -> Bool {
        error is NIOConnectionError || error is ChannelError || (error as? IOError) != nil
    }

    // MARK: SQLEngine

    func unsafeRead<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await body(PostgresSession(engine: self, connection: nil, observer: self.observer, logger: logger))
    }

    func snapshot<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        try await self.withConnection { connection in
            let session = PostgresSession(engine: self, connection: connection, observer: self.observer, logger: logger)
            try await session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            do {
                let result = try await body(session)
                try await session.execute("COMMIT")
                return result
            } catch {
                try? await session.execute("ROLLBACK")
                throw error
            }
        }
    }

    func write<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await self.withConnection { connection in
                    let session = PostgresSession(engine: self, connection: connection, observer: self.observer, logger: logger)
                    try await session.execute("BEGIN")
                    do {
                        let result = try await body(session)
                        try await session.execute("COMMIT")
                        return result
                    } catch {
                        try? await session.execute("ROLLBACK")
                        throw error
                    }
                }
            } catch let failure as PostgresFailure where failure.isRetryable && attempt < Self.writeAttempts {
                attempt += 1
                logger.debug("Retrying a write", metadata: ["sqlstate": "\(failure.sqlState ?? "")", "attempt": "\(attempt)"])
                // A little jitter, so that the transactions that collided do not collide again.
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...10) * attempt))
            }
        }
    }

    func close() async throws {
        let setupConnection = try await self.setupLock.withLock {
            self.state.withLock { state -> PostgresConnection? in
                defer { state = .closed }
                if case .setup(let connection) = state { return connection }
                return nil
            }
        }
        try? await setupConnection?.close()
    }

    /// Runs one statement on `connection`, or on a connection leased for it.
    func run(
        _ query: PostgresQuery,
        sql: String,
        on connection: PostgresConnection?,
        logger: Logger
    ) async throws -> [PostgresRow] {
        try await self.run(sql: sql, on: connection) { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    /// Runs a ``StoreQuery`` as a named prepared statement: parsed and planned once per connection (postgres-nio
    /// prepares it on its first use there), then only bound and executed.
    func run<Query: StoreQuery>(_ query: Query, on connection: PostgresConnection?, logger: Logger) async throws -> [PostgresRow] {
        try await self.run(sql: Query.sql, on: connection) { connection in
            var rows: [PostgresRow] = []
            for try await row in try await connection.execute(PreparedStoreQuery(query: query), logger: logger) {
                rows.append(row)
            }
            return rows
        }
    }

    private func run(
        sql: String,
        on connection: PostgresConnection?,
        _ statement: @escaping @Sendable (PostgresConnection) async throws -> [PostgresRow]
    ) async throws -> [PostgresRow] {
        do {
            if let connection {
                return try await statement(connection)
            }
            return try await self.withConnection(statement)
        } catch let error as PSQLError {
            if Self.isConnectionFailure(error) {
                throw DatabaseUnavailableError(reason: "lost the database connection: \(PostgresFailure(error, sql: sql))")
            }
            let failure = PostgresFailure(error, sql: sql)
            switch failure.sqlState {
            case "55P03", "57014":
                // lock_not_available (lock_timeout), query_canceled (statement_timeout): another session holds
                // what this one needs, or the database is overloaded. Worth retrying shortly; not a bug.
                throw DatabaseBusyError(reason: failure.description)
            case "25P03", "57P01", "57P02", "57P03":
                // This session was ended (idle in transaction too long, the server shutting down or restarting).
                throw DatabaseUnavailableError(reason: failure.description)
            default:
                throw failure
            }
        }
    }
}

/// Queries on one connection (inside a transaction), or on a pooled connection leased per statement.
struct PostgresSession: SQLSession {
    let engine: PostgresEngine
    let connection: PostgresConnection?
    let observer: SQLStatementObserver?
    /// The caller's logger, which postgres-nio logs these statements' troubles to.
    let logger: Logger
    var dialect: StoreDialect { .postgres }

    func rows(_ query: SQLQueryString) async throws -> [StoreRow] {
        try await self.rows(query) { $0.copy() }
    }

    func rows<T: Sendable>(_ query: SQLQueryString, decode: @escaping @Sendable (any StoreRowReader) throws -> T) async throws -> [T] {
        var serializer = SQLSerializer(database: SerializingDatabase.postgres)
        query.serialize(to: &serializer)
        let sql = serializer.sql
        var bindings = PostgresBindings(capacity: serializer.binds.count)
        for bind in serializer.binds {
            try PostgresBind.append(bind, to: &bindings)
        }
        let rows = try await self.observed(sql) {
            try await self.engine.run(PostgresQuery(unsafeSQL: sql, binds: bindings), sql: sql, on: self.connection, logger: self.logger)
        }
        guard let first = rows.first else { return [] }
        let columns = StoreColumns(first.map(\.columnName))
        return try rows.map { try decode(PostgresRowReader(row: $0.makeRandomAccess(), columns: columns)) }
    }

    func rows<Query: StoreQuery>(_ query: Query) async throws -> [Query.Row] {
        let rows = try await self.observed(Query.sql) { try await self.engine.run(query, on: self.connection, logger: self.logger) }
        guard let first = rows.first else { return [] }
        let columns = StoreColumns(first.map(\.columnName))
        return try rows.map { try Query.decode(PostgresRowReader(row: $0.makeRandomAccess(), columns: columns)) }
    }

    func execute(_ sql: String) async throws {
        _ = try await self.observed(sql) {
            try await self.engine.run(PostgresQuery(unsafeSQL: sql), sql: sql, on: self.connection, logger: self.logger)
        }
    }

    private func observed<T>(_ sql: String, _ body: () async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        do {
            let result = try await body()
            self.observer?.statementFinished(ContinuousClock.now - started, false)
            return result
        } catch {
            self.observer?.statementFinished(ContinuousClock.now - started, true)
            throw error
        }
    }
}

/// A row as PostgreSQL sent it, read by position.
struct PostgresRowReader: StoreRowReader {
    let row: PostgresRandomAccessRow
    let columns: StoreColumns

    var columnNames: [String] { self.columns.names }

    func copy() -> StoreRow {
        StoreRow(columns: self.columns, values: (0..<self.row.count).map { self.value(at: $0) })
    }

    private func value(at position: Int) -> StoreValue {
        let cell = self.row[position]
        guard cell.bytes != nil else { return .null }
        if let integer = try? cell.decode(Int64.self) { return .integer(integer) }
        if let text = try? cell.decode(String.self) { return .text(text) }
        if let real = try? cell.decode(Double.self) { return .real(real) }
        if let flag = try? cell.decode(Bool.self) { return .integer(flag ? 1 : 0) }
        return .null
    }

    private func error(at position: Int, _ problem: String) -> StoreRowError {
        StoreRowError(column: self.columns.names[position], problem: problem)
    }

    func string(at position: Int) throws -> String {
        guard let value = try self.optionalString(at: position) else { throw self.error(at: position, "is null") }
        return value
    }

    func optionalString(at position: Int) throws -> String? {
        do {
            return try self.row[position].decode(String?.self)
        } catch {
            throw self.error(at: position, "is not text")
        }
    }

    func int(at position: Int) throws -> Int {
        guard let value = try self.optionalInt(at: position) else { throw self.error(at: position, "is null") }
        return value
    }

    func optionalInt(at position: Int) throws -> Int? {
        do {
            return try self.row[position].decode(Int?.self)
        } catch {
            throw self.error(at: position, "is not an integer")
        }
    }
}

/// The values the store binds, as PostgreSQL takes them.
/// A ``StoreQuery`` as postgres-nio prepares it. Its rows come back as they are, to be decoded with the columns
/// read once per result, as every other statement's are.
struct PreparedStoreQuery<Query: StoreQuery>: PostgresPreparedStatement {
    typealias Row = PostgresRow

    static var name: String { Query.name }
    static var sql: String { Query.sql }

    let query: Query

    func makeBindings() throws -> PostgresBindings {
        let values = self.query.bindings
        var bindings = PostgresBindings(capacity: values.count)
        for value in values {
            try PostgresBind.append(value, to: &bindings)
        }
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

enum PostgresBind {
    static func append(_ bind: any Encodable & Sendable, to bindings: inout PostgresBindings) throws {
        switch bind {
        case let optional as any OptionalBind where optional.isNone: bindings.appendNull()
        case let text as String: bindings.append(text)
        case let id as any TypedID: bindings.append(id.rawValue)
        case let integer as Int: bindings.append(Int64(integer))
        case let integer as Int64: bindings.append(integer)
        case let integer as Int32: bindings.append(Int64(integer))
        case let flag as Bool: bindings.append(flag)
        case let real as Double: bindings.append(real)
        case let bytes as [UInt8]: bindings.append(ByteBuffer(bytes: bytes))
        default: throw UnsupportedBindError(type: "\(type(of: bind))")
        }
    }
}

extension SerializingDatabase {
    /// postgres-kit's dialect.
    static let postgres = SerializingDatabase(dialect: PostgresDialect())
}

/// PostgreSQL refused a statement. Its description names the SQLSTATE, the server's message and the statement's
/// SQL (with `$N` placeholders), never the bound values, which can be secret digests; postgres-nio's own error
/// description would print them.
struct PostgresFailure: Error, CustomStringConvertible {
    var sqlState: String?
    var message: String
    var constraint: String?
    var sql: String?

    init(_ error: PSQLError, sql: String?) {
        self.sqlState = error.serverInfo?[.sqlState]
        self.message = error.serverInfo?[.message] ?? "\(error.code)"
        self.constraint = error.serverInfo?[.constraintName]
        self.sql = sql
    }

    var description: String {
        var text = "PostgreSQL error \(self.sqlState ?? "-"): \(self.message)"
        if let sql = self.sql {
            text += "; SQL: " + sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        return text
    }

    /// A deadlock or a serialization failure: running the transaction again can succeed.
    var isRetryable: Bool { self.sqlState == "40001" || self.sqlState == "40P01" }
}

/// Set once ``PostgresEngine`` has leased a connection for an operation: from then on the operation is not timed.
private final class LeaseFlag: Sendable {
    let started = Atomic(false)
}

/// When the pool last leased a connection or had one returned from a finished operation: a pool that makes progress
/// is busy, not cut off from its database.
final class PoolProgress: Sendable {
    private let epoch = ContinuousClock.now
    private let nanoseconds = Atomic<Int64>(0)

    func recordProgress() {
        let elapsed = ContinuousClock.now - self.epoch
        self.nanoseconds.store(elapsed.nanoseconds, ordering: .relaxed)
    }

    var last: ContinuousClock.Instant {
        self.epoch + .nanoseconds(self.nanoseconds.load(ordering: .relaxed))
    }
}

/// A connection's event loop as a task executor. An operation's body runs on its connection's event loop
/// (`withTaskExecutorPreference`), so that each statement is written to the socket in place and its answer resumes
/// the body on the loop that read it, with no thread wake-up either way (on the cooperative pool a statement costs
/// two).
final class EventLoopExecutor: TaskExecutor, Sendable {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

/// One ``EventLoopExecutor`` per event loop, made on first use.
final class EventLoopExecutors: Sendable {
    private let executors = Mutex<[ObjectIdentifier: EventLoopExecutor]>([:])

    func executor(for eventLoop: any EventLoop) -> EventLoopExecutor {
        self.executors.withLock { executors in
            if let executor = executors[ObjectIdentifier(eventLoop)] { return executor }
            let executor = EventLoopExecutor(eventLoop)
            executors[ObjectIdentifier(eventLoop)] = executor
            return executor
        }
    }
}
