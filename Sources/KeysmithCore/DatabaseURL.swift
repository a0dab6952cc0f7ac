/// How hard SQLite works to keep a commit through a power loss (its `synchronous` setting).
public enum SQLiteSynchronous: String, Sendable, Equatable, CaseIterable {
    /// Every commit is on the disk before it is acknowledged (`synchronous = FULL`): the default.
    case full
    /// Commits are written to the WAL without waiting for the disk (`synchronous = NORMAL`): a process crash loses
    /// nothing, but a power loss or an operating system crash can lose the last commits, a revocation among them.
    case normal
}

/// Where the data lives, parsed from `--database` / `KEYSMITH_DATABASE_URL`.
public enum DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    /// `sqlite:relative/path.sqlite` or `sqlite:///absolute/path.sqlite`, with `?synchronous=normal` to trade
    /// durability through a power loss for faster writes.
    case sqliteFile(path: String, synchronous: SQLiteSynchronous = .full)
    /// `sqlite::memory:`: a private database that lives as long as the process (tests).
    case sqliteMemory
    /// `postgres://user:password@host:port/database?sslmode=…&sslrootcert=…` (or `postgresql://`).
    case postgres(PostgresSettings)

    public static let `default` = DatabaseURL.sqliteFile(path: "keysmith.sqlite")

    public init(parsing text: String) throws(DatabaseURLError) {
        if text == "sqlite::memory:" {
            self = .sqliteMemory
        } else if text.hasPrefix("sqlite:///") {
            let (path, synchronous) = try Self.sqliteFile(text, String(text.dropFirst("sqlite://".count)))
            guard path.count > 1 else { throw DatabaseURLError(url: text, reason: "it names no file") }
            self = .sqliteFile(path: path, synchronous: synchronous)
        } else if text.hasPrefix("sqlite://") {
            throw DatabaseURLError(
                url: text,
                reason: "use sqlite:relative/path.sqlite or sqlite:///absolute/path.sqlite (no host part)"
            )
        } else if text.hasPrefix("sqlite:") {
            let (path, synchronous) = try Self.sqliteFile(text, String(text.dropFirst("sqlite:".count)))
            guard !path.isEmpty, !path.hasPrefix(":") else {
                throw DatabaseURLError(url: text, reason: "it names no file")
            }
            self = .sqliteFile(path: path, synchronous: synchronous)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(try PostgresSettings(parsing: text))
        } else {
            throw DatabaseURLError(
                url: DatabaseURLError.redacted(text),
                reason: "expected sqlite:PATH, sqlite:///ABSOLUTE/PATH, sqlite::memory: or postgres://…"
            )
        }
    }

    /// A SQLite file's path and the one setting its URL may carry after `?`.
    private static func sqliteFile(_ text: String, _ rest: String) throws(DatabaseURLError) -> (String, SQLiteSynchronous) {
        guard let mark = rest.lastIndex(of: "?") else { return (rest, .full) }
        var synchronous = SQLiteSynchronous.full
        for parameter in rest[rest.index(after: mark)...].split(separator: "&") {
            let (name, value) = (parameter.prefix { $0 != "=" }, parameter.drop { $0 != "=" }.dropFirst())
            guard name == "synchronous" else {
                throw DatabaseURLError(url: text, reason: "'\(name)' is not a setting of a SQLite URL (synchronous is)")
            }
            guard let chosen = SQLiteSynchronous(rawValue: value.lowercased()) else {
                throw DatabaseURLError(url: text, reason: "synchronous must be full or normal, not '\(value)'")
            }
            synchronous = chosen
        }
        return (String(rest[..<mark]), synchronous)
    }

    public var description: String {
        switch self {
        case .sqliteFile(let path, let synchronous):
            (path.hasPrefix("/") ? "sqlite://\(path)" : "sqlite:\(path)") + (synchronous == .full ? "" : "?synchronous=\(synchronous.rawValue)")
        case .sqliteMemory: "sqlite::memory:"
        case .postgres(let settings): settings.description
        }
    }
}

