/// The database cannot be reached, or did not answer in time: a 503, not a bug.
public struct DatabaseUnavailableError: Error, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "the database is unavailable: \(self.reason)" }
}

/// The database could not give an operation what it needed in time: a lock another session holds (PostgreSQL's
/// `lock_timeout`), or a statement past `statement_timeout`. Nothing was changed; a 503 with `Retry-After`.
public struct DatabaseBusyError: Error, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "the database is busy: \(self.reason)" }
}
