import Foundation
import KeysmithCore
import KeysmithTestSupport
import Logging
import SQLKit
import Testing

@testable import KeysmithDomain

@Suite("SQLite connections and engine")
struct SQLiteEngineTests {
    @Test("The change log's read finds its place through the index, whatever the log's length")
    func changeLogReadUsesItsIndex() async throws {
        try await StoreFixture.run(.sqlite) { fixture in
            // The row value `(transaction_id, sequence) > (0, S)` made SQLite range over transaction_id alone, a
            // constant on SQLite: every catch-up read the whole log.
            struct Plan: StoreQuery {
                static let sql = "EXPLAIN QUERY PLAN " + SQLStore.ChangeLogRead.sql
                static let sqliteSQL = "EXPLAIN QUERY PLAN " + SQLStore.ChangeLogRead.sqliteSQL
                var bindings: [any Encodable & Sendable] { [0, 5, 1_000] }
                static func decode(_ row: any StoreRowReader) throws -> String { try row.string(at: 3) }
            }
            let plan = try await fixture.store.engine.unsafeRead { database in try await database.rows(Plan()) }
            #expect(plan.contains("SEARCH keysmith_changes USING INDEX keysmith_changes_by_position (transaction_id=? AND sequence>?)"), "\(plan)")
        }
    }

