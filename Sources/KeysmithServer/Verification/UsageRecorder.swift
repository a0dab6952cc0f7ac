import KeysmithCore
import KeysmithStore
import Logging
public import ServiceLifecycle
import Synchronization

/// Collects key uses in memory and writes them in batches, so that `last_used_at` costs no database write per
/// request. A service in the application's group: it flushes every `interval` seconds and once more on graceful
/// shutdown, after the HTTP server has stopped taking requests.
public final class UsageRecorder: Service, Sendable {
    private struct Pending {
        var apiKeys: [String: UnixSeconds] = [:]
        var adminKeys: [String: UnixSeconds] = [:]
    }

    private let store: any KeysmithStore
    private let clock: KeysmithClock
    private let interval: Duration
    private let logger: Logger
    private let pending = Mutex(Pending())

    init(store: any KeysmithStore, clock: KeysmithClock, interval: Duration, logger: Logger) {
        self.store = store
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    func recordAPIKeyUse(_ id: String) {
        let now = self.clock.now()
        self.pending.withLock { $0.apiKeys[id] = now }
    }

    func recordAdminKeyUse(_ id: String) {
        let now = self.clock.now()
        self.pending.withLock { $0.adminKeys[id] = now }
    }

    /// Writes every pending use in one transaction. Uses that fail to write are kept for the next flush.
    public func flush() async throws {
        let batch = self.pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        guard !batch.apiKeys.isEmpty || !batch.adminKeys.isEmpty else { return }
        do {
            try await self.store.recordUses(apiKeys: batch.apiKeys, adminKeys: batch.adminKeys)
        } catch {
            self.pending.withLock { pending in
                pending.apiKeys.merge(batch.apiKeys) { max($0, $1) }
                pending.adminKeys.merge(batch.adminKeys) { max($0, $1) }
            }
            throw error
        }
    }

    public func run() async throws {
        // Sleep until the next flush; graceful shutdown cancels the sleep and ends the loop.
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { [interval] in try await Task.sleep(for: interval) }
            } catch {
                break
            }
            do {
                try await self.flush()
            } catch {
                self.logger.error("Could not record key uses; will retry", metadata: ["error": "\(error)"])
            }
        }
        try await self.flush()
    }
}
