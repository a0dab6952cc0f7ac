import CoreMetrics
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// How long a client connection may sit idle or dribble a request head, and how many may be open at once.
public struct ConnectionLimits: Sendable {
    /// A connection with no request in progress is closed after this long (keep-alive connections and
    /// connections that never send anything alike).
    public var idleTimeout: Duration
    /// Once a request's first bytes arrive, its head (request line and headers) must be complete within this long.
    public var requestHeadTimeout: Duration
    /// At most this many connections are open. A new connection past the limit closes the one that has been idle
    /// longest; only when every connection is busy with a request is the new one refused.
    public var maximumConnections: Int

    public init(
        idleTimeout: Duration = .seconds(60),
        requestHeadTimeout: Duration = .seconds(10),
        maximumConnections: Int = ConnectionLimits.defaultMaximumConnections
    ) {
        self.idleTimeout = idleTimeout
        self.requestHeadTimeout = requestHeadTimeout
        self.maximumConnections = maximumConnections
    }

    /// The process's open-file limit less room for the database, listeners and logs: a server at its connection
    /// limit still has descriptors to accept with, answer on, and write its database with.
    public static var defaultMaximumConnections: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 10_000 }
        let files = Int(clamping: limit.rlim_cur)
        return max(16, min(files - 128, files * 9 / 10))
    }
}

/// One client connection's state, shared by its channel handlers (on its event loop) and the registry (anywhere).
final class TrackedConnection: Sendable {
    let channel: any Channel
    /// A request is being read or answered.
    let isBusy = Atomic(false)
    /// When the connection was last active (opened, or finished a response), in monotonic nanoseconds.
    let lastActive: Atomic<Int64>
    /// When the first bytes of a request whose head is not complete yet arrived; 0 when there are none.
    let headStartedAt = Atomic<Int64>(0)

    init(channel: any Channel, now: Int64) {
        self.channel = channel
        self.lastActive = Atomic(now)
    }

    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds) }
}

/// Every open client connection, for the connection limit.
final class ConnectionRegistry: Sendable {
    let limits: ConnectionLimits
    private let logger: Logger
    let metrics: ServerMetrics?
    private let connections = Mutex<[ObjectIdentifier: TrackedConnection]>([:])
    /// When a refusal or eviction was last logged: at most one line every 10 seconds, with counts.
    private let lastNotice = Mutex<(at: Int64, evicted: Int, refused: Int)>((0, 0, 0))

    init(limits: ConnectionLimits, logger: Logger, metrics: ServerMetrics?) {
        self.limits = limits
        self.logger = logger
        self.metrics = metrics
    }

    var count: Int { self.connections.withLock { $0.count } }

    /// Admits a new connection, closing the longest-idle one if the limit is reached; nil when every open
    /// connection is busy, in which case the caller closes the new one.
    func admit(_ channel: any Channel) -> TrackedConnection? {
        let tracked = TrackedConnection(channel: channel, now: TrackedConnection.now())
        let id = ObjectIdentifier(channel)
        let (admitted, evicted) = self.connections.withLock { table -> (Bool, TrackedConnection?) in
            var evicted: TrackedConnection?
            if table.count >= self.limits.maximumConnections {
                evicted = table.values.lazy.filter { !$0.isBusy.load(ordering: .relaxed) }
                    .min { $0.lastActive.load(ordering: .relaxed) < $1.lastActive.load(ordering: .relaxed) }
                guard let victim = evicted else { return (false, nil) }
                table[ObjectIdentifier(victim.channel)] = nil
            }
            table[id] = tracked
            return (true, evicted)
        }
        if let evicted {
            evicted.channel.close(promise: nil)
            self.metrics?.connectionsEvicted.increment()
            self.notice(evicted: 1, refused: 0)
        }
        guard admitted else {
            self.metrics?.connectionsRefused.increment()
            self.notice(evicted: 0, refused: 1)
            return nil
        }
        self.metrics?.connectionsOpen.increment()
        channel.closeFuture.whenComplete { _ in
            self.connections.withLock { table in
                if table[id] === tracked { table[id] = nil }
            }
            self.metrics?.connectionsOpen.decrement()
        }
        return tracked
    }

    func connection(for channel: any Channel) -> TrackedConnection? {
        self.connections.withLock { $0[ObjectIdentifier(channel)] }
    }

    private func notice(evicted: Int, refused: Int) {
        let now = TrackedConnection.now()
        let report = self.lastNotice.withLock { notice -> (evicted: Int, refused: Int)? in
            notice.evicted += evicted
            notice.refused += refused
            guard now - notice.at >= 10_000_000_000 else { return nil }
            defer { notice = (now, 0, 0) }
            return (notice.evicted, notice.refused)
        }
        if let report {
            self.logger.warning(
                "At the connection limit: closed idle connections to admit new ones, and refused new ones while all were busy",
                metadata: [
                    "maximum_connections": "\(self.limits.maximumConnections)",
                    "evicted": "\(report.evicted)",
                    "refused": "\(report.refused)",
                ]
            )
        }
    }
}