/// A PostgreSQL connection as a URL describes it, in libpq's terms.
public struct PostgresSettings: Sendable, Equatable, CustomStringConvertible {
    /// libpq's `sslmode`.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, unverified (`allow` is treated alike).
        case prefer
        /// TLS or nothing, unverified unless `sslrootcert` names a CA (then as `verify-ca`), as libpq does.
        case require
        /// TLS, the server's certificate checked against the CA (`sslrootcert`, else the system's).
        case verifyCA = "verify-ca"
        /// As `verify-ca`, and the certificate's name must match the host.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tlsMode: TLSMode
    /// A PEM file of the certificate authorities to trust (`sslrootcert`).
    public var rootCertificatePath: String?

    public init(
        host: String,
        port: Int = 5432,
        username: String,
        password: String?,
        database: String,
        tlsMode: TLSMode = .prefer,
        rootCertificatePath: String? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tlsMode = tlsMode
        self.rootCertificatePath = rootCertificatePath
    }

    init(parsing text: String) throws(DatabaseURLError) {
        let shown = DatabaseURLError.redacted(text)
        func fail(_ reason: String) -> DatabaseURLError { DatabaseURLError(url: shown, reason: reason) }

        var rest = Substring(text.drop { $0 != ":" }.dropFirst("://".count))
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        var path = ""
        if let slash = rest.firstIndex(of: "/") {
            path = String(rest[rest.index(after: slash)...])
            rest = rest[..<slash]
        }
        var userInfo: Substring?
        if let at = rest.lastIndex(of: "@") {
            userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        // The host, with a port after the last colon unless the host is a bracketed IPv6 address.
        var host = String(rest)
        var port = 5432
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw fail("an IPv6 host needs its closing ]") }
            let afterClose = host[host.index(after: close)...]
            if afterClose.hasPrefix(":") {
                guard let parsed = Int(afterClose.dropFirst()), (1...65535).contains(parsed) else { throw fail("the port is not a port number") }
                port = parsed
            } else if !afterClose.isEmpty {
                throw fail("unexpected text after the IPv6 host")
            }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            guard let parsed = Int(host[host.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw fail("the port is not a port number")
            }
            port = parsed
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw fail("it names no host") }

        var username = ""
        var password: String?
        if let userInfo {
            if let colon = userInfo.firstIndex(of: ":") {
                username = try Self.decode(userInfo[..<colon], in: shown)
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], in: shown)
            } else {
                username = try Self.decode(userInfo, in: shown)
            }
        }
        guard !username.isEmpty else { throw fail("it names no user (postgres://user:password@host/database)") }
        let database = try Self.decode(Substring(path), in: shown)
        guard !database.isEmpty else { throw fail("it names no database (postgres://user:password@host/database)") }

        var tlsMode = TLSMode.prefer
        var rootCertificatePath: String?
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? try Self.decode(parts[1], in: shown) : ""
            switch name {
            case "sslmode":
                if value == "allow" {
                    tlsMode = .prefer
                } else if let mode = TLSMode(rawValue: value) {
                    tlsMode = mode
                } else {
                    throw fail("sslmode '\(value)' is not one of disable, allow, prefer, require, verify-ca, verify-full")
                }
            case "sslrootcert":
                rootCertificatePath = value
            case "application_name", "connect_timeout":
                continue
            default:
                throw fail("the parameter '\(name)' is not supported (sslmode and sslrootcert are)")
            }
        }
        self.init(
            host: host,
            port: port,
            username: username,
            password: password,
            database: database,
            tlsMode: tlsMode,
            rootCertificatePath: rootCertificatePath
        )
    }

    private static func decode(_ text: Substring, in url: String) throws(DatabaseURLError) -> String {
        do {
            return try PercentEncoding.decodeStrictly(text)
        } catch {
            throw DatabaseURLError(url: url, reason: "a % is not followed by two hex digits")
        }
    }

    /// The URL without its password: what logs and errors show.
    public var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "postgres://\(self.username)@\(host):\(self.port)/\(self.database)?sslmode=\(self.tlsMode.rawValue)"
    }
}

public struct DatabaseURLError: Error, CustomStringConvertible {
    public var url: String
    public var reason: String

    public var description: String {
        "invalid database URL '\(self.url)': \(self.reason)"
    }

    /// The URL with any password replaced by `***`, so that an error never prints it.
    static func redacted(_ text: String) -> String {
        guard let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") else { return text }
        let afterScheme = text[text.index(colon, offsetBy: 3)...]
        let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" } ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }
}
