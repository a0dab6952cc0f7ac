import CoreMetrics
import KeysmithCore
import KeysmithDomain
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps the ``VerificationIndex`` current with the database, through the change log.
///
/// Every write records what it changed in the change log, in its own transaction (see ``Keysmith``); the
/// feed is the one place that applies those entries to the index, in order, one batch at a time. It applies them:
///
/// - right after each write made through this server, before the write's response is sent (``Keysmith`` calls
///   ``applyCommittedChanges(_:at:)``, as its ``VerificationChangeApplier``), so the very next check sees the change;
/// - as soon as another process's write commits, on PostgreSQL: the feed LISTENs for the notification that every
///   write sends (``VerificationSource/listenForChanges(onListening:onNotification:)``), on a connection of its own;
/// - every ``Configuration/pollInterval``, for writes made by other processes without a push (the offline `keysmith`
///   commands on SQLite), and as a safety net.
///
/// When the listening connection is lost, the feed reconnects with a growing pause, and once it listens again it
/// catches up from the last position it applied, so no change is missed; each loss is logged and counted. While the
/// feed cannot read the log, or is not listening, ``VerificationHealth`` says the verification state may be stale,
/// and checks say so in a header.
///
/// Applying a change reads that object's current state from the database, so applying one twice, or a batch out
/// of order, is harmless, and a batch is deduplicated. The feed remembers the last position it applied; when the
/// log has been pruned past it (a process that was cut off for longer than ``ChangeLogPruning``'s retention), it loads
/// the whole index again.
///
/// On PostgreSQL the log can be read only up to the oldest transaction still in progress (``ChangePosition``), so a
/// write through this server may commit while the log cannot yet be read as far as its entries (another, earlier
/// transaction is still open). Its own changes are then applied directly, from the database, before its response is
/// sent; other replicas apply them once that earlier transaction ends.
///
/// When a write through this server has committed but the feed cannot read what it changed (the database went
/// away right after the commit), the write's changes are applied the safe way instead, without reading: its keys
/// are suspended (out of the index), its project counts as archived, its membership as ended, its admin key as gone.
/// So a revocation is never acknowledged while this replica goes on accepting what it revoked; a change that granted
/// something waits, refused, until the feed can read it. Each suspended change is applied properly, from the
/// database, by the first catch-up that succeeds.
final class ChangeFeed: Service, VerificationChangeApplier {
    struct Configuration: Sendable {
        /// How often the log is read for changes made by other processes.
        var pollInterval: Duration = .milliseconds(250)
    }

    static let pageSize = 10_000
    static let batchSize = 1_000
    /// How soon the log is read again when it held entries that could not be read yet.
    static let quickRead = Duration.milliseconds(10)

    private let store: any VerificationSource
    private let index: VerificationIndex
    private let configuration: Configuration
    private let logger: Logger
    private let metrics: ServerMetrics?
    /// Whether what the index holds may be behind the database.
    let health = VerificationHealth()
    /// One applier at a time, so that a change read later is applied later.
    private let lock = AsyncLock()
    private let state = Mutex(State())

    private struct State {
        var appliedPosition = ChangePosition.start
        var isFailing = false
        /// PostgreSQL: whether the notifications' connection listens now, and whether it ever has.
        var isListening = false
        var hasListened = false
        var isListenerFailing = false
        /// How many times the listener has started listening.
        var listens = 0
        /// Changes applied the safe way after their write's catch-up failed, to apply properly once the log can be read.
        var suspended: Set<KeysmithChange> = []
        /// Writes through this server that committed and asked to be applied, numbered as they ask (after their
        /// commit); and the highest number a successful catch-up that started after it has covered.
        var committedWrites: UInt64 = 0
        var coveredWrites: UInt64 = 0
        /// The changes of the writes waiting to be covered, by their number, with where the log holds them: a
        /// catch-up that cannot read the log as far applies them directly.
        var ownWrites: [UInt64: (position: ChangePosition, changes: [KeysmithChange])] = [:]
        /// Whether the last read left committed entries it could not read yet (behind a transaction in progress):
        /// the feed reads again soon, rather than at the next poll.
        var isLogAhead = false

        func isStale(pushes: Bool) -> Bool { self.isFailing || (pushes && !self.isListening) }
    }

