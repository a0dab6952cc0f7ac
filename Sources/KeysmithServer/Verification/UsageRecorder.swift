import CoreMetrics
import KeysmithCore
import KeysmithDomain
import Logging
public import ServiceLifecycle
import Synchronization

/// Collects key uses and the gateway's model usage in memory and writes them in batches, so that neither
/// `last_used_at` nor a request's tokens cost a database write per request. A service in the application's group: it flushes every `interval` seconds and once more on graceful
/// shutdown, after the HTTP server has stopped taking requests.
public final class UsageRecorder: Service, Sendable {
    private struct Pending {
        var apiKeys: [APIKeyID: UnixSeconds] = [:]
        var adminKeys: [AdminKeyID: UnixSeconds] = [:]
        var models: [ModelUsageKey: ModelUsageCounts] = [:]

        var isEmpty: Bool { self.apiKeys.isEmpty && self.adminKeys.isEmpty && self.models.isEmpty }
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

    /// Adds one model request's usage to its minute's counts (`counts` is ``ModelUsageCounts/request(_:)``'s).
    func recordModelUsage(_ key: ModelUsageKey, _ counts: ModelUsageCounts) {
        self.pending.withLock { $0.models[key, default: ModelUsageCounts()] += counts }
    }

    /// The model usage not yet written (tests look at it).
    var pendingModelUsage: [ModelUsageKey: ModelUsageCounts] {
        self.pending.withLock { $0.models }
    }

    /// Writes every pending use: key uses in one transaction, model usage in another. What fails to write is kept
    /// for the next flush (model usage added back to what came in meanwhile, so that nothing is lost or counted twice).
    public func flush() async throws {
        let batch = self.pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        guard !batch.isEmpty else { return }
        var failure: (any Error)?
        if !batch.apiKeys.isEmpty || !batch.adminKeys.isEmpty {
            do {
                try await self.keysmith.recordUses(apiKeys: batch.apiKeys, adminKeys: batch.adminKeys)
                self.metrics?.usesWritten.increment(by: batch.apiKeys.count + batch.adminKeys.count)
            } catch {
                failure = error
                self.pending.withLock { pending in
                    pending.apiKeys.merge(batch.apiKeys) { max($0, $1) }
                    pending.adminKeys.merge(batch.adminKeys) { max($0, $1) }
                }
            }
        }
        if !batch.models.isEmpty {
            do {
                try await self.keysmith.recordModelUsage(batch.models)
            } catch {
                failure = failure ?? error
                self.pending.withLock { pending in
                    for (key, counts) in batch.models { pending.models[key, default: ModelUsageCounts()] += counts }
                }
            }
        }
        if let failure {
            self.metrics?.usageFlushFailures.increment()
            throw failure
        }
        self.metrics?.usageFlushes.increment()
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
