public import Hummingbird
import KeysmithCore
import KeysmithStore
public import Logging
import ServiceLifecycle

/// The application `keysmith serve` runs and the tests drive.
public typealias KeysmithApplication = Application<RouterResponder<BasicRequestContext>>

/// A built application and what building it did.
public struct BuiltApplication: Sendable {
    public var application: KeysmithApplication
    public var keysmith: Keysmith
    /// Set when the database was empty: the default organization and, once, the first admin key.
    public var bootstrap: Keysmith.Bootstrap?
    /// Batches `last_used_at` writes; tests flush it instead of waiting for its interval.
    public var usage: UsageRecorder
}

/// Builds Keysmith: opens and migrates the database, bootstraps an empty one, and wires the routes. The one
/// function that assembles the application; `keysmith serve` and the tests both call it.
public func buildApplication(_ configuration: KeysmithConfiguration, logger: Logger) async throws -> BuiltApplication {
    let (keysmith, store) = try await Keysmith.open(
        configuration.database,
        secret: configuration.secret,
        clock: configuration.clock,
        logger: logger
    )
    let bootstrap: Keysmith.Bootstrap?
    do {
        bootstrap = try await keysmith.bootstrapIfEmpty(adminKeyName: configuration.bootstrapAdminKeyName)
    } catch {
        try? await store.close()
        throw error
    }

    let verifier = KeyVerifier(store: store, hasher: keysmith.hasher, clock: configuration.clock)
    let usage = UsageRecorder(
        store: store,
        clock: configuration.clock,
        interval: configuration.usageFlushInterval,
        logger: logger
    )
    let authenticator = AdminAuthenticator(store: store, hasher: keysmith.hasher, clock: configuration.clock, usage: usage) {
        try await verifier.isKnownKey($0)
    }
    let reporting = keysmith.reporting(to: verifier)

    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: OpenAIErrorMiddleware())
    router.route(
        "/healthz",
        [
            .get: { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: .init(string: "ok")))
            }
        ]
    )
    AdminRoutes(keysmith: reporting, authenticator: authenticator).register(on: router)
    VerificationRoutes(verifier: verifier, usage: usage, authenticator: authenticator).register(on: router)

    let application = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
        // Shut down in reverse: the HTTP server, then the usage recorder's last flush, then the database.
        services: [DatabaseService(store: store), usage],
        logger: logger
    )
    return BuiltApplication(application: application, keysmith: reporting, bootstrap: bootstrap, usage: usage)
}

/// Keeps the database open while the server runs and closes it after the server (and every service added after
/// this one) has shut down.
struct DatabaseService: Service {
    let store: SQLStore

    func run() async throws {
        try? await gracefulShutdown()
        try await self.store.close()
    }
}
