import Hummingbird
import HummingbirdTesting
import KeysmithClient
import KeysmithCore
import KeysmithDomain
import KeysmithServer
import KeysmithTestSupport
import Logging
import Testing

/// Keysmith built exactly as `keysmith serve` builds it, listening on a free loopback port, with a client that
/// holds its bootstrap admin key.
struct LiveServer: Sendable {
    let client: AdminClient
    let adminKey: String
    let port: Int

    static func run(_ engine: TestEngine, _ body: @escaping @Sendable (LiveServer) async throws -> Void) async throws {
        try await withTestDatabase(engine) { url in
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            let built = try await buildApplication(
                KeysmithConfiguration(host: "127.0.0.1", port: 0, database: url, bootstrapAdminKeyName: "test admin key"),
                logger: logger
            )
            let adminKey = try #require(built.bootstrap?.adminKey)
            try await built.application.test(.live) { testClient in
                let port = try #require(testClient.port)
                let client = try AdminClient(baseURL: "http://127.0.0.1:\(port)", adminKey: adminKey)
                try await body(LiveServer(client: client, adminKey: adminKey, port: port))
            }
        }
    }
}

/// Runs `body` and returns the ``APIError`` it threw; records an issue when it threw something else or nothing.
func apiError<T>(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async -> APIError? {
    do {
        _ = try await body()
        Issue.record("expected an API error", sourceLocation: sourceLocation)
        return nil
    } catch {
        guard case .api(let apiError)? = error as? KeysmithClientError else {
            Issue.record("expected an API error, got \(error)", sourceLocation: sourceLocation)
            return nil
        }
        return apiError
    }
}
