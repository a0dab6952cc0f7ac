public import SQLKit
import Synchronization

/// A database engine as the store uses it: reads that see committed data, and writes that run in one
/// transaction each, serialised so that a check and the change it guards cannot interleave with another write.
///
/// Queries are SQLKit `SQLQueryString`s (values always bound, never concatenated); rows come back as
/// ``StoreRow``s read column by column, because decoding rows through `Codable` costs more than the query on the
/// hot paths.
public protocol SQLEngine: Sendable {
    /// Runs `body` on a connection suitable for reading.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Runs `body` in a transaction: committed if it returns, rolled back if it throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) async throws -> T) async throws -> T

    /// Closes every connection. No call may follow.
    func close() async throws
}

/// One connection's worth of queries.
public protocol SQLSession: Sendable {
    func rows(_ query: SQLQueryString) async throws -> [StoreRow]

    /// Makes one value of each row with `decode`, which reads the row where the engine has it, without copying it
    /// into a ``StoreRow`` first: for the hot paths (a page of 100 keys is 2,000 values).
    func rows<T: Sendable>(
        _ query: SQLQueryString,
        decode: @escaping @Sendable (any StoreRowReader) throws -> T
    ) async throws -> [T]
}

extension SQLSession {
    /// A statement to run, in the spelling of SQLKit's raw builder: `.run()`, `.first()`, `.all()`.
    func raw(_ query: SQLQueryString) -> SQLStatement {
        SQLStatement(session: self, query: query)
    }
}

struct SQLStatement {
    let session: any SQLSession
    let query: SQLQueryString

    func run() async throws {
        _ = try await self.session.rows(self.query)
    }

    func all() async throws -> [StoreRow] {
        try await self.session.rows(self.query)
    }

    func first() async throws -> StoreRow? {
        try await self.session.rows(self.query).first
    }
}

/// An async mutual-exclusion lock with FIFO hand-over.
final class AsyncLock: Sendable {
    private struct State {
        var isLocked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await self.lock()
        defer { self.unlock() }
        return try await body()
    }

    private func lock() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = self.state.withLock { state in
                if state.isLocked {
                    state.waiters.append(continuation)
                    return false
                }
                state.isLocked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func unlock() {
        let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.isLocked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        // The lock passes straight to the next waiter; it stays locked.
        next?.resume()
    }
}
