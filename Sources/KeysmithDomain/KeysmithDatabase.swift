public import KeysmithCore
public import Logging

/// What applies the changes a write recorded to a server's verification state before the write returns: the server's
/// change feed. `changes` are the objects the write changed, `position` where in the change log it recorded them (nil
/// when it recorded nothing); the applier may apply more (everything committed before), never less, and when it
/// cannot read the database it applies `changes` the way that refuses rather than grants.
public protocol VerificationChangeApplier: Sendable {
    func applyCommittedChanges(_ changes: [KeysmithChange], at position: ChangePosition?) async
}

/// A database opened for Keysmith: migrated, with the server secret's hasher. Its store stays inside this module;
/// what others get of it is the read side (``reader``), the verification state's source (``verificationSource``),
/// and ``Keysmith``'s operations.
public struct KeysmithDatabase: Sendable {
    let store: SQLStore
    public let hasher: KeyHasher
    /// The migrations this opening applied.
    public let migrationsApplied: [String]

    /// Opens the database, applies pending migrations and loads (or on first start, makes) the server secret.
    public static func open(
        _ url: DatabaseURL,
        secret: [UInt8]? = nil,
        clock: KeysmithClock = .system,
        logger: Logger,
        observer: SQLStatementObserver? = nil,
        poolSize: Int = 20
    ) async throws -> KeysmithDatabase {
        let store = try await SQLStore.open(url, clock: clock, logger: logger, observer: observer, poolSize: poolSize)
        do {
            let applied = try await store.migrate()
            let secret = try await store.serverSecret(override: secret)
            return KeysmithDatabase(store: store, hasher: KeyHasher(secret: secret), migrationsApplied: applied)
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Applies pending migrations without opening the database for serving (`keysmith migrate`); returns the names
    /// applied. Several processes migrating one database at once take turns.
    public static func migrate(_ url: DatabaseURL, logger: Logger) async throws -> [String] {
        let store = try await SQLStore.open(url, logger: logger)
        do {
            let applied = try await store.migrate()
            try await store.close()
            return applied
        } catch {
            try? await store.close()
            throw error
        }
    }

    /// Copies a SQLite database file to `destination` with SQLite's online backup API: one consistent snapshot,
    /// taken while a server keeps writing (`keysmith backup`).
    public static func backUpSQLite(_ url: DatabaseURL, to destination: String, logger: Logger) async throws {
        let engine = try await SQLiteEngine.open(url, logger: logger)
        do {
            try await engine.backup(to: destination)
        } catch {
            try? await engine.close()
            throw error
        }
        try await engine.close()
    }

    /// What handlers may read directly.
    public var reader: any KeysmithStoreReader { self.store }

    /// What the change feed reads: the verification state, the change log, and its notifications.
    public var verificationSource: any VerificationSource { self.store }

    /// What the rate limiters of every replica lease their allowance from.
    public var rateLimitLedger: any RateLimitLedger { self.store }

    /// Runs the database's background work (PostgreSQL's connection pool) until the task is cancelled.
    public func run() async {
        await self.store.run()
    }

    public func close() async throws {
        try await self.store.close()
    }
}

extension Keysmith {
    /// Opens the database for the command-line tool (see ``KeysmithDatabase/open(_:secret:clock:logger:observer:poolSize:)``).
    public static func open(
        _ url: DatabaseURL,
        secret: [UInt8]? = nil,
        clock: KeysmithClock = .system,
        logger: Logger,
        command: String = "keysmith"
    ) async throws -> (keysmith: Keysmith, database: KeysmithDatabase) {
        let database = try await KeysmithDatabase.open(url, secret: secret, clock: clock, logger: logger)
        return (Keysmith(database: database, clock: clock, command: command), database)
    }
}
