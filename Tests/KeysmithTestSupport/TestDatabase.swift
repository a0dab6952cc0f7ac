public import Foundation
public import KeysmithCore
import Logging
public import PostgresNIO

/// The database engines the suites run on: SQLite always, PostgreSQL when `KEYSMITH_TEST_POSTGRES_URL` names a
/// server (scripts/test starts a throwaway cluster and sets it). Suites take one as a test argument, so each test
/// runs on each engine.
public enum TestEngine: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite
    case postgres

    public static var available: [TestEngine] {
        ProcessInfo.processInfo.environment["KEYSMITH_TEST_POSTGRES_URL"].map { $0.isEmpty ? [.sqlite] : [.sqlite, .postgres] } ?? [.sqlite]
    }

    public var description: String { self.rawValue }
}

/// Runs `body` with a database of its own on `engine`: a SQLite file in a new directory, or a new PostgreSQL
/// database on the test server; removed afterwards, whatever happens.
public func withTestDatabase(_ engine: TestEngine, _ body: (DatabaseURL) async throws -> Void) async throws {
    switch engine {
    case .sqlite:
        try await withTemporaryDirectory { directory in
            try await body(.sqliteFile(path: directory.appendingPathComponent("keysmith.sqlite").path))
        }
    case .postgres:
        let server = try TestPostgres.server()
        let name = "keysmith_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await TestPostgres.maintenance(server, "CREATE DATABASE \(name)")
        var settings = server
        settings.database = name
        do {
            try await body(.postgres(settings))
        } catch {
            try? await TestPostgres.maintenance(server, "DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
        try await TestPostgres.maintenance(server, "DROP DATABASE \(name) WITH (FORCE)")
    }
}

/// Runs `body` with a new empty directory, removed afterwards whatever happens.
public func withTemporaryDirectory(_ body: (URL) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keysmith-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try await body(directory)
}

/// Runs `body` with a connection of its own to the PostgreSQL database `url` names: a session beside the server's,
/// for tests that hold locks or change privileges under a running server.
public func withTestConnection(_ url: DatabaseURL, _ body: (PostgresConnection) async throws -> Void) async throws {
    guard case .postgres(let settings) = url else { throw TestDatabaseError(reason: "\(url) is not a PostgreSQL database") }
    let connection = try await TestPostgres.connect(settings)
    do {
        try await body(connection)
    } catch {
        try? await connection.close()
        throw error
    }
    try await connection.close()
}

enum TestPostgres {
    /// The test server, from `KEYSMITH_TEST_POSTGRES_URL` (its database is the maintenance one: `postgres`).
    static func server() throws -> PostgresSettings {
        guard let text = ProcessInfo.processInfo.environment["KEYSMITH_TEST_POSTGRES_URL"],
            case .postgres(let settings) = try DatabaseURL(parsing: text)
        else { throw TestDatabaseError(reason: "KEYSMITH_TEST_POSTGRES_URL names no PostgreSQL server") }
        return settings
    }

    static func connect(_ settings: PostgresSettings) async throws -> PostgresConnection {
        try await PostgresConnection.connect(
            configuration: .init(
                host: settings.host,
                port: settings.port,
                username: settings.username,
                password: settings.password,
                database: settings.database,
                tls: .disable
            ),
            id: 1,
            logger: Logger(label: "test")
        )
    }

    /// Runs one statement on the server's maintenance database (outside a transaction, as CREATE DATABASE needs).
    static func maintenance(_ settings: PostgresSettings, _ sql: String) async throws {
        let connection = try await Self.connect(settings)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test"))
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

struct TestDatabaseError: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
}