    init(
        store: any VerificationSource,
        index: VerificationIndex,
        configuration: Configuration = .init(),
        logger: Logger,
        metrics: ServerMetrics?
    ) {
        self.store = store
        self.index = index
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
    }

    /// The last change log position applied.
    var appliedPosition: ChangePosition { self.state.withLock { $0.appliedPosition } }

    /// Loads the whole index from the database. The server does this once before it starts serving.
    func load() async throws {
        try await self.lock.withLock { try await self.reload() }
    }

    private func reload() async throws {
        // The log's position first: every change after it is applied later, so the index is never older than it.
        let position = try await self.store.latestChangePosition()
        var builder = VerificationIndex.Builder()
        var after: APIKeyID?
        while true {
            let page = try await self.store.keyVerificationStates(after: after, limit: Self.pageSize)
            for state in page { builder.add(state) }
            guard page.count == Self.pageSize, let last = page.last else { break }
            after = last.keyID
        }
        for credential in try await self.store.adminKeyCredentials() {
            builder.add(credential)
        }
        for (projectID, permissions) in try await self.store.everyProjectsModelPermissions() {
            builder.add(permissions, projectID: projectID)
        }
        for (projectID, settings) in try await self.store.everyProjectsRateLimitSettings() {
            builder.add(settings, projectID: projectID)
        }
        self.index.install(builder)
        self.state.withLock { $0.appliedPosition = position }
        self.metrics?.indexChanged(self.index)
    }

    /// How many writes through this server have asked to be applied (for tests).
    var committedWrites: UInt64 { self.state.withLock { $0.committedWrites } }

    /// Applies every change committed before it was called: on PostgreSQL, where the log can be read only up to the
    /// oldest transaction still in progress, it reads again until it has read as far as the newest entry its first
    /// read saw.
    func catchUp() async throws {
        let newest = try await self.lock.withLock { try await self.catchUpHoldingLock() }
        while self.appliedPosition < newest {
            try await Task.sleep(for: .milliseconds(2))
            try await self.lock.withLock { _ = try await self.catchUpHoldingLock() }
        }
    }

    /// Applies every change committed before the write numbered `write` asked (see ``applyCommittedChanges(_:)``),
    /// and anything committed since: at once, when a catch-up that started after that write committed has already
    /// succeeded. So concurrent writes share catch-ups rather than each queueing a read of the log behind the others:
    /// those waiting while one catch-up runs are all covered by the next.
    private func catchUp(coveringWrite write: UInt64) async throws {
        try await self.lock.withLock {
            guard self.state.withLock({ $0.coveredWrites < write }) else { return }
            try await self.catchUpHoldingLock()
        }
    }

    /// Returns the newest entry the log held, read or not.
    @discardableResult
    private func catchUpHoldingLock() async throws -> ChangePosition {
        // Every write numbered up to here committed before this catch-up's first read of the log, which sees it
        // unless an earlier transaction is still in progress; its own changes are applied directly then.
        let (covers, own) = self.state.withLock { state in
            (state.committedWrites, state.ownWrites.filter { $0.key <= state.committedWrites })
        }
        let newest = try await self.readLog()
        let applied = self.appliedPosition
        let unread = Set(own.values.filter { $0.position > applied }.flatMap(\.changes))
        try await self.apply(unread)
        if !unread.isEmpty { self.metrics?.indexChanged(self.index) }
        self.state.withLock { state in
            state.coveredWrites = max(state.coveredWrites, covers)
            for write in own.keys { state.ownWrites[write] = nil }
        }
        return newest
    }

    /// Returns the newest entry the log held, read or not.
    private func readLog() async throws -> ChangePosition {
        var after = self.appliedPosition
        while true {
            let batch = try await self.store.changes(after: after, limit: Self.batchSize)
            if batch.missedPrunedEntries {
                // Entries between what we applied and what the log still holds were pruned: we cannot know
                // which objects they touched.
                self.logger.warning(
                    "The change log no longer holds changes this server has not applied; loading the verification state again",
                    metadata: ["applied_position": "\(after)"]
                )
                self.metrics?.changeFeedReloads.increment()
                try await self.reload()
                return batch.newest
            }
            try await self.apply(Set(batch.records.map(\.change)))
            after = batch.position
            self.state.withLock { $0.appliedPosition = batch.position }
            if !batch.records.isEmpty { self.metrics?.changesApplied.increment(by: batch.records.count) }
            guard batch.isCut else {
                self.state.withLock { $0.isLogAhead = batch.newest > batch.position }
                try await self.applySuspended()
                self.metrics?.indexChanged(self.index)
                return batch.newest
            }
        }
    }

