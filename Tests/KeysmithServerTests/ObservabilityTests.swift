import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Logging
import Testing

@testable import KeysmithDomain
@testable import KeysmithServer

@Suite("What an operator sees")
struct ObservabilityTests {
    @Test(
        "/metrics needs an admin key on the main port, and reports requests, verifications, the index and the database",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func metrics(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            _ = try await app.check(account.value)
            _ = try await app.check(KeySecret.generate(.serviceAccount))

            try await app.request(.get, "/metrics", key: "").expectError(.unauthorized)
            try await app.request(.get, "/metrics", key: account.value).expectError(.forbidden)
            let reply = try await app.request(.get, "/metrics")
            #expect(reply.status == .ok)
            #expect(reply.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = reply.text
            for expected in [
                #"keysmith_http_requests_total{route="/v1/organization/projects",method="POST",status="200"} 1"#,
                #"keysmith_http_requests_total{route="/v1/auth/check",method="GET",status="401"} 1"#,
                #"keysmith_http_requests_total{route="/v1/auth/check",method="GET",status="200"} 1"#,
                #"keysmith_http_request_duration_seconds_bucket{route="/v1/auth/check",method="GET",le="0.0001"}"#,
                #"keysmith_verifications_total{code="valid"} 1"#,
                #"keysmith_verifications_total{code="not_found"} 1"#,
                #"keysmith_verification_index_secrets{kind="current"} 1"#,
                #"keysmith_verification_index_secrets{kind="admin"} 1"#,
                #"keysmith_change_log_entries_applied_total"#,
                #"keysmith_database_statement_duration_seconds_count"#,
                #"keysmith_build_info{version="\#(KeysmithVersion.current)"} 1"#,
            ] {
                #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
            }
            // Routes are labelled by pattern, never by id: one series per route, whatever the ids.
            #expect(!text.contains(projectID))
        }
    }

