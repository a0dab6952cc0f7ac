import CoreMetrics
import KeysmithCore
import KeysmithDomain
import Logging
public import ServiceLifecycle
import Synchronization

/// Collects key uses in memory and writes them in batches, so that `last_used_at` costs no database write per
/// request. A service in the application's group: it flushes every `interval` seconds and once more on graceful
/// shutdown, after the HTTP server has stopped taking requests.
public final class UsageRecorder: Service, Sendable {
    private struct Pending {
        var apiKeys: [APIKeyID: UnixSeconds] = [:]
        var adminKeys: [AdminKeyID: UnixSeconds] = [:]
    }

    private let keysmith: Keysmith
    private let interval: Duration
    private let logger: Logger
    private let metrics: ServerMetrics?
    private let pending = Mutex(Pending())

    init(keysmith: Keysmith, interval: Duration, logger: Logger, metrics: ServerMetrics?) {
        self.keysmith = keysmith
        self.interval = interval
        self.logger = logger
        self.metrics = metrics
    }

    private var clock: KeysmithClock { self.keysmith.clock }

    func recordAPIKeyUse(_ id: APIKeyID) {
        let now = self.clock.now()
        self.pending.withLock { $0.apiKeys[id] = now }
    }

    func recordAdminKeyUse(_ id: AdminKeyID) {
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
            try await self.keysmith.recordUses(apiKeys: batch.apiKeys, adminKeys: batch.adminKeys)
            self.metrics?.usageFlushes.increment()
            self.metrics?.usesWritten.increment(by: batch.apiKeys.count + batch.adminKeys.count)
        } catch {
            self.metrics?.usageFlushFailures.increment()
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
