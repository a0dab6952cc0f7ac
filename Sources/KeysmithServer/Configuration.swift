public import KeysmithCore
public import KeysmithStore

/// What `keysmith serve` and the tests configure.
public struct KeysmithConfiguration: Sendable {
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

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        database: DatabaseURL = .default,
        secret: [UInt8]? = nil,
        clock: KeysmithClock = .system,
        bootstrapAdminKeyName: String? = "Bootstrap admin key",
        usageFlushInterval: Duration = .seconds(10)
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.secret = secret
        self.clock = clock
        self.bootstrapAdminKeyName = bootstrapAdminKeyName
        self.usageFlushInterval = usageFlushInterval
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
