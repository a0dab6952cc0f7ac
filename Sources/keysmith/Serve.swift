import ArgumentParser
import Foundation
import Hummingbird
import KeysmithCore
import KeysmithDomain
import KeysmithServer
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Keysmith server.",
        discussion: """
            Applies pending database migrations, then serves the API. On an empty database it creates the \
            default organization and prints its first admin key on standard output, once. SIGTERM or SIGINT \
            shut it down gracefully.

            Logs go to standard error: level KEYSMITH_LOG_LEVEL (trace, debug, info, notice, warning, error, \
            critical; default info), one access log line per request at info. KEYSMITH_SECRET (at least 32 \
            characters) overrides the hashing secret kept in the database.
            """
    )

    @Option(help: ArgumentHelp("Address to listen on. Environment: KEYSMITH_HOST.", valueName: "host"))
    var host: String?

    @Option(help: ArgumentHelp("Port to listen on (0 picks a free one). Environment: KEYSMITH_PORT.", valueName: "port"))
    var port: Int?

    @OptionGroup var databaseOptions: DatabaseOptions

    @Option(
        name: .customLong("tls-certificate"),
        help: ArgumentHelp(
            "Serve HTTPS with this PEM certificate chain (with --tls-key). Environment: KEYSMITH_TLS_CERTIFICATE.",
            valueName: "file"
        )
    )
    var tlsCertificate: String?

    @Option(
        name: .customLong("tls-key"),
        help: ArgumentHelp("The PEM private key of --tls-certificate. Environment: KEYSMITH_TLS_KEY.", valueName: "file")
    )
    var tlsKey: String?

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp(
            "Also serve GET /metrics, without a token, on HOST:PORT (a private network's). Environment: KEYSMITH_METRICS_ADDRESS.",
            valueName: "host:port"
        )
    )
    var metricsAddress: String?

    @Option(
        name: .customLong("unix-socket"),
        help: ArgumentHelp(
            "Also serve on this Unix domain socket (plain HTTP), for a gateway on the same host. Environment: KEYSMITH_UNIX_SOCKET.",
            valueName: "path"
        )
    )
    var unixSocket: String?

    @Option(
        name: .customLong("unix-socket-mode"),
        help: ArgumentHelp(
            "The --unix-socket file's permission bits, in octal (default 660: the user and group Keysmith runs as). Environment: KEYSMITH_UNIX_SOCKET_MODE.",
            valueName: "mode"
        )
    )
    var unixSocketMode: String?

    @Option(
        name: .customLong("database-pool-size"),
        help: ArgumentHelp(
            "PostgreSQL: the most connections this replica opens at once (default 20). Environment: KEYSMITH_DATABASE_POOL_SIZE.",
            valueName: "count"
        )
    )
    var databasePoolSize: Int?

    @Option(
        name: .customLong("log-format"),
        help: ArgumentHelp("text, or json (one object per line). Environment: KEYSMITH_LOG_FORMAT.", valueName: "format")
    )
    var logFormat: Logs.Format?

    @Option(
        name: .customLong("idle-timeout"),
        help: ArgumentHelp(
            "Close connections idle for this many seconds (default 60). Environment: KEYSMITH_IDLE_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var idleTimeout: Double?

    @Option(
        name: .customLong("request-head-timeout"),
        help: ArgumentHelp(
            "Close connections whose request head takes longer than this many seconds (default 10). Environment: KEYSMITH_REQUEST_HEAD_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var requestHeadTimeout: Double?

    @Option(
        name: .customLong("request-body-timeout"),
        help: ArgumentHelp(
            "Answer 408 and close a connection whose request body makes no progress for this many seconds (default 10). Environment: KEYSMITH_REQUEST_BODY_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var requestBodyTimeout: Double?

    @Option(
        name: .customLong("max-connections"),
        help: ArgumentHelp(
            "At most this many open connections (default: 90% of the open-file limit). Environment: KEYSMITH_MAX_CONNECTIONS.",
            valueName: "count"
        )
    )
    var maxConnections: Int?

    @Option(
        name: .customLong("invite-lifetime"),
        help: ArgumentHelp(
            "Invites expire this many seconds after they are sent (default 604800, 7 days). Environment: KEYSMITH_INVITE_LIFETIME.",
            valueName: "seconds"
        )
    )
    var inviteLifetime: Int?

    @Option(
        name: .customLong("trusted-request-headers"),
        help: ArgumentHelp(
            "Read the original request of /v1/auth/check only from this gateway's headers: nginx (X-Original-Method/-URI), traefik or caddy (X-Forwarded-Method/-Uri), envoy (the path after /v1/auth/check). Default: all of them, refusing a check where they disagree. Environment: KEYSMITH_TRUSTED_REQUEST_HEADERS.",
            valueName: "gateway"
        )
    )
    var trustedRequestHeaders: String?

    @Option(
        help: ArgumentHelp(
            "Also be the gateway: serve the OpenAI model API under /v1/, each request verified from memory and proxied to this OpenAI-compatible server's base URL (vLLM, llama.cpp's server, Ollama), such as http://127.0.0.1:8000/v1. Its own key, if it wants one, comes from KEYSMITH_UPSTREAM_API_KEY. Environment: KEYSMITH_UPSTREAM.",
            valueName: "url"
        )
    )
    var upstream: String?

    @Option(
        name: .customLong("upstreams-file"),
        help: ArgumentHelp(
            "Instead of --upstream, several model servers, each with the models it serves, its credential's environment variable and its timeouts, from this JSON file (docs/gateway.md). Environment: KEYSMITH_UPSTREAMS_FILE.",
            valueName: "path"
        )
    )
    var upstreamsFile: String?

    @Option(
        name: .customLong("upstream-connect-timeout"),
        help: ArgumentHelp(
            "Seconds connecting to the upstream may take (default 10). Environment: KEYSMITH_UPSTREAM_CONNECT_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var upstreamConnectTimeout: Double?

    @Option(
        name: .customLong("upstream-response-timeout"),
        help: ArgumentHelp(
            "Seconds the upstream may take to begin its answer (default 600: a whole non-streamed completion). Environment: KEYSMITH_UPSTREAM_RESPONSE_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var upstreamResponseTimeout: Double?

    @Option(
        name: .customLong("upstream-read-timeout"),
        help: ArgumentHelp(
            "Seconds the upstream may go quiet once its answer has begun, between two streamed events (default 120). Environment: KEYSMITH_UPSTREAM_READ_TIMEOUT.",
            valueName: "seconds"
        )
    )
    var upstreamReadTimeout: Double?

    @Option(
        name: .customLong("max-request-body-size"),
        help: ArgumentHelp(
            "The gateway forwards request bodies up to this many bytes and answers 413 to larger ones (default 33554432, 32 MiB). Environment: KEYSMITH_MAX_REQUEST_BODY_SIZE.",
            valueName: "bytes"
        )
    )
    var maxRequestBodySize: Int?

    @Option(
        name: .customLong("rate-limits"),
        help: ArgumentHelp(
            "Each model's default rate limits (requests and tokens per minute, requests per day), the token estimate of a request that names no maximum, and whether to refuse or admit when the database cannot be reached, from this JSON file (docs/limits.md). Environment: KEYSMITH_RATE_LIMITS_FILE.",
            valueName: "path"
        )
    )
    var rateLimitsFile: String?

    @Flag(
        name: .customLong("no-bootstrap-admin-key"),
        help: ArgumentHelp(
            "On an empty database, create the organization but no admin key (make one with `keysmith admin-keys create`), so that no key is printed where a service manager keeps output. Environment: KEYSMITH_BOOTSTRAP_ADMIN_KEY=false."
        )
    )
    var noBootstrapAdminKey = false

    @Flag(
        name: .customLong("no-dashboard"),
        help: ArgumentHelp("Do not serve the web dashboard at /dashboard. Environment: KEYSMITH_DASHBOARD=false.")
    )
    var noDashboard = false

    func bootstrapAdminKeyName() throws -> String? {
        let create = self.noBootstrapAdminKey ? false : try Self.environmentSwitch("KEYSMITH_BOOTSTRAP_ADMIN_KEY") ?? true
        return create ? "Bootstrap admin key" : nil
    }

    func dashboardEnabled() throws -> Bool {
        self.noDashboard ? false : try Self.environmentSwitch("KEYSMITH_DASHBOARD") ?? true
    }

    /// A true/false setting from the environment; nil when unset, an error when it is neither.
    static func environmentSwitch(_ name: String) throws -> Bool? {
        guard let text = Environment.value(name) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw ValidationError("\(name) '\(text)' is not true or false")
        }
    }

    func trustedRequestSource() throws -> RequestDescriptionSource? {
        guard let name = self.trustedRequestHeaders ?? Environment.value("KEYSMITH_TRUSTED_REQUEST_HEADERS") else { return nil }
        guard let source = RequestDescriptionSource(name: name) else {
            throw ValidationError("--trusted-request-headers '\(name)' is not one of nginx, traefik, caddy, envoy")
        }
        return source
    }

    func inviteLifetimeSeconds() throws -> Int {
        let seconds =
            try self.inviteLifetime
            ?? Environment.value("KEYSMITH_INVITE_LIFETIME").map { try Self.parse($0, "KEYSMITH_INVITE_LIFETIME", as: Int.self) }
            ?? 7 * 24 * 3600
        guard (60...31_536_000).contains(seconds) else {
            throw ValidationError("the invite lifetime must be between 60 seconds and 1 year (31536000), not \(seconds)")
        }
        return seconds
    }

    func gatewayConfiguration() throws -> GatewayConfiguration? {
        let url = (self.upstream ?? Environment.value("KEYSMITH_UPSTREAM")).flatMap { $0.isEmpty ? nil : $0 }
        let file = (self.upstreamsFile ?? Environment.value("KEYSMITH_UPSTREAMS_FILE")).flatMap { $0.isEmpty ? nil : $0 }
        let tuned =
            self.upstreamConnectTimeout != nil || self.upstreamResponseTimeout != nil || self.upstreamReadTimeout != nil
            || self.maxRequestBodySize != nil
        if let file {
            guard url == nil else { throw ValidationError("give --upstream or --upstreams-file, not both") }
            guard !tuned else {
                throw ValidationError("with --upstreams-file, timeouts and the body size limit are set in the file")
            }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("the upstreams file \(file) cannot be read")
            }
            do {
                return try GatewayConfiguration.load(contentsOf: data, file: file, environment: Environment.value)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        guard let url else {
            if tuned { throw ValidationError("the --upstream-… and --max-request-body-size options need --upstream") }
            return nil
        }
        func seconds(_ option: Double?, _ variable: String, default value: Double) throws -> Duration {
            let seconds = try option ?? Environment.value(variable).map { try Self.parse($0, variable, as: Double.self) } ?? value
            guard seconds > 0, seconds <= 86_400 else { throw ValidationError("\(variable) must be between 0 and 86400 seconds, not \(seconds)") }
            return .milliseconds(Int64(seconds * 1000))
        }
        let upstream: GatewayConfiguration.Upstream
        do {
            upstream = try GatewayConfiguration.Upstream(
                parsing: url,
                apiKey: Environment.value("KEYSMITH_UPSTREAM_API_KEY"),
                connectTimeout: try seconds(self.upstreamConnectTimeout, "KEYSMITH_UPSTREAM_CONNECT_TIMEOUT", default: 10),
                responseTimeout: try seconds(self.upstreamResponseTimeout, "KEYSMITH_UPSTREAM_RESPONSE_TIMEOUT", default: 600),
                readTimeout: try seconds(self.upstreamReadTimeout, "KEYSMITH_UPSTREAM_READ_TIMEOUT", default: 120)
            )
        } catch let error as InvalidUpstreamError {
            throw ValidationError("\(error)")
        }
        let maximumBody =
            try self.maxRequestBodySize
            ?? Environment.value("KEYSMITH_MAX_REQUEST_BODY_SIZE").map { try Self.parse($0, "KEYSMITH_MAX_REQUEST_BODY_SIZE", as: Int.self) }
            ?? 32 * 1024 * 1024
        guard (1...(1 << 30)).contains(maximumBody) else {
            throw ValidationError("the maximum request body size must be between 1 byte and 1 GiB, not \(maximumBody)")
        }
        return GatewayConfiguration(upstream: upstream, maximumRequestBodySize: maximumBody)
    }

    func rateLimitConfiguration() throws -> RateLimitConfiguration {
        guard let file = (self.rateLimitsFile ?? Environment.value("KEYSMITH_RATE_LIMITS_FILE")).flatMap({ $0.isEmpty ? nil : $0 }) else {
            return RateLimitConfiguration()
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ValidationError("the rate limits file \(file) cannot be read")
        }
        do {
            return try RateLimitConfiguration.load(contentsOf: data, file: file)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func unixSocketConfiguration() throws -> KeysmithConfiguration.UnixSocket? {
        let mode = try (self.unixSocketMode ?? Environment.value("KEYSMITH_UNIX_SOCKET_MODE"))
            .map { try KeysmithConfiguration.UnixSocket.mode(parsing: $0) }
        guard let path = self.unixSocket ?? Environment.value("KEYSMITH_UNIX_SOCKET"), !path.isEmpty else {
            if mode != nil { throw ValidationError("--unix-socket-mode needs --unix-socket") }
            return nil
        }
        return KeysmithConfiguration.UnixSocket(path: path, mode: mode ?? KeysmithConfiguration.UnixSocket.defaultMode)
    }

    func run() async throws {
        try await reportingErrors {
            let logger = try Logs.bootstrap(format: self.logFormat)
            let host = self.host ?? Environment.value("KEYSMITH_HOST") ?? "127.0.0.1"
            let port = try self.port ?? Environment.value("KEYSMITH_PORT").map { try Self.parse($0, "KEYSMITH_PORT", as: Int.self) } ?? 8080
            guard (0...65535).contains(port) else { throw ValidationError("port \(port) is not between 0 and 65535") }
            let configuration = KeysmithConfiguration(
                host: host,
                port: port,
                database: try self.databaseOptions.url(),
                secret: try self.databaseOptions.secret(),
                bootstrapAdminKeyName: try self.bootstrapAdminKeyName(),
                tls: try self.tlsFiles(),
                metricsAddress: try (self.metricsAddress ?? Environment.value("KEYSMITH_METRICS_ADDRESS"))
                    .map(KeysmithConfiguration.ListenAddress.init(parsing:)),
                unixSocket: try self.unixSocketConfiguration(),
                connectionLimits: try self.connectionLimits(),
                databasePoolSize: try self.poolSize(),
                inviteLifetime: .seconds(try self.inviteLifetimeSeconds()),
                dashboard: try self.dashboardEnabled(),
                // Not a flag: a switch for benchmarks and diagnosis (docs/operations.md), off only when asked.
                checksOnEventLoop: try Self.environmentSwitch("KEYSMITH_CHECKS_ON_EVENT_LOOP") ?? true,
                trustedRequestHeaders: try self.trustedRequestSource(),
                gateway: try self.gatewayConfiguration(),
                rateLimits: try self.rateLimitConfiguration()
            )
            try await Self.checkAddressIsFree(host: host, port: port)
            if let metricsAddress = configuration.metricsAddress {
                try await Self.checkAddressIsFree(host: metricsAddress.host, port: metricsAddress.port)
            }
            let built = try await buildApplication(configuration, logger: logger)
            if let bootstrap = built.bootstrap, let adminKey = bootstrap.adminKey {
                FileHandle.standardOutput.write(Data(Self.firstStartNotice(bootstrap, adminKey: adminKey, configuration).utf8))
            }
            let started = ContinuousClock.now
            let group = ServiceGroup(
                configuration: .init(
                    services: [
                        .init(service: built.application),
                        .init(service: ShutdownNotice(logger: logger), successTerminationBehavior: .ignore),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            let uptime = ContinuousClock.now - started
            logger.info("Keysmith stopped", metadata: ["uptime_seconds": "\(uptime.components.seconds)"])
        }
    }

    /// How this executable was started: `keysmith` when found on the PATH, else the path it was started by (as
    /// `swift run` does), so that the command the notice suggests runs as printed.
    static var invokedCommand: String {
        let first = CommandLine.arguments.first ?? "keysmith"
        return first.contains("/") ? first : "keysmith"
    }

    /// What the first start prints, once: the admin key, as the lines that point the OpenAI SDKs at this server,
    /// and what to run next.
    static func firstStartNotice(_ bootstrap: Keysmith.Bootstrap, adminKey: String, _ configuration: KeysmithConfiguration) -> String {
        let scheme = configuration.tls == nil ? "http" : "https"
        // A wildcard address is reached on loopback from this machine.
        let host =
            switch configuration.host {
            case "0.0.0.0", "": "127.0.0.1"
            case "::": "[::1]"
            case let host where host.contains(":"): "[\(host)]"
            case let host: host
            }
        let port = configuration.port == 0 ? "PORT" : String(configuration.port)
        return """
            Created the default organization \(bootstrap.organization.id) and its first admin key.
            The key will not be shown again; store it now. To point the OpenAI SDKs (and curl) at this server:

                export OPENAI_BASE_URL=\(scheme)://\(host):\(port)/v1
                export OPENAI_ADMIN_KEY=\(adminKey)

            Then, with those two set, list the projects (the CLI reads them too):

                \(Self.invokedCommand) projects list
            \(configuration.dashboard ? "\nor open \(scheme)://\(host):\(port)/dashboard in a browser and sign in with the key.\n" : "")
            \(configuration.port == 0 ? "\n(PORT: the port in the \"listening\" log line.)\n" : "")

            """
    }

    private func tlsFiles() throws -> KeysmithConfiguration.TLSFiles? {
        let certificate = self.tlsCertificate ?? Environment.value("KEYSMITH_TLS_CERTIFICATE")
        let key = self.tlsKey ?? Environment.value("KEYSMITH_TLS_KEY")
        switch (certificate, key) {
        case (nil, nil): return nil
        case (let certificate?, let key?): return .init(certificateChain: certificate, privateKey: key)
        default: throw ValidationError("--tls-certificate and --tls-key go together: give both, or neither")
        }
    }

    private func connectionLimits() throws -> ConnectionLimits {
        var limits = ConnectionLimits()
        if let seconds = try self.idleTimeout
            ?? Environment.value("KEYSMITH_IDLE_TIMEOUT").map({
                try Self.parse($0, "KEYSMITH_IDLE_TIMEOUT", as: Double.self)
            })
        {
            guard seconds > 0 else { throw ValidationError("the idle timeout must be more than 0 seconds") }
            limits.idleTimeout = .milliseconds(Int64(seconds * 1000))
        }
        if let seconds = try self.requestHeadTimeout
            ?? Environment.value("KEYSMITH_REQUEST_HEAD_TIMEOUT").map({
                try Self.parse($0, "KEYSMITH_REQUEST_HEAD_TIMEOUT", as: Double.self)
            })
        {
            guard seconds > 0 else { throw ValidationError("the request head timeout must be more than 0 seconds") }
            limits.requestHeadTimeout = .milliseconds(Int64(seconds * 1000))
        }
        if let seconds = try self.requestBodyTimeout
            ?? Environment.value("KEYSMITH_REQUEST_BODY_TIMEOUT").map({
                try Self.parse($0, "KEYSMITH_REQUEST_BODY_TIMEOUT", as: Double.self)
            })
        {
            guard seconds > 0 else { throw ValidationError("the request body timeout must be more than 0 seconds") }
            limits.requestBodyTimeout = .milliseconds(Int64(seconds * 1000))
        }
        if let count = try self.maxConnections
            ?? Environment.value("KEYSMITH_MAX_CONNECTIONS").map({
                try Self.parse($0, "KEYSMITH_MAX_CONNECTIONS", as: Int.self)
            })
        {
            guard count >= 1 else { throw ValidationError("--max-connections must be at least 1") }
            limits.maximumConnections = count
        }
        return limits
    }

    private func poolSize() throws -> Int {
        let size =
            try self.databasePoolSize
            ?? Environment.value("KEYSMITH_DATABASE_POOL_SIZE").map { try Self.parse($0, "KEYSMITH_DATABASE_POOL_SIZE", as: Int.self) } ?? 20
        guard size >= 2 else { throw ValidationError("the database pool needs at least 2 connections") }
        return size
    }

    static func parse<Value: LosslessStringConvertible>(_ text: String, _ name: String, as type: Value.Type) throws -> Value {
        guard let value = Value(text) else { throw ValidationError("\(name) '\(text)' is not a number") }
        return value
    }

    /// Fails early, before the database is touched, when the address cannot be bound: a port in use is then one
    /// clear error line rather than a failure after migrations and bootstrap ran.
    static func checkAddressIsFree(host: String, port: Int) async throws {
        guard port != 0 else { return }
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port)
                .get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ListenError(host: host, port: port, reason: "the address is already in use")
        } catch {
            throw ListenError(host: host, port: port, reason: "\(error)")
        }
        try await channel.close()
    }
}

/// Says, when a signal arrives, that the server is stopping and what it does before it exits. Registered after
/// the application, so that it hears of the graceful shutdown first.
struct ShutdownNotice: Service {
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        guard !Task.isCancelled else { return }
        self.logger.info("Stopping: finishing requests in flight, writing pending key uses, then closing the database")
    }
}

struct ListenError: Error, CustomStringConvertible {
    var host: String
    var port: Int
    var reason: String

    var description: String { "cannot listen on \(self.host):\(self.port): \(self.reason)" }
}