/// A server child channel (plain HTTP/1.1, or TLS around it) whose connections are admitted by a
/// ``ConnectionRegistry`` and held to its deadlines: first in each pipeline, ``ConnectionDeadlines`` sees every byte
/// that arrives; after HTTP decoding, ``ConnectionActivity`` sees where requests begin and end.
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let registry: ConnectionRegistry

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard let tracked = self.registry.admit(channel) else {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(ConnectionRefused())
        }
        do {
            try channel.pipeline.syncOperations.addHandler(
                ConnectionDeadlines(connection: tracked, limits: self.registry.limits, metrics: self.registry.metrics)
            )
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return self.base.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await self.base.handle(value: value, logger: logger)
    }
}

/// The connection limit was reached and every connection was busy.
struct ConnectionRefused: Error {}

/// Closes a connection that stays idle past ``ConnectionLimits/idleTimeout``, or whose request head does not
/// arrive within ``ConnectionLimits/requestHeadTimeout`` of its first bytes. Placed before everything else in the
/// pipeline (TLS included), so a slow handshake counts as a slow head.
///
/// Nothing is scheduled per request: the idle timer is re-armed only when it fires early, and the head timer only
/// when a read ends with a head still incomplete.
final class ConnectionDeadlines: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: TrackedConnection
    private let idleTimeout: Int64
    private let headTimeout: Int64
    private let metrics: ServerMetrics?
    private var idleTimer: Scheduled<Void>?
    private var headTimer: Scheduled<Void>?

    init(connection: TrackedConnection, limits: ConnectionLimits, metrics: ServerMetrics?) {
        self.connection = connection
        self.idleTimeout = Self.nanoseconds(limits.idleTimeout)
        self.headTimeout = Self.nanoseconds(limits.requestHeadTimeout)
        self.metrics = metrics
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.armIdleTimer(context, at: self.connection.lastActive.load(ordering: .relaxed) + self.idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.idleTimer?.cancel()
        self.headTimer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !self.connection.isBusy.load(ordering: .relaxed), self.connection.headStartedAt.load(ordering: .relaxed) == 0 {
            self.connection.headStartedAt.store(TrackedConnection.now(), ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The decoder has seen every byte of this read: a head that started but did not finish needs a deadline.
        let started = self.connection.headStartedAt.load(ordering: .relaxed)
        if started != 0, self.headTimer == nil, !self.connection.isBusy.load(ordering: .relaxed) {
            let deadline = started + self.headTimeout
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.headTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, deadline - TrackedConnection.now()))) {
                self.headTimer = nil
                let context = loopContext.value
                if !self.connection.isBusy.load(ordering: .relaxed), self.connection.headStartedAt.load(ordering: .relaxed) == started {
                    self.metrics?.connectionsClosedHeadTimeout.increment()
                    context.close(promise: nil)
                }
            }
        }
        context.fireChannelReadComplete()
    }

    private func armIdleTimer(_ context: ChannelHandlerContext, at deadline: Int64) {
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(0, deadline - TrackedConnection.now()))) {
            let context = loopContext.value
            let connection = self.connection
            guard !connection.isBusy.load(ordering: .relaxed), connection.headStartedAt.load(ordering: .relaxed) == 0 else {
                // Busy, or a head on its way (which has its own deadline): look again a whole timeout from now.
                self.armIdleTimer(context, at: TrackedConnection.now() + self.idleTimeout)
                return
            }
            let idleUntil = connection.lastActive.load(ordering: .relaxed) + self.idleTimeout
            if idleUntil <= TrackedConnection.now() {
                self.metrics?.connectionsClosedIdle.increment()
                context.close(promise: nil)
            } else {
                self.armIdleTimer(context, at: idleUntil)
            }
        }
    }
}

/// Marks where each request begins (its head is decoded) and ends (its response is written), for the deadlines
/// and for the connection limit's choice of which connection to close.
final class ConnectionActivity: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let registry: ConnectionRegistry
    private var connection: TrackedConnection?

    init(registry: ConnectionRegistry) {
        self.registry = registry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.connection = self.registry.connection(for: context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = self.unwrapInboundIn(data), let connection = self.connection {
            connection.isBusy.store(true, ordering: .relaxed)
            connection.headStartedAt.store(0, ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), let connection = self.connection {
            connection.lastActive.store(TrackedConnection.now(), ordering: .relaxed)
            connection.isBusy.store(false, ordering: .relaxed)
        }
        context.write(data, promise: promise)
    }
}