    /// Applies the changes suspended while the log could not be read, from the database, as any change is applied.
    private func applySuspended() async throws {
        let suspended = self.state.withLock { $0.suspended }
        guard !suspended.isEmpty else { return }
        try await self.apply(suspended)
        self.state.withLock { $0.suspended.subtract(suspended) }
        self.logger.notice(
            "Applied the changes that were suspended while the change log could not be read",
            metadata: ["changes": "\(suspended.count)"]
        )
    }

    /// Applies `changes` without reading the database, in the way that refuses rather than grants: what a write did
    /// when the feed cannot read it. Kept to be applied properly by the next catch-up that succeeds.
    private func suspend(_ changes: [KeysmithChange]) {
        var keys: Set<APIKeyID> = []
        for change in changes {
            switch change {
            case .apiKey(let id): keys.insert(id)
            case .project(let id): self.index.setProjectArchived(id, true)
            case .membership(let projectID, let userID): self.index.setProjectAccess(projectID: projectID, userID: userID, false)
            case .adminKey(let id): self.index.updateAdminKey(id: id, nil)
            }
        }
        if !keys.isEmpty { self.index.suspendKeys(keys) }
        self.state.withLock { $0.suspended.formUnion(changes) }
        self.metrics?.changesSuspended.increment(by: changes.count)
    }

    /// Reads the changed objects' current state and puts it in the index: keys a few hundred at a time, two reads
    /// for each batch (a batch of the log's, or the writes a catch-up covers, need not read each key twice).
    private func apply(_ changes: Set<KeysmithChange>) async throws {
        var keys: [APIKeyID] = []
        for change in changes {
            switch change {
            case .apiKey(let id):
                keys.append(id)
            case .project(let id):
                // Its permissions first: a project archived meanwhile is refused either way.
                self.index.setModelPermissions(id, try await self.store.modelPermissions(projectID: id))
                self.index.setRateLimitSettings(id, try await self.store.rateLimitSettings(projectID: id))
                self.index.setProjectArchived(id, try await self.store.isProjectArchived(projectID: id) ?? false)
            case .membership(let projectID, let userID):
                let isMember = try await self.store.isProjectMember(projectID: projectID, userID: userID)
                self.index.setProjectAccess(projectID: projectID, userID: userID, isMember)
            case .adminKey(let id):
                self.index.updateAdminKey(id: id, try await self.store.adminKeyCredential(id: id))
            }
        }
        var remaining = keys[...]
        while !remaining.isEmpty {
            let batch = Array(remaining.prefix(Self.keysPerRead))
            remaining = remaining.dropFirst(batch.count)
            // Revoked secrets first: a rotation between the two reads writes a later entry, applied after this one.
            let revoked = try await self.store.revokedSecretHashes(keyIDs: batch)
            let states = Dictionary(try await self.store.keyVerificationStates(keyIDs: batch).map { ($0.keyID, $0) }) { first, _ in first }
            for id in batch {
                self.index.updateKey(states[id], revokedSecretHashes: revoked[id] ?? [])
            }
        }
    }

    /// How many keys one read of their states covers.
    static let keysPerRead = 500