    @Test("/readyz says the database answers and is migrated; /healthz stays a plain liveness check", arguments: TestEngine.available)
    func readiness(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let ready = try await app.request(.get, "/readyz", key: "")
            #expect(ready.status == .ok)
            #expect(ready["status"] as? String == "ready")
            let health = try await app.request(.get, "/healthz", key: "")
            #expect(health.status == .ok && health.text == "ok")
        }
    }

    @Test(
        "Each request has an id: the client's X-Request-Id when usable, else a new one; it is returned and logged",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func requestIDs(engine: TestEngine, transport: Transport) async throws {
        let capture = LogCapture()
        try await Harness.run(engine, transport: transport, logger: capture.logger(level: .info)) { app in
            let given = try await app.request(.get, "/v1/organization/projects", headers: [.init("X-Request-Id")!: "trace-abc-123"])
            #expect(given.headers[.init("X-Request-Id")!] == "trace-abc-123")

            let first = try await app.request(.get, "/healthz", key: "")
            let second = try await app.request(.get, "/healthz", key: "")
            let generated = [first, second].compactMap { $0.headers[.init("X-Request-Id")!] }
            #expect(generated.count == 2 && generated[0] != generated[1] && generated.allSatisfy { !$0.isEmpty })

            // Not usable (too long, or with spaces): replaced by the server's own.
            let tooLong = String(repeating: "x", count: 200)
            let replaced = try await app.request(.get, "/healthz", key: "", headers: [.init("X-Request-Id")!: tooLong])
            #expect(replaced.headers[.init("X-Request-Id")!] != tooLong)

            let key = try await app.serviceAccount(projectID: try await app.project()).value
            let check = try await app.check(key, headers: [.init("X-Request-Id")!: "check-42"])
            #expect(check.headers[.init("X-Request-Id")!] == "check-42")
            let unnamed = try await app.check(key, path: "/v1/auth/check/v1/models?x=1")
            let unnamedID = try #require(unnamed.headers[.init("X-Request-Id")!])
            #expect(!unnamedID.isEmpty && !generated.contains(unnamedID))
            _ = try await app.request(.get, "/v1/organization/projects/proj_missing")

            let access = capture.captured.filter { $0.message == "request" }
            let traced = try #require(access.first { $0.metadata["hb.request.id"] == "trace-abc-123" })
            #expect(traced.level == .info)
            #expect(traced.metadata["method"] == "GET")
            #expect(traced.metadata["route"] == "/v1/organization/projects")
            #expect(traced.metadata["status"] == "200")
            #expect(traced.metadata["duration_ms"].flatMap(Double.init) != nil)
            let notFound = try #require(access.first { $0.metadata["path"] == "/v1/organization/projects/proj_missing" })
            #expect(notFound.metadata["status"] == "404")
            #expect(notFound.metadata["route"] == "/v1/organization/projects/{project_id}")
            // Checks are logged alike, whichever layer answers them.
            let checked = try #require(access.first { $0.metadata["hb.request.id"] == "check-42" })
            #expect(checked.metadata["route"] == "/v1/auth/check" && checked.metadata["status"] == "200")
            #expect(checked.metadata["method"] == "GET" && checked.metadata["path"] == "/v1/auth/check")
            let envoy = try #require(access.first { $0.metadata["hb.request.id"] == unnamedID })
            #expect(envoy.metadata["route"] == "/v1/auth/check/**" && envoy.metadata["path"] == "/v1/auth/check/v1/models")
            #expect(envoy.metadata["duration_ms"].flatMap(Double.init) != nil)
            // One line per request, and no line carries a key or a header.
            #expect(access.count == 9)
            for line in capture.captured {
                let text = line.message + line.metadata.values.joined()
                #expect(!text.contains(key) && !text.contains(app.adminKey) && !text.contains("Bearer"))
            }
        }
    }

    @Test(
        "What the database driver logs about a request's statements carries the request's id",
        // SQLite's engine logs nothing per statement; postgres-nio logs each query's rows at trace level.
        arguments: TestEngine.available.filter { $0 == .postgres }
    )
    func databaseLinesCarryTheRequestID(engine: TestEngine) async throws {
        let capture = LogCapture()
        try await Harness.run(engine, logger: capture.logger(level: .trace)) { app in
            let projectID = try await app.project()
            let read = try await app.request(
                .get,
                "/v1/organization/projects/\(projectID)/api_keys",
                headers: [.init("X-Request-Id")!: "db-read-7"]
            )
            #expect(read.status == .ok)
            let write = try await app.request(
                .post,
                "/v1/organization/projects/\(projectID)",
                body: #"{"name":"renamed"}"#,
                headers: [.init("X-Request-Id")!: "db-write-8"]
            )
            #expect(write.status == .ok)
            // Every line but the access log's is the database layer's here (postgres-nio's trace of each statement's
            // rows, say); with the background logger none of them would carry a request id.
            let database = capture.captured.filter { $0.message != "request" }
            #expect(database.contains { $0.metadata["hb.request.id"] == "db-read-7" })
            #expect(database.contains { $0.metadata["hb.request.id"] == "db-write-8" })
        }
    }

    @Test(
        "When the database fails: /readyz says not ready, admin calls fail in the envelope with a log line, checks go on",
        arguments: TestEngine.available
    )
    func databaseFailure(engine: TestEngine) async throws {
        let capture = LogCapture()
        try await Harness.run(engine, logger: capture.logger(level: .info)) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let store = try #require(app.keysmith.store as? SQLStore)
            try await store.close()

            let ready = try await app.request(.get, "/readyz", key: "")
            ready.expectError(.serviceUnavailable, code: "database_unavailable")
            let failed = try await app.get("/projects")
            // Verification answers from memory.
            #expect(try await app.check(account.value).status == .ok)
            let error: String
            switch engine {
            case .sqlite:
                // A closed SQLite engine is a bug in the server, so a 500 whose log line says what SQLite said.
                failed.expectError(.internalServerError)
                let logged = try #require(capture.captured.first { $0.level >= .warning && $0.metadata["error"]?.contains("SQLite error") == true })
                error = try #require(logged.metadata["error"])
                #expect(error.contains("SQLite error 21"))  // SQLITE_MISUSE: the connection is closed
                #expect(error.contains("SQL: SELECT"))
            case .postgres:
                // An unavailable PostgreSQL is not a bug: 503, which clients retry.
                failed.expectError(.serviceUnavailable, code: "database_unavailable")
                let logged = try #require(capture.captured.first { $0.message == "Database unavailable" })
                error = try #require(logged.metadata["error"])
            }
            #expect(failed.error["type"] as? String == "server_error")
            #expect(!error.contains(app.adminKey))
        }
    }
}
