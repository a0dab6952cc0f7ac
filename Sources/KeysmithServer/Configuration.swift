public import KeysmithCore

/// What `keysmith serve` and the tests configure.
public struct KeysmithConfiguration: Sendable {
    /// A host and port to listen on.
    public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `HOST:PORT` (`[IPv6]:PORT` for IPv6), as `--metrics-address` takes it.
        public init(parsing text: String) throws {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
            else { throw InvalidListenAddressError(text: text) }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { throw InvalidListenAddressError(text: text) }
            self.init(host: host, port: port)
        }

        public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
    }

    /// A PEM certificate chain and its PEM private key, to serve HTTPS directly.
    public struct TLSFiles: Sendable, Equatable {
        public var certificateChain: String
        public var privateKey: String

        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public var host: String
    public var port: Int
    public var database: DatabaseURL
    /// Overrides the secret kept in the database (`KEYSMITH_SECRET`).
    public var secret: [UInt8]?
    public var clock: KeysmithClock
    /// Name of the admin key created on an empty database; nil creates none (tests make their own).
    public var bootstrapAdminKeyName: String?
    /// How often batched `last_used_at` updates are written (at most 60 s, so that lists are that fresh).
    public var usageFlushInterval: Duration
    /// Serve HTTPS with these files; nil serves plain HTTP.
    public var tls: TLSFiles?
    /// Also serve `GET /metrics`, without authentication, on this address (a private network's).
    public var metricsAddress: ListenAddress?
    /// Also serve the same application on this Unix domain socket (`--unix-socket`).
    public var unixSocket: UnixSocket?
    public var connectionLimits: ConnectionLimits
    /// How often the change log is read for writes made by other processes.
    public var changePollInterval: Duration
    /// PostgreSQL: the most connections this process opens at once.
    public var databasePoolSize: Int
    /// How long an invite stays pending before it expires.
    public var inviteLifetime: Duration
    /// Whether `/dashboard` is served.
    public var dashboard: Bool
    /// How long a dashboard session lasts without a request.
    public var dashboardSessionIdleTimeout: Duration
    /// Whether `/v1/auth/check` is answered on the event loop, below Hummingbird's router (``ForwardAuthChannelHandler``).
    /// Off, every check goes through the router like any request: the same answers, at a higher cost. A switch for
    /// comparing the two (`scripts/bench verify` does) and for ruling the handler out when diagnosing.
    public var checksOnEventLoop: Bool
    /// The one source `/v1/auth/check` reads the original request from (`--trusted-request-headers`); nil reads
    /// every source a gateway might use and refuses a check whose descriptions disagree.
    public var trustedRequestHeaders: RequestDescriptionSource?
    /// Serve the OpenAI model API as a gateway to this upstream (`--upstream`); nil serves forward auth only.
    public var gateway: GatewayConfiguration?
    /// The operator's rate limits: each model's defaults, and what to do when the database cannot be reached
    /// (`--rate-limits`).
    public var rateLimits: RateLimitConfiguration

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        database: DatabaseURL = .default,
        secret: [UInt8]? = nil,
        clock: KeysmithClock = .system,
        bootstrapAdminKeyName: String? = "Bootstrap admin key",
        usageFlushInterval: Duration = .seconds(10),
        tls: TLSFiles? = nil,
        metricsAddress: ListenAddress? = nil,
        unixSocket: UnixSocket? = nil,
        connectionLimits: ConnectionLimits = ConnectionLimits(),
        changePollInterval: Duration = .milliseconds(250),
        databasePoolSize: Int = 20,
        inviteLifetime: Duration = .seconds(7 * 24 * 3600),
        dashboard: Bool = true,
        dashboardSessionIdleTimeout: Duration = .seconds(30 * 60),
        checksOnEventLoop: Bool = true,
        trustedRequestHeaders: RequestDescriptionSource? = nil,
        gateway: GatewayConfiguration? = nil,
        rateLimits: RateLimitConfiguration = RateLimitConfiguration()
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.secret = secret
        self.clock = clock
        self.bootstrapAdminKeyName = bootstrapAdminKeyName
        self.usageFlushInterval = usageFlushInterval
        self.tls = tls
        self.metricsAddress = metricsAddress
        self.unixSocket = unixSocket
        self.connectionLimits = connectionLimits
        self.changePollInterval = changePollInterval
        self.databasePoolSize = databasePoolSize
        self.inviteLifetime = inviteLifetime
        self.dashboard = dashboard
        self.dashboardSessionIdleTimeout = dashboardSessionIdleTimeout
        self.checksOnEventLoop = checksOnEventLoop
        self.trustedRequestHeaders = trustedRequestHeaders
        self.gateway = gateway
        self.rateLimits = rateLimits
    }

    /// `KEYSMITH_SECRET` as key material: its UTF-8 bytes, which must number at least 32.
    public static func secret(fromEnvironment value: String?) throws -> [UInt8]? {
        guard let value, !value.isEmpty else { return nil }
        guard value.utf8.count >= 32 else { throw SecretTooShortError() }
        return Array(value.utf8)
    }
}

public struct SecretTooShortError: Error, CustomStringConvertible {
    public var description: String {
        "KEYSMITH_SECRET must be at least 32 characters (for example the output of `openssl rand -hex 32`)"
    }
}

public struct InvalidListenAddressError: Error, CustomStringConvertible {
    public var text: String

    public var description: String {
        "'\(self.text)' is not an address to listen on; expected HOST:PORT, such as 127.0.0.1:9090"
    }
}