    /// After a write through this server that recorded `written`: applies it, and anything committed before it, so
    /// that the write's response goes out only once checks see it. When that fails, `written` is applied the safe way
    /// (see the type's documentation) before this returns, and the failure is logged; the next poll tries again.
    func applyCommittedChanges(_ written: [KeysmithChange] = [], at position: ChangePosition? = nil) async {
        let write = self.state.withLock { state in
            state.committedWrites += 1
            if let position, !written.isEmpty {
                state.ownWrites[state.committedWrites] = (position, written)
            }
            return state.committedWrites
        }
        do {
            try await self.catchUp(coveringWrite: write)
            self.recovered()
        } catch {
            // Shutting down cancels the catch-up; the write is committed all the same, and its revocations must hold.
            if !written.isEmpty {
                await self.lock.withLock {
                    self.suspend(written)
                    _ = self.state.withLock { $0.ownWrites.removeValue(forKey: write) }
                }
            }
            if error is CancellationError || Task.isCancelled { return }
            self.failed(error)
        }
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            if self.store.pushesChanges {
                group.addTask { await self.listen() }
            }
            group.addTask { await self.poll() }
        }
    }

    /// Reads the log every poll interval until the server shuts down.
    private func poll() async {
        var quickly = Self.quickRead
        while !Task.isShuttingDownGracefully {
            // Entries that committed behind a transaction still in progress are read again soon (sooner than a
            // poll), each time a little later while that transaction stays open.
            let interval: Duration
            if self.state.withLock({ $0.isLogAhead }) {
                interval = min(quickly, self.configuration.pollInterval)
                quickly = quickly * 2
            } else {
                interval = self.configuration.pollInterval
                quickly = Self.quickRead
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            await self.applyCommittedChanges()
        }
    }

    /// Listens for other processes' commits, reconnecting after a pause that grows to 5 s while the connection keeps
    /// failing, until the server shuts down. Each time it listens again it catches up from the last position it
    /// applied, so a lost connection loses no change.
    private func listen() async {
        var pause = Duration.milliseconds(100)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let listensBefore = self.state.withLock { $0.listens }
            do {
                try await cancelWhenGracefulShutdown {
                    try await self.store.listenForChanges(
                        onListening: {
                            self.listening()
                            await self.applyCommittedChanges()
                        },
                        onNotification: { await self.applyCommittedChanges() }
                    )
                }
                if Task.isShuttingDownGracefully || Task.isCancelled { break }
                self.stoppedListening(error: nil)
            } catch {
                if Task.isShuttingDownGracefully || Task.isCancelled { break }
                self.stoppedListening(error: error)
            }
            // A connection that listened before it failed starts the pauses over; one that never got to listen
            // doubles them.
            if self.state.withLock({ $0.listens }) > listensBefore {
                pause = .milliseconds(100)
            }
            do {
                try await cancelWhenGracefulShutdown { [pause] in try await Task.sleep(for: pause) }
            } catch {
                break
            }
            pause = min(pause * 2, .seconds(5))
        }
    }

    private func listening() {
        let reconnected = self.state.withLock { state in
            defer {
                state.isListening = true
                state.hasListened = true
                state.isListenerFailing = false
                state.listens += 1
            }
            return state.hasListened
        }
        if reconnected {
            self.logger.notice("Listening for changes again; catching up on what was missed while not listening")
        }
        self.updateHealth()
    }

    private func stoppedListening(error: (any Error)?) {
        let isFirst = self.state.withLock { state in
            defer {
                state.isListening = false
                state.isListenerFailing = true
            }
            return !state.isListenerFailing
        }
        self.metrics?.changeListenerLosses.increment()
        if isFirst {
            self.logger.error(
                "Lost the connection that listens for other processes' changes; reconnecting. Until then changes made elsewhere apply only at the next poll",
                metadata: ["error": "\(error.map { "\($0)" } ?? "the connection closed")"]
            )
        }
        self.updateHealth()
    }

    private func updateHealth() {
        let stale = self.state.withLock { $0.isStale(pushes: self.store.pushesChanges) }
        self.health.setStale(stale)
        self.metrics?.verificationStale.record(stale ? 1 : 0)
    }

    /// Logs the first failure of a run of them, not one line per poll.
    private func failed(_ error: any Error) {
        self.metrics?.changeFeedErrors.increment()
        let isFirst = self.state.withLock { state in
            defer { state.isFailing = true }
            return !state.isFailing
        }
        if isFirst {
            self.logger.error(
                "Could not apply changes to the verification state; checks answer from the last known state until this recovers",
                metadata: ["error": "\(error)"]
            )
        }
        self.updateHealth()
    }

    private func recovered() {
        let wasFailing = self.state.withLock { state in
            defer { state.isFailing = false }
            return state.isFailing
        }
        if wasFailing {
            self.logger.notice("Changes are applied to the verification state again")
            self.updateHealth()
        }
    }
}

/// Whether the in-memory verification state may be behind the database: the change feed cannot read the change log,
/// or (PostgreSQL) is not listening for other processes' changes. Checks still answer, from the last known state,
/// and say so (`X-Keysmith-Stale: true`).
final class VerificationHealth: Sendable {
    private let stale = Atomic(false)

    var isStale: Bool { self.stale.load(ordering: .relaxed) }

    func setStale(_ value: Bool) {
        self.stale.store(value, ordering: .relaxed)
    }
}
