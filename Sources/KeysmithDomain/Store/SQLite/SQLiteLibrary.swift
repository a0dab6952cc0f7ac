import VaporCSQLite

/// The SQLite library Keysmith runs on: the one sqlite-nio vendors and compiles (its `VaporCSQLite` module).
///
/// That module is not a product of sqlite-nio, so its semantic versioning does not promise anything about it: an
/// upgrade could change how SQLite is compiled. What Keysmith relies on is checked here, by the test suite and
/// again when a database is opened, so that such a change fails a test (or refuses to start) rather than misbehaving.
enum SQLiteLibrary {
    /// SQLITE_VERSION_NUMBER of the oldest SQLite with everything the store uses: STRICT tables (3.37).
    static let minimumVersion: Int32 = 3_037_000

    static var version: String { String(cString: sqlite_nio_sqlite3_libversion()) }
    static var versionNumber: Int32 { sqlite_nio_sqlite3_libversion_number() }

    /// Whether SQLite was compiled with `option` (`THREADSAFE=1`, `OMIT_WAL`, …).
    static func isCompiled(with option: String) -> Bool {
        sqlite_nio_sqlite3_compileoption_used(option) != 0
    }

    /// Connections are opened with SQLITE_OPEN_NOMUTEX and shared between threads behind a mutex: that needs a
    /// thread-safe build (THREADSAFE=1 or 2; 0 removes every lock).
    static var isThreadSafe: Bool { sqlite_nio_sqlite3_threadsafe() != 0 }

    /// What is missing from this SQLite for Keysmith, in words; empty when nothing is.
    static var missingCapabilities: [String] {
        var missing: [String] = []
        if self.versionNumber < self.minimumVersion { missing.append("SQLite \(self.version) is older than 3.37 (STRICT tables)") }
        if !self.isThreadSafe { missing.append("SQLite was compiled without thread safety (THREADSAFE=0)") }
        for option in ["OMIT_WAL", "OMIT_FOREIGN_KEY", "OMIT_AUTOINCREMENT", "OMIT_CTE", "OMIT_SUBQUERY"] where self.isCompiled(with: option) {
            missing.append("SQLite was compiled with \(option)")
        }
        return missing
    }
}

/// The SQLite library lacks something Keysmith relies on (see ``SQLiteLibrary``).
struct SQLiteLibraryError: Error, CustomStringConvertible {
    var missing: [String]
    var description: String { "the SQLite library cannot run Keysmith: " + self.missing.joined(separator: "; ") }
}