    @Test("A statement is prepared once and reused with new binds, its results always the current ones")
    func statementsAreReused() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        _ = try connection.query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)", [])
        for n in 1...3 {
            _ = try connection.query("INSERT INTO t (id, n) VALUES (?1, ?2)", [.text("id\(n)"), .integer(Int64(n))])
        }
        let before = connection.statistics
        for n in 1...3 {
            let rows = try connection.query("SELECT id, n FROM t WHERE n >= ?1 ORDER BY n LIMIT 2", [.integer(Int64(n))])
            #expect(try rows.map { try $0.string("id") } == (n...min(n + 1, 3)).map { "id\($0)" })
            #expect(try rows.map { try $0.int("n") } == Array(n...min(n + 1, 3)))
        }
        #expect(connection.statistics == .init(cached: before.cached + 1, prepared: before.prepared + 1, reprepared: 0))
        // Each use binds every parameter: a missing bind is an error, not the previous use's value.
        #expect(throws: SQLiteFailure.self) { try connection.query("SELECT id, n FROM t WHERE n >= ?1 ORDER BY n LIMIT 2", []) }
    }

    @Test("Binds keep their types: '' is not NULL, nil is NULL, integers stay integers")
    func bindTypes() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        let sql = "SELECT ?1 IS NULL AS is_null, typeof(?1) AS type, ?1 AS value"
        let empty = try #require(try connection.query(sql, [.text("")]).first)
        #expect(try empty.int("is_null") == 0)
        #expect(try empty.string("value") == "")
        let null = try #require(try connection.query(sql, [try SQLiteBind.value(of: String?.none)]).first)
        #expect(try null.int("is_null") == 1)
        #expect(try null.optionalString("value") == nil)
        let integer = try #require(try connection.query(sql, [try SQLiteBind.value(of: Int?.some(42))]).first)
        #expect(try integer.string("type") == "integer")
        #expect(try integer.int("value") == 42)
        let emptyBlob = try #require(try connection.query(sql, [try SQLiteBind.value(of: [UInt8]())]).first)
        #expect(try emptyBlob.string("type") == "blob")
        #expect(emptyBlob.values[2] == .blob([]))
        let blob = try #require(try connection.query(sql, [.blob([0, 1, 255])]).first)
        #expect(blob.values[2] == .blob([0, 1, 255]))
        let text = try #require(try connection.query(sql, [try SQLiteBind.value(of: "sk-é✓")]).first)
        #expect(try text.string("value") == "sk-é✓")
        #expect(throws: UnsupportedBindError.self) { try SQLiteBind.value(of: Date()) }
    }

    @Test("Rows read in place give the same values as copied rows, and refuse the wrong type")
    func rowsReadInPlace() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        let sql = "SELECT 42 AS n, 'sk-é✓' AS s, NULL AS z, '' AS e"
        let inPlace = try connection.query(sql, []) { row in
            (try row.int(at: 0), try row.string(at: 1), try row.optionalString(at: 2), try row.optionalInt(at: 2), try row.string(at: 3))
        }
        #expect(inPlace.count == 1)
        #expect(inPlace[0] == (42, "sk-é✓", nil, nil, ""))
        let copied = try #require(try connection.query(sql, []).first)
        #expect(copied.values == [.integer(42), .text("sk-é✓"), .null, .text("")])
        #expect(copied.columnNames == ["n", "s", "z", "e"])
        #expect(throws: StoreRowError.self) { try connection.query(sql, []) { try $0.string(at: 0) } }
        #expect(throws: StoreRowError.self) { try connection.query(sql, []) { try $0.int(at: 1) } }
        #expect(throws: StoreRowError.self) { try connection.query(sql, []) { try $0.string(at: 2) } }
    }

    @Test("The cache keeps at most its capacity, dropping the least recently used statement")
    func cacheIsBounded() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        let capacity = SQLiteConnection.statementCacheCapacity
        for n in 0..<(capacity + 10) {
            let row = try #require(try connection.query("SELECT \(n) AS n", []).first)
            #expect(try row.int("n") == n)
            // Statement 0 is used every time, so it is never the least recently used.
            #expect(try connection.query("SELECT 0 AS n", []).first?.int("n") == 0)
        }
        #expect(connection.statistics.cached == capacity)
    }

    @Test("A failed statement reports SQLite's message and stays usable; a schema change is seen by cached statements")
    func failuresAndSchemaChanges() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        _ = try connection.query("CREATE TABLE t (id TEXT PRIMARY KEY)", [])
        let insert = "INSERT INTO t (id) VALUES (?1)"
        _ = try connection.query(insert, [.text("a")])
        let failure = try #require(throws: SQLiteFailure.self) { try connection.query(insert, [.text("a")]) }
        #expect(failure.message.contains("UNIQUE constraint failed"))
        _ = try connection.query(insert, [.text("b")])
        #expect(try connection.query("SELECT * FROM t ORDER BY id", []).map { try $0.string("id") } == ["a", "b"])

        _ = try connection.query("ALTER TABLE t ADD COLUMN note TEXT DEFAULT 'x'", [])
        let rows = try connection.query("SELECT * FROM t ORDER BY id", [])
        #expect(rows.first?.columns.names == ["id", "note"])
        #expect(try rows.map { try $0.string("note") } == ["x", "x"])

        #expect(throws: SQLiteFailure.self) { try connection.query("SELEC 1", []) }
        #expect(throws: SQLiteFailure.self) { try connection.query("   ", []) }
    }

    @Test("A file database is FULL-synchronous unless its URL asks for NORMAL, and its files are its owner's alone")
    func durabilityAndModes() async throws {
        try await withTemporaryDirectory { directory in
            func synchronous(_ url: DatabaseURL) async throws -> Int? {
                let engine = try await SQLiteEngine.open(url, logger: Logger(label: "test"))
                // Read on the writer connection, which the setting is made on.
                let value = try await engine.write { try await $0.raw("PRAGMA synchronous").first()?.int("synchronous") }
                try await engine.close()
                return value
            }
            let path = directory.appendingPathComponent("k.sqlite").path
            #expect(try await synchronous(try DatabaseURL(parsing: "sqlite:\(path)")) == 2)
            #expect(try await synchronous(try DatabaseURL(parsing: "sqlite:\(path)?synchronous=normal")) == 1)
            #expect(try await synchronous(.sqliteFile(path: path, synchronous: .full)) == 2)

            let engine = try await SQLiteEngine.open(.sqliteFile(path: path), logger: Logger(label: "test"))
            try await engine.write { try await $0.raw("CREATE TABLE IF NOT EXISTS t (id TEXT)").run() }
            for file in [path, path + "-wal", path + "-shm"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: file)
                #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(file)")
            }
            let backup = directory.appendingPathComponent("copy.sqlite").path
            try await engine.backup(to: backup)
            #expect((try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int) == 0o600)
            // Never over a file that is there, whatever it is; and nothing left behind.
            try Data("mine".utf8).write(to: URL(fileURLWithPath: directory.appendingPathComponent("taken").path))
            await #expect(throws: SQLiteFailure.self) { try await engine.backup(to: directory.appendingPathComponent("taken").path) }
            #expect(try String(contentsOfFile: directory.appendingPathComponent("taken").path, encoding: .utf8) == "mine")
            let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".partial") }
            #expect(left.isEmpty)
            try await engine.close()
        }
        #expect(throws: DatabaseURLError.self) { try DatabaseURL(parsing: "sqlite:k.sqlite?synchronous=off") }
        #expect(throws: DatabaseURLError.self) { try DatabaseURL(parsing: "sqlite:k.sqlite?journal=wal") }
        #expect(try DatabaseURL(parsing: "sqlite:k.sqlite?synchronous=NORMAL").description == "sqlite:k.sqlite?synchronous=normal")
    }

    @Test("On a file database, reads see committed data only and never wait for a write in progress")
    func readsDoNotWaitForWrites() async throws {
        try await withTemporaryDirectory { directory in
            let engine = try await SQLiteEngine.open(
                .sqliteFile(path: directory.appendingPathComponent("k.sqlite").path),
                logger: Logger(label: "test")
            )
            try await engine.write { try await $0.raw("CREATE TABLE t (id TEXT PRIMARY KEY)").run() }

            let (inserted, insertedContinuation) = AsyncStream<Void>.makeStream()
            let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
            let write = Task {
                try await engine.write { database in
                    try await database.raw("INSERT INTO t (id) VALUES ('a')").run()
                    insertedContinuation.yield()
                    for await _ in release { break }
                }
            }
            for await _ in inserted { break }
            // More reads at once than there are reader connections, all while the write holds its transaction open.
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") ?? -1 }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(counts == Array(repeating: 0, count: 8))
            releaseContinuation.yield()
            try await write.value
            #expect(try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 1)

            try await engine.close()
            await #expect(throws: SQLiteFailure.self) {
                try await engine.unsafeRead { try await $0.raw("SELECT 1").run() }
            }
            await #expect(throws: SQLiteFailure.self) {
                try await engine.write { try await $0.raw("SELECT 1").run() }
            }
        }
    }

    @Test("The store's hot queries are prepared once: new projects, cursors and keys reuse them, never re-prepared")
    func hotQueriesStayPrepared() async throws {
        try await StoreFixture.run(.sqlite) { fixture in
            let engine = try #require(fixture.store.engine as? SQLiteEngine)
            let (project, member) = try await fixture.projectWithMember()
            var keys: [APIKey] = []
            for n in 0..<5 {
                keys.append(try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id), name: "k\(n)")))
            }
            func listAndLookUp(_ project: Project, after: APIKeyID?) async throws {
                _ = try await fixture.store.listAPIKeys(
                    organizationID: fixture.organizationID,
                    projectID: project.id,
                    access: .active,
                    page: PageRequest(limit: 2, after: after?.rawValue)
                )
                // What the change feed reads for a changed key.
                _ = try await fixture.store.keyVerificationState(keyID: keys.randomElement()!.id)
                _ = try await fixture.store.revokedSecretHashes(keyID: keys.randomElement()!.id)
            }
            // Warm up every path once: first and later pages, a project with keys and one without (whose empty
            // page is checked in a snapshot), each on whichever connections it runs on.
            func round() async throws {
                let (other, _) = try await fixture.projectWithMember()
                for key in keys.dropLast() {
                    try await listAndLookUp(project, after: key.id)
                    try await listAndLookUp(other, after: nil)
                }
                try await listAndLookUp(project, after: nil)
            }
            try await round()
            let warm = engine.statementStatistics
            try await round()
            try await round()
            // Nothing was prepared after the first uses, and SQLite re-prepared nothing (the migrations' schema
            // changes re-prepared a few statements before that, as they should).
            #expect(engine.statementStatistics.prepared == warm.prepared)
            #expect(engine.statementStatistics.reprepared == warm.reprepared)
        }
    }

    @Test("A write that throws is rolled back")
    func failedWritesRollBack() async throws {
        let engine = try await SQLiteEngine.open(.sqliteMemory, logger: Logger(label: "test"))
        try await engine.write { try await $0.raw("CREATE TABLE t (id TEXT PRIMARY KEY)").run() }
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await engine.write { database in
                try await database.raw("INSERT INTO t (id) VALUES ('a')").run()
                throw Abort()
            }
        }
        #expect(try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 0)
        try await engine.close()
    }

    @Test("A failed COMMIT is rolled back, so the next write succeeds")
    func failedCommitRollsBack() async throws {
        try await withTemporaryDirectory { directory in
            let engine = try await SQLiteEngine.open(
                .sqliteFile(path: directory.appendingPathComponent("k.sqlite").path),
                logger: Logger(label: "test")
            )
            try await engine.write { database in
                try await database.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
                try await database.execute(
                    "CREATE TABLE child (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
                )
            }
            // A deferred foreign key is checked only at COMMIT: the statements succeed and the commit fails.
            let failure = await #expect(throws: SQLiteFailure.self) {
                try await engine.write { database in
                    try await database.raw("INSERT INTO child (id, parent_id) VALUES ('c', 'missing')").run()
                }
            }
            #expect(failure?.isConstraintViolation == true)
            #expect(failure?.sql == "COMMIT")
            // Without a ROLLBACK after the failed COMMIT, this BEGIN IMMEDIATE would fail, and so every write after it.
            try await engine.write { database in
                try await database.raw("INSERT INTO parent (id) VALUES ('p')").run()
                try await database.raw("INSERT INTO child (id, parent_id) VALUES ('c', 'p')").run()
            }
            let rows = try await engine.unsafeRead { try await $0.raw("SELECT id, parent_id FROM child").all() }
            #expect(try rows.map { try $0.string("parent_id") } == ["p"])
            try await engine.close()
        }
    }

    @Test("A full database fails the write cleanly, and writes work again once there is room")
    func fullDatabase() async throws {
        try await withTemporaryDirectory { directory in
            let engine = try await SQLiteEngine.open(
                .sqliteFile(path: directory.appendingPathComponent("k.sqlite").path),
                logger: Logger(label: "test")
            )
            try await engine.write { try await $0.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)") }
            let pages = try #require(try await engine.write { try await $0.rows("PRAGMA page_count").first?.int(at: 0) })
            try await engine.write { try await $0.execute("PRAGMA max_page_count = \(pages + 2)") }
            let failure = await #expect(throws: SQLiteFailure.self) {
                try await engine.write { database in
                    for n in 0..<64 {
                        try await database.raw("INSERT INTO t (id, payload) VALUES (\(bind: n), zeroblob(4096))").run()
                    }
                }
            }
            #expect(failure.map { $0.code & 0xFF } == 13)  // SQLITE_FULL
            #expect(try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 0)
            try await engine.write { try await $0.execute("PRAGMA max_page_count = 1000000") }
            try await engine.write { try await $0.raw("INSERT INTO t (id, payload) VALUES (1, zeroblob(16))").run() }
            #expect(try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 1)
            try await engine.close()
        }
    }

    @Test("Text holding more than one statement is refused, and none of it runs")
    func oneStatementAtATime() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        _ = try connection.query("CREATE TABLE t (id TEXT PRIMARY KEY)", [], caching: .uncached)
        let failure = try #require(throws: SQLiteFailure.self) {
            try connection.query("INSERT INTO t (id) VALUES ('a'); INSERT INTO t (id) VALUES ('b')", [])
        }
        #expect(failure.message.contains("more than one statement"))
        #expect(try connection.query("SELECT count(*) AS n FROM t", []).first?.int("n") == 0)
        // A trailing semicolon and whitespace are one statement.
        _ = try connection.query("INSERT INTO t (id) VALUES ('a');  \n", [])
        #expect(try connection.query("SELECT count(*) AS n FROM t", []).first?.int("n") == 1)
    }

    @Test("DDL and PRAGMAs run without entering the statement cache; queries enter it")
    func schemaStatementsAreNotCached() async throws {
        try await withTemporaryDirectory { directory in
            let engine = try await SQLiteEngine.open(
                .sqliteFile(path: directory.appendingPathComponent("k.sqlite").path),
                logger: Logger(label: "test")
            )
            let before = engine.statementStatistics.cached
            try await engine.write { database in
                try await database.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
                try await database.execute("CREATE INDEX t_by_id ON t (id)")
                try await database.execute("PRAGMA user_version = 7")
            }
            // BEGIN IMMEDIATE and COMMIT run uncached too.
            #expect(engine.statementStatistics.cached == before)
            _ = try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first() }
            #expect(engine.statementStatistics.cached == before + 1)
            try await engine.close()
        }
    }

    @Test("A failure names SQLite's result code and the statement's SQL, never a bound value")
    func failureDescriptions() throws {
        let connection = try SQLiteConnection(path: ":memory:")
        defer { connection.close() }
        _ = try connection.query("CREATE TABLE t (id TEXT PRIMARY KEY)", [], caching: .uncached)
        let secret = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        _ = try connection.query("INSERT INTO t (id) VALUES (?1)", [.text(secret)])
        let failure = try #require(throws: SQLiteFailure.self) {
            try connection.query(
                """
                INSERT INTO t (id)
                VALUES (?1)
                """,
                [.text(secret)]
            )
        }
        #expect(failure.description.contains("SQLite error 1555"))  // SQLITE_CONSTRAINT_PRIMARYKEY
        #expect(failure.description.contains("SQL: INSERT INTO t (id) VALUES (?1)"))
        #expect(!failure.description.contains(secret))
    }

    @Test("A snapshot's statements see one moment; a write committed between them is not seen")
    func snapshotsAreConsistent() async throws {
        try await withTemporaryDirectory { directory in
            let engine = try await SQLiteEngine.open(
                .sqliteFile(path: directory.appendingPathComponent("k.sqlite").path),
                logger: Logger(label: "test")
            )
            try await engine.write { try await $0.execute("CREATE TABLE t (id TEXT PRIMARY KEY)") }
            let counts = try await engine.snapshot { database in
                let first = try await database.raw("SELECT count(*) AS n FROM t").first()?.int("n")
                try await engine.write { try await $0.raw("INSERT INTO t (id) VALUES ('a')").run() }
                let second = try await database.raw("SELECT count(*) AS n FROM t").first()?.int("n")
                return [first, second]
            }
            #expect(counts == [0, 0])
            // A read statement after the snapshot sees the write.
            #expect(try await engine.unsafeRead { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 1)
            try await engine.close()
        }
    }

    @Test("The vendored SQLite has what Keysmith relies on: thread safety, WAL, foreign keys, STRICT tables")
    func libraryCapabilities() {
        #expect(SQLiteLibrary.isThreadSafe)
        #expect(SQLiteLibrary.isCompiled(with: "THREADSAFE=1"))
        #expect(!SQLiteLibrary.isCompiled(with: "OMIT_WAL"))
        #expect(!SQLiteLibrary.isCompiled(with: "OMIT_FOREIGN_KEY"))
        #expect(SQLiteLibrary.versionNumber >= SQLiteLibrary.minimumVersion)
        #expect(SQLiteLibrary.missingCapabilities.isEmpty, "\(SQLiteLibrary.missingCapabilities)")
    }
}
