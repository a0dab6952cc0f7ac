import Synchronization

/// An async mutual-exclusion lock with FIFO hand-over: for work that must not interleave across suspension points
/// (a transaction on the one writer connection, applying changes in order).
public final class AsyncLock: Sendable {
    public init() {}

    private struct State {
        var isLocked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    public func withLock<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
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
