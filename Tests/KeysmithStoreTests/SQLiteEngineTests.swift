import Foundation
import KeysmithCore
import Logging
import SQLKit
import Testing

@testable import KeysmithStore

@Suite("SQLite connections and engine")
struct SQLiteEngineTests {
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
                        try await engine.read { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") ?? -1 }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(counts == Array(repeating: 0, count: 8))
            releaseContinuation.yield()
            try await write.value
            #expect(try await engine.read { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 1)

            try await engine.close()
            await #expect(throws: SQLiteFailure.self) {
                try await engine.read { try await $0.raw("SELECT 1").run() }
            }
            await #expect(throws: SQLiteFailure.self) {
                try await engine.write { try await $0.raw("SELECT 1").run() }
            }
        }
    }

    @Test("The store's hot queries are prepared once: new projects, cursors and keys reuse them, never re-prepared")
    func hotQueriesStayPrepared() async throws {
        try await StoreFixture.run { fixture in
            let engine = try #require(fixture.store.engine as? SQLiteEngine)
            let (project, member) = try await fixture.projectWithMember()
            var keys: [APIKey] = []
            for n in 0..<5 {
                keys.append(try await fixture.store.createAPIKey(fixture.newKey(projectID: project.id, owner: .user(id: member.id), name: "k\(n)")))
            }
            func listAndLookUp(_ project: Project, after: String?) async throws {
                _ = try await fixture.store.listAPIKeys(
                    projectID: project.id,
                    organizationID: fixture.organizationID,
                    access: .active,
                    page: PageRequest(limit: 2, after: after)
                )
                _ = try await fixture.store.lookUp(secretHash: keys.randomElement()!.id)
            }
            try await listAndLookUp(project, after: nil)
            try await listAndLookUp(project, after: keys[0].id)
            let warm = engine.statementStatistics

            let (other, _) = try await fixture.projectWithMember()
            for key in keys.dropLast() {
                try await listAndLookUp(project, after: key.id)
                try await listAndLookUp(other, after: nil)
            }
            try await listAndLookUp(project, after: nil)
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
        #expect(try await engine.read { try await $0.raw("SELECT count(*) AS n FROM t").first()?.int("n") } == 0)
        try await engine.close()
    }
}
