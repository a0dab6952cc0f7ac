import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Logging
import NIOCore
import Synchronization
import Testing

@testable import KeysmithDomain

/// A response's status, headers and parsed JSON body.
struct Reply: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var text: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(self.text.utf8))) as? [String: Any] ?? [:]
    }

    var data: [[String: Any]] { self.json["data"] as? [[String: Any]] ?? [] }

    subscript(_ key: String) -> Any? { self.json[key] }

    var error: [String: Any] { self.json["error"] as? [String: Any] ?? [:] }

    /// Checks OpenAI's error envelope: all four keys present, and the status, param and code given.
    func expectError(
        _ status: HTTPResponse.Status,
        param: String? = nil,
        code: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(self.status == status, "body: \(self.text)", sourceLocation: sourceLocation)
        let error = self.error
        #expect(Set(error.keys) == ["message", "type", "param", "code"], "body: \(self.text)", sourceLocation: sourceLocation)
        #expect(error["message"] is String, sourceLocation: sourceLocation)
        #expect(error["type"] is String, sourceLocation: sourceLocation)
        #expect((error["param"] as? String) == param, "body: \(self.text)", sourceLocation: sourceLocation)
        if let code {
            #expect((error["code"] as? String) == code, "body: \(self.text)", sourceLocation: sourceLocation)
        }
        #expect(self.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
    }
}

/// How a test reaches the application.
enum Transport: Sendable, CustomTestStringConvertible {
    /// Hummingbird's router called directly: no sockets, no channel pipeline.
    case router
    /// A server on loopback as `keysmith serve` runs it: `/v1/auth/check` answered on the event loop by
    /// ``ForwardAuthChannelHandler``.
    case checksOnEventLoop
    /// A server on loopback with every check going through the router (`KEYSMITH_CHECKS_ON_EVENT_LOOP=false`).
    case checksThroughRouter

    /// The two ways a check can be answered over a socket, which must answer alike.
    static let checkPaths: [Transport] = [.checksOnEventLoop, .checksThroughRouter]

    var testDescription: String {
        switch self {
        case .router: "router"
        case .checksOnEventLoop: "checks on the event loop"
        case .checksThroughRouter: "checks through the router"
        }
    }
}

/// The application on a database of its own (a SQLite file, or a new PostgreSQL database) with a manual clock, and
/// helpers that speak its API.
struct Harness: Sendable {
    let client: any TestClientProtocol
    let adminKey: String
    let clock: ManualClock
    let keysmith: Keysmith
    let usage: UsageRecorder
    let metrics: ServerMetrics
    /// The database this application runs on.
    let databaseURL: DatabaseURL
    /// Every route the router serves, as `METHOD /path/:parameter`.
    let routes: [String]

