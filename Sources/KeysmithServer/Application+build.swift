public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import KeysmithCore
public import KeysmithDomain
public import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// The application `keysmith serve` runs and the tests drive.
public typealias KeysmithApplication = Application<RouterResponder<KeysmithRequestContext>>

/// A built application and what building it did.
public struct BuiltApplication: Sendable {
    public var application: KeysmithApplication
    public var keysmith: Keysmith
    /// Set when the database was empty: the default organization and, once, the first admin key.
    public var bootstrap: Keysmith.Bootstrap?
    /// Batches `last_used_at` writes; tests flush it instead of waiting for its interval.
    public var usage: UsageRecorder
    public var metrics: ServerMetrics
    /// The migrations this start applied.
    public var migrationsApplied: [String]
    /// Every route the router serves, as `METHOD /path/:parameter` (for tests and diagnosis).
    public var routes: [String]
}

/// Builds Keysmith: opens and migrates the database, bootstraps an empty one, loads the verification state, and
/// wires the routes. The one function that assembles the application; `keysmith serve` and the tests both call it.
public func buildApplication(_ configuration: KeysmithConfiguration, logger: Logger) async throws -> BuiltApplication {
    // Files first: a missing certificate, or a Unix socket path that cannot be served, is refused before the
    // database is touched (an open database would have to be closed again).
    let tlsConfiguration = try configuration.tls.map(makeTLSConfiguration)
    if let socket = configuration.unixSocket {
        try await UnixSocketPath.prepare(socket.path)
    }
    let metrics = ServerMetrics()
    let database = try await KeysmithDatabase.open(
        configuration.database,
        secret: configuration.secret,
        clock: configuration.clock,
        logger: logger,
        observer: metrics.statementObserver,
        poolSize: configuration.databasePoolSize
    )
    let index = VerificationIndex()
    let feed = ChangeFeed(
        store: database.verificationSource,
        index: index,
        configuration: .init(pollInterval: configuration.changePollInterval),
        logger: logger,
        metrics: metrics
    )
    let keysmith = Keysmith(
        database: database,
        applier: feed,
        clock: configuration.clock,
        inviteLifetimeSeconds: Int(configuration.inviteLifetime.components.seconds)
    )
    let bootstrap: Keysmith.Bootstrap?
    do {
        let started = ContinuousClock.now
        try await feed.load()
        bootstrap = try await keysmith.acting(as: .command("keysmith serve (first start)"))
            .bootstrapIfEmpty(adminKeyName: configuration.bootstrapAdminKeyName)
        let counts = index.counts
        logger.info(
            "Loaded the verification state",
            metadata: [
                "keys": "\(counts.current)",
                "admin_keys": "\(counts.admin)",
                "duration_ms": "\(RequestObservation.milliseconds(ContinuousClock.now - started))",
            ]
        )
    } catch {
        try? await database.close()
        throw error
    }

    let verifier = KeyVerifier(index: index, hasher: database.hasher, clock: configuration.clock, metrics: metrics)
    let usage = UsageRecorder(keysmith: keysmith, interval: configuration.usageFlushInterval, logger: logger, metrics: metrics)
    let authenticator = AdminAuthenticator(index: index, verifier: verifier, usage: usage, clock: configuration.clock)

    let router = Router(context: KeysmithRequestContext.self)
    router.add(middleware: RequestObservation(metrics: metrics))
    router.add(middleware: OpenAIErrorMiddleware())
    router.route("/healthz", [.get: { _, _ in Response.text("ok") }])
    router.route("/readyz", [.get: readiness(keysmith)])
    // The API description, compiled in; public, like any API's description.
    let description = ByteBuffer(bytes: PackageResources.openapi_yaml)
    router.route(
        "/v1/openapi.yaml",
        [.get: { _, _ in Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: description)) }]
    )
    let admin = AdminRouter(router: router, authenticator: authenticator)
    admin.route("/metrics", [.get: .read(metricsEndpoint(metrics, index: index))])
    AdminRoutes(keysmith: keysmith, rateLimits: configuration.rateLimits).register(on: admin)
    let limiter = RateLimiter(
        configuration: configuration.rateLimits,
        ledger: database.rateLimitLedger,
        clock: configuration.clock,
        logger: logger
    )
    let forwardAuth = ForwardAuth(
        verifier: verifier,
        usage: usage,
        health: feed.health,
        limiter: limiter,
        trustedSource: configuration.trustedRequestHeaders
    )
    VerificationRoutes(forwardAuth: forwardAuth, keysmith: keysmith).register(checksOn: router, adminRoutesOn: admin)
    // One registry for every listener of the application: the connection limit is the process's file descriptors.
    let registry = ConnectionRegistry(limits: configuration.connectionLimits, logger: logger, metrics: metrics)
    let gateway = configuration.gateway.map {
        Gateway(
            configuration: $0,
            forwardAuth: forwardAuth,
            usage: usage,
            clock: configuration.clock,
            connections: registry,
            metrics: metrics,
            logger: logger
        )
    }
    gateway?.register(on: router)
    if configuration.dashboard {
        try Dashboard(
            keysmith: keysmith,
            index: index,
            authenticator: authenticator,
            usage: usage,
            sessionIdleTimeout: Int(configuration.dashboardSessionIdleTimeout.components.seconds),
            servesTLS: tlsConfiguration != nil
        ).register(on: router)
    }

    // Started in this order, stopped in reverse: the HTTP server (added last by Application) drains first, then the
    // metrics listener, the change log's pruning, the rate limiter (giving back its leases), the change feed, the
    // usage recorder's last flush, and finally the database.
    var services: [any Service] = [
        DatabaseService(database: database), usage, feed,
        RateLimiterService(limiter: limiter, ledger: database.rateLimitLedger, clock: configuration.clock),
        ChangeLogPruning(keysmith: keysmith, logger: logger),
    ]
    if let gateway {
        services.append(gateway.service)
    }
    if let address = configuration.metricsAddress {
        services.append(try metricsApplication(metrics, index: index, address: address, logger: logger))
    }
    let scheme = tlsConfiguration == nil ? "http" : "https"
    let responder = router.buildResponder()
    if let socket = configuration.unixSocket {
        // Plain HTTP: a Unix socket does not leave the host, and its mode decides who may connect.
        services.append(
            try UnixSocketListener(
                socket: socket,
                responder: responder,
                server: try guardedServer(
                    registry: registry,
                    tls: nil,
                    forwardAuth: configuration.checksOnEventLoop ? forwardAuth : nil,
                    metrics: metrics,
                    logger: logger
                ),
                logger: logger
            )
        )
    }
    let application = Application(
        responder: responder,
        server: try guardedServer(
            registry: registry,
            tls: tlsConfiguration,
            forwardAuth: configuration.checksOnEventLoop ? forwardAuth : nil,
            metrics: metrics,
            logger: logger
        ),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
        services: services,
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            logger.info(
                "Keysmith \(KeysmithVersion.current) is listening on \(configuration.host):\(port) (\(scheme))",
                metadata: [
                    "version": "\(KeysmithVersion.current)",
                    "address": "\(scheme)://\(configuration.host):\(port)",
                    "database": "\(configuration.database)",
                    "migrations_applied": "\(database.migrationsApplied.isEmpty ? "none" : database.migrationsApplied.joined(separator: ","))",
                    "metrics_address": "\(configuration.metricsAddress.map { "\($0)" } ?? "none")",
                    "unix_socket": "\(configuration.unixSocket?.path ?? "none")",
                    "upstream": "\(configuration.gateway.map { $0.upstreams.map(\.description).joined(separator: ", ") } ?? "none")",
                    "maximum_connections": "\(configuration.connectionLimits.maximumConnections)",
                ]
            )
        },
        logger: logger
    )
    return BuiltApplication(
        application: application,
        keysmith: keysmith,
        bootstrap: bootstrap,
        usage: usage,
        metrics: metrics,
        migrationsApplied: database.migrationsApplied,
        routes: router.routes.map(\.description)
    )
}

