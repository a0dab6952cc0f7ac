/// Where the data lives, parsed from `--database` / `KEYSMITH_DATABASE_URL`.
public enum DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    /// `sqlite:relative/path.sqlite` or `sqlite:///absolute/path.sqlite`.
    case sqliteFile(path: String)
    /// `sqlite::memory:`: a private database that lives as long as the process (tests).
    case sqliteMemory
    /// `postgres://…` or `postgresql://…`.
    case postgres(String)

    public static let `default` = DatabaseURL.sqliteFile(path: "keysmith.sqlite")

    public init(parsing text: String) throws(DatabaseURLError) {
        if text == "sqlite::memory:" {
            self = .sqliteMemory
        } else if text.hasPrefix("sqlite:///") {
            let path = String(text.dropFirst("sqlite://".count))
            guard path.count > 1 else { throw DatabaseURLError(url: text, reason: "it names no file") }
            self = .sqliteFile(path: path)
        } else if text.hasPrefix("sqlite://") {
            throw DatabaseURLError(
                url: text,
                reason: "use sqlite:relative/path.sqlite or sqlite:///absolute/path.sqlite (no host part)"
            )
        } else if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty, !path.hasPrefix(":") else {
                throw DatabaseURLError(url: text, reason: "it names no file")
            }
            self = .sqliteFile(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(text)
        } else {
            throw DatabaseURLError(
                url: text,
                reason: "expected sqlite:PATH, sqlite:///ABSOLUTE/PATH, sqlite::memory: or postgres://…"
            )
        }
    }

    public var description: String {
        switch self {
        case .sqliteFile(let path): path.hasPrefix("/") ? "sqlite://\(path)" : "sqlite:\(path)"
        case .sqliteMemory: "sqlite::memory:"
        // Never print a password that may be in the URL.
        case .postgres: "postgres://…"
        }
    }
}

public struct DatabaseURLError: Error, CustomStringConvertible {
    public var url: String
    public var reason: String

    public var description: String {
        "invalid database URL '\(self.url)': \(self.reason)"
    }
}