    /// Warnings and errors only: the access log of every request the tests make would bury a failure's output.
    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }

    /// Builds the application exactly as `keysmith serve` does, on a database of its own on `engine` (a SQLite file
    /// in WAL mode with reader connections, as in production, or a new PostgreSQL database).
    static func run(
        _ engine: TestEngine,
        transport: Transport = .router,
        usageFlushInterval: Duration = .seconds(3600),
        logger: Logger = Harness.quietLogger,
        configure: @Sendable (inout KeysmithConfiguration) -> Void = { _ in },
        _ body: @escaping @Sendable (Harness) async throws -> Void
    ) async throws {
        try await withTestDatabase(engine) { url in
            let clock = ManualClock()
            var configuration = KeysmithConfiguration(
                database: url,
                clock: clock.clock,
                bootstrapAdminKeyName: "test admin key",
                usageFlushInterval: usageFlushInterval,
                checksOnEventLoop: transport != .checksThroughRouter
            )
            configure(&configuration)
            let built = try await buildApplication(configuration, logger: logger)
            let adminKey = try #require(built.bootstrap?.adminKey)
            let keysmith = built.keysmith
            let usage = built.usage
            let metrics = built.metrics
            let routes = built.routes
            try await built.application.test(transport == .router ? .router : .live) { client in
                try await body(
                    Harness(
                        client: client,
                        adminKey: adminKey,
                        clock: clock,
                        keysmith: keysmith,
                        usage: usage,
                        metrics: metrics,
                        databaseURL: url,
                        routes: routes
                    )
                )
            }
        }
    }

    /// `/v1/auth/check` with `key` as a bearer token (nil: no key) and any extra headers.
    func check(_ key: String?, method: HTTPRequest.Method = .get, path: String = "/v1/auth/check", headers: HTTPFields = [:]) async throws -> Reply {
        var headers = headers
        if let key { headers[.authorization] = "Bearer \(key)" }
        return try await self.request(method, path, key: "", headers: headers)
    }

    func request(
        _ method: HTTPRequest.Method,
        _ path: String,
        key: String? = nil,
        body: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> Reply {
        var headers = headers
        // nil means the harness's admin key; "" sends no Authorization header.
        let token = key ?? self.adminKey
        if !token.isEmpty {
            headers[.authorization] = "Bearer \(token)"
        }
        if body != nil, headers[.contentType] == nil { headers[.contentType] = "application/json" }
        let response = try await self.client.execute(
            uri: path,
            method: method,
            headers: headers,
            body: body.map { ByteBuffer(string: $0) }
        )
        return Reply(status: response.status, headers: response.headers, text: String(buffer: response.body))
    }

    func get(_ path: String, key: String? = nil) async throws -> Reply {
        try await self.request(.get, "/v1/organization" + path, key: key)
    }

    func post(_ path: String, _ body: String? = "{}", key: String? = nil) async throws -> Reply {
        try await self.request(.post, "/v1/organization" + path, key: key, body: body)
    }

    func delete(_ path: String, key: String? = nil) async throws -> Reply {
        // The Python SDK sends a JSON content type on DELETE with no body.
        try await self.request(.delete, "/v1/organization" + path, key: key, headers: [.contentType: "application/json"])
    }

    /// Creates a project and returns its id.
    func project(_ name: String = "Project") async throws -> String {
        let reply = try await self.post("/projects", #"{"name":"\#(name)"}"#)
        #expect(reply.status == .ok, "\(reply.text)")
        return try #require(reply["id"] as? String)
    }

    /// Creates an organization user and adds them to the project; returns the user id.
    func member(of projectID: String, email: String, role: String = "member") async throws -> String {
        let user = try await self.post("/users", #"{"email":"\#(email)","name":"Member"}"#)
        #expect(user.status == .ok, "\(user.text)")
        let userID = try #require(user["id"] as? String)
        let added = try await self.post("/projects/\(projectID)/users", #"{"user_id":"\#(userID)","role":"\#(role)"}"#)
        #expect(added.status == .ok, "\(added.text)")
        return userID
    }

    /// Creates a user-owned key; returns (id, plaintext).
    func userKey(projectID: String, userID: String, name: String = "key", extra: String = "") async throws -> (id: String, value: String) {
        let reply = try await self.post("/projects/\(projectID)/api_keys", #"{"name":"\#(name)","user_id":"\#(userID)"\#(extra)}"#)
        #expect(reply.status == .ok, "\(reply.text)")
        return (try #require(reply["id"] as? String), try #require(reply["value"] as? String))
    }

    /// Creates a service account with its first key; returns (account id, key id, plaintext).
    func serviceAccount(projectID: String, name: String = "bot") async throws -> (id: String, keyID: String, value: String) {
        let reply = try await self.post("/projects/\(projectID)/service_accounts", #"{"name":"\#(name)"}"#)
        #expect(reply.status == .ok, "\(reply.text)")
        let key = try #require(reply["api_key"] as? [String: Any])
        return (
            try #require(reply["id"] as? String),
            try #require(key["id"] as? String),
            try #require(key["value"] as? String)
        )
    }
}

/// Keeps every log line, for tests of what the server logs.
final class LogCapture: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lines = Mutex<[Line]>([])

    var captured: [Line] { self.lines.withLock { $0 } }

    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: Line) {
        self.lines.withLock { $0.append(line) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = self.metadata
            all.merge(event.metadata ?? [:]) { $1 }
            self.capture.append(
                Line(level: event.level, message: event.message.description, metadata: all.mapValues { "\($0)" })
            )
        }
    }
}