/// HTTP/1.1, in TLS when configured, behind the connection guard (deadlines and the connection limit), with checks
/// answered on the event loop when `forwardAuth` is given.
private func guardedServer(
    registry: ConnectionRegistry,
    tls: TLSConfiguration?,
    forwardAuth: ForwardAuth?,
    metrics: ServerMetrics?,
    logger: Logger
) throws -> HTTPServerBuilder {
    HTTPServerBuilder { responder in
        let http = HTTP1Channel(
            responder: responder,
            configuration: .init(
                additionalChannelHandlers: forwardAuth.map {
                    [ConnectionActivity(registry: registry), ForwardAuthChannelHandler(forwardAuth: $0, metrics: metrics, logger: logger)]
                } ?? [ConnectionActivity(registry: registry)]
            )
        )
        if let tls {
            return GuardedChannel(base: try TLSChannel(http, tlsConfiguration: tls), registry: registry)
        }
        return GuardedChannel(base: http, registry: registry)
    }
}

private func makeTLSConfiguration(_ files: KeysmithConfiguration.TLSFiles) throws -> TLSConfiguration {
    do {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain).map { NIOSSLCertificateSource.certificate($0) }
        guard !chain.isEmpty else { throw TLSFilesError(reason: "\(files.certificateChain) holds no PEM certificate") }
        let key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    } catch let error as TLSFilesError {
        throw error
    } catch {
        throw TLSFilesError(reason: "cannot load the certificate \(files.certificateChain) and key \(files.privateKey): \(error)")
    }
}

public struct TLSFilesError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { self.reason }
}

/// `GET /readyz`: 200 when the database answers and every migration is applied; 503 in OpenAI's envelope otherwise.
/// Load balancers take a replica out of rotation on it; `/healthz` stays liveness only.
private func readiness(_ keysmith: Keysmith) -> Handler {
    { _, context in
        do {
            try await keysmith.logging(to: context.logger).reader.checkReadiness()
            return Response.json(#"{"status":"ready","database":"up"}"#)
        } catch {
            context.logger.warning("Not ready", metadata: ["error": "\(error)"])
            return OpenAIError(
                status: .serviceUnavailable,
                message: "Not ready: the database is unavailable or not migrated.",
                type: "server_error",
                code: "database_unavailable"
            ).response()
        }
    }
}

private func metricsEndpoint(_ metrics: ServerMetrics, index: VerificationIndex) -> AdminHandler {
    { _, _ in metricsResponse(metrics, index: index) }
}

private func metricsResponse(_ metrics: ServerMetrics, index: VerificationIndex) -> Response {
    metrics.indexChanged(index)
    return Response(
        status: .ok,
        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition()))
    )
}

/// `GET /metrics` without authentication on its own listener (`--metrics-address`), for a private network, behind a
/// connection guard of its own: the main listener's deadlines and ``ConnectionLimits/metricsListener``'s few
/// connections, so that sockets held open on it cannot take the process's file descriptors from the main listener.
private func metricsApplication(
    _ metrics: ServerMetrics,
    index: VerificationIndex,
    address: KeysmithConfiguration.ListenAddress,
    logger: Logger
) throws -> some Service {
    let router = Router(context: KeysmithRequestContext.self)
    router.add(middleware: OpenAIErrorMiddleware())
    router.route("/metrics", [.get: { _, _ in metricsResponse(metrics, index: index) }])
    let registry = ConnectionRegistry(limits: .metricsListener, listener: "metrics", logger: logger, metrics: nil)
    return Application(
        router: router,
        server: try guardedServer(registry: registry, tls: nil, forwardAuth: nil, metrics: nil, logger: logger),
        configuration: .init(address: .hostname(address.host, port: address.port), serverName: nil),
        onServerRunning: { channel in
            logger.info("Serving /metrics without authentication on \(address.host):\(channel.localAddress?.port ?? address.port)")
        },
        logger: logger
    )
}

extension Response {
    static func text(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: .init(string: text)))
    }

    static func json(_ json: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: json)))
    }
}

/// Runs the database's background work (PostgreSQL's connection pool) while the server runs, and closes the
/// database after the server (and every service added after this one) has shut down.
struct DatabaseService: Service {
    let database: KeysmithDatabase

    func run() async throws {
        await self.database.run()
        try? await gracefulShutdown()
        try await self.database.close()
    }
}
