import CoreMetrics
import HTTPTypes
import HummingbirdCore
import KeysmithCore
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

/// How long a client connection may sit idle, dribble a request head or stall a request body, and how many may be
/// open at once.
public struct ConnectionLimits: Sendable {
    /// A connection with no request in progress is closed after this long (keep-alive connections and
    /// connections that never send anything alike). So is one whose client has taken nothing the server wrote for
    /// this long.
    public var idleTimeout: Duration
    /// Once a request's first bytes arrive, its head (request line and headers) must be complete within this long.
    public var requestHeadTimeout: Duration
    /// While the server waits for more of a request's body, some must arrive within this long; otherwise the request
    /// is answered 408 and the connection closed.
    public var requestBodyTimeout: Duration
    /// At most this many connections are open. A new connection past the limit closes the one that has made no
    /// progress for longest, among those that are idle or waiting on their client (a stalled body, an answer the
    /// client does not read); only when every connection is busy being answered is the new one refused.
    public var maximumConnections: Int

    public init(
        idleTimeout: Duration = .seconds(60),
        requestHeadTimeout: Duration = .seconds(10),
        requestBodyTimeout: Duration = .seconds(10),
        maximumConnections: Int = ConnectionLimits.defaultMaximumConnections
    ) {
        self.idleTimeout = idleTimeout
        self.requestHeadTimeout = requestHeadTimeout
        self.requestBodyTimeout = requestBodyTimeout
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

    /// The metrics listener's limits: the main listener's deadlines, and a few connections (a scraper needs one).
    public static let metricsListener = ConnectionLimits(maximumConnections: 16)
}

/// A closure kept behind a lock. Boxed in a class: a closure read out of a `Mutex` through its generic `withLock`
/// comes back wrapped in reabstraction thunks, one more pair each time it is read and kept, so that calling it
/// grew slower with every request on the connection (a profile of the gateway found a quarter of its CPU there).
final class ConnectionAction: Sendable {
    let run: @Sendable () -> Void

    init(_ run: @escaping @Sendable () -> Void) {
        self.run = run
    }
}

/// One client connection's state, shared by its channel handlers (on its event loop) and the registry (anywhere).
/// Times are monotonic nanoseconds (``now(_:)``); 0 means "not now".
final class TrackedConnection: Sendable {
    let channel: any Channel
    /// Requests whose head has been read and whose response has not been written to its end. Counted, not flagged:
    /// with pipelining, the second request is in flight when the first one's answer ends.
    let requestsInFlight = Atomic(0)
    /// A request's head has been read and its end has not: its body is on its way.
    let isReadingRequest = Atomic(false)
    /// When the connection last made progress: opened, finished a response, or received some of a request's body.
    let lastActive: Atomic<Int64>
    /// When the first bytes of a request whose head is not complete yet arrived.
    let headStartedAt = Atomic<Int64>(0)
    /// Since when the server has been ready for more of a request's body that has not come.
    let bodyWaitingSince = Atomic<Int64>(0)
    /// Since when the client has not taken what the server wrote (the channel is not writable).
    let unwritableSince = Atomic<Int64>(0)

    /// Whether the connection has closed, and what to run when it does: set by a handler that waits on something
    /// other than its client (the gateway, on its upstream), so that a client that leaves cancels that wait.
    private let closeHandler = Mutex<(isClosed: Bool, action: ConnectionAction?)>((false, nil))

    var isClosed: Bool { self.closeHandler.withLock { $0.isClosed } }

    /// Reads from the socket once, below HTTP/1.1's pipelining handler, which holds reads back while a response is
    /// due: without a read, a client's close is not seen until the response ends. Set by ``ConnectionDeadlines``.
    private let readProbe = Mutex<ConnectionAction?>(nil)

    func setReadProbe(_ probe: (@Sendable () -> Void)?) {
        let action = probe.map(ConnectionAction.init)
        self.readProbe.withLock { $0 = action }
    }

    /// Runs `action` when the connection closes (at once if it has), in place of any action set before; nil clears it.
    /// Setting one asks for a read, so that the close is noticed while the request waits (what it reads, a
    /// pipelined request, waits in the pipeline for its turn).
    func whenClosed(_ action: (@Sendable () -> Void)?) {
        let boxed = action.map(ConnectionAction.init)
        let runNow = self.closeHandler.withLock { state -> Bool in
            if state.isClosed { return boxed != nil }
            state.action = boxed
            return false
        }
        if runNow {
            boxed?.run()
        } else if boxed != nil {
            self.readProbe.withLock { $0 }?.run()
        }
    }

    /// The client closed the connection, or its side of it (Hummingbird allows half-closed connections, so a client's
    /// close arrives as `inputClosed` first): runs the action set, once. Like nginx, Keysmith takes a client that
    /// stops sending while its request waits to have left.
    fileprivate func clientLeft() {
        let action = self.closeHandler.withLock { state -> ConnectionAction? in
            state.isClosed = true
            defer { state.action = nil }
            return state.action
        }
        action?.run()
    }

    init(channel: any Channel, now: Int64) {
        self.channel = channel
        self.lastActive = Atomic(now)
    }

    /// The event loop's monotonic clock in nanoseconds (an embedded loop's own, in tests).
    static func now(_ eventLoop: any EventLoop) -> Int64 { Int64(eventLoop.now.uptimeNanoseconds) }

    /// Since when the connection has made no progress, if it is one the limit may close to admit a new one: idle (no
    /// request in flight), or waiting on its client (for more of a body, or to take what was written). Nil while it
    /// is busy being answered.
    var stalledSince: Int64? {
        if self.requestsInFlight.load(ordering: .relaxed) == 0 { return self.lastActive.load(ordering: .relaxed) }
        let body = self.bodyWaitingSince.load(ordering: .relaxed)
        let writes = self.unwritableSince.load(ordering: .relaxed)
        switch (body, writes) {
        case (0, 0): return nil
        case (0, _): return writes
        case (_, 0): return body
        default: return min(body, writes)
        }
    }
}

/// Every open client connection of one listener, for its connection limit.
final class ConnectionRegistry: Sendable {
    let limits: ConnectionLimits
    /// Which listener, for the log line at the limit.
    let listener: String
    private let logger: Logger
    let metrics: ServerMetrics?
    private let connections = Mutex<[ObjectIdentifier: TrackedConnection]>([:])
    /// When a refusal or eviction was last logged: at most one line every 10 seconds, with counts.
    private let lastNotice = Mutex<(at: Int64, evicted: Int, refused: Int)>((0, 0, 0))

    init(limits: ConnectionLimits, listener: String = "main", logger: Logger, metrics: ServerMetrics?) {
        self.limits = limits
        self.listener = listener
        self.logger = logger
        self.metrics = metrics
    }

    var count: Int { self.connections.withLock { $0.count } }

    /// Admits a new connection, closing the connection stalled longest (``TrackedConnection/stalledSince``) if the
    /// limit is reached; nil when every open connection is busy being answered, in which case the caller closes
    /// the new one.
    func admit(_ channel: any Channel) -> TrackedConnection? {
        let tracked = TrackedConnection(channel: channel, now: TrackedConnection.now(channel.eventLoop))
        let id = ObjectIdentifier(channel)
        let (admitted, evicted) = self.connections.withLock { table -> (Bool, TrackedConnection?) in
            var evicted: TrackedConnection?
            if table.count >= self.limits.maximumConnections {
                var oldest = Int64.max
                for connection in table.values {
                    if let since = connection.stalledSince, since < oldest {
                        oldest = since
                        evicted = connection
                    }
                }
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
            tracked.clientLeft()
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
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let report = self.lastNotice.withLock { notice -> (evicted: Int, refused: Int)? in
            notice.evicted += evicted
            notice.refused += refused
            guard now - notice.at >= 10_000_000_000 else { return nil }
            defer { notice = (now, 0, 0) }
            return (notice.evicted, notice.refused)
        }
        if let report {
            self.logger.warning(
                "At the connection limit: closed stalled or idle connections to admit new ones, and refused new ones while all were busy",
                metadata: [
                    "listener": "\(self.listener)",
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

/// Closes a connection that stays idle past ``ConnectionLimits/idleTimeout``, whose client takes nothing written to
/// it for as long, or whose request head does not arrive within ``ConnectionLimits/requestHeadTimeout`` of its first
/// bytes. Placed before everything else in the pipeline (TLS included), so a slow handshake counts as a slow head.
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
        self.idleTimeout = limits.idleTimeout.nanoseconds
        self.headTimeout = limits.requestHeadTimeout.nanoseconds
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.armIdleTimer(context, at: self.connection.lastActive.load(ordering: .relaxed) + self.idleTimeout)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        self.connection.setReadProbe { eventLoop.execute { bound.value.read() } }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.idleTimer?.cancel()
        self.headTimer?.cancel()
        self.connection.setReadProbe(nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            self.connection.clientLeft()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Bytes that arrive between requests start a head (bytes inside a request are its body).
        if !self.connection.isReadingRequest.load(ordering: .relaxed), self.connection.headStartedAt.load(ordering: .relaxed) == 0 {
            self.connection.headStartedAt.store(TrackedConnection.now(context.eventLoop), ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // The decoder has seen every byte of this read: a head that started but did not finish needs a deadline.
        let started = self.connection.headStartedAt.load(ordering: .relaxed)
        if started != 0, self.headTimer == nil {
            let deadline = started + self.headTimeout
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.headTimer = context.eventLoop.assumeIsolated().scheduleTask(
                in: .nanoseconds(max(0, deadline - TrackedConnection.now(context.eventLoop)))
            ) {
                self.headTimer = nil
                if self.connection.headStartedAt.load(ordering: .relaxed) == started {
                    self.metrics?.connectionsClosedHeadTimeout.increment()
                    loopContext.value.close(promise: nil)
                }
            }
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.connection.unwritableSince.store(0, ordering: .relaxed)
        } else if self.connection.unwritableSince.load(ordering: .relaxed) == 0 {
            self.connection.unwritableSince.store(TrackedConnection.now(context.eventLoop), ordering: .relaxed)
        }
        context.fireChannelWritabilityChanged()
    }

    private func armIdleTimer(_ context: ChannelHandlerContext, at deadline: Int64) {
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(
            in: .nanoseconds(max(0, deadline - TrackedConnection.now(context.eventLoop)))
        ) {
            let context = loopContext.value
            let connection = self.connection
            let now = TrackedConnection.now(context.eventLoop)
            if connection.requestsInFlight.load(ordering: .relaxed) > 0 || connection.headStartedAt.load(ordering: .relaxed) != 0 {
                // Busy, or a head on its way (which has its own deadline, as a body has): only a client that takes
                // none of what is written to it is closed here.
                let unwritable = connection.unwritableSince.load(ordering: .relaxed)
                if unwritable != 0, now - unwritable >= self.idleTimeout {
                    self.metrics?.connectionsClosedWriteStalled.increment()
                    context.close(promise: nil)
                } else {
                    self.armIdleTimer(context, at: (unwritable != 0 ? unwritable : now) + self.idleTimeout)
                }
                return
            }
            let idleUntil = connection.lastActive.load(ordering: .relaxed) + self.idleTimeout
            if idleUntil <= now {
                self.metrics?.connectionsClosedIdle.increment()
                context.close(promise: nil)
            } else {
                self.armIdleTimer(context, at: idleUntil)
            }
        }
    }
}

/// Follows each request from its head to its response's end, after HTTP decoding: counts the requests in flight, and
/// times a request's body while the server waits for it. A body that makes no progress for
/// ``ConnectionLimits/requestBodyTimeout`` is answered 408 (when no other answer is due first) and its connection
/// closed. A response written before its request's body has all arrived (a refusal that needs no body) closes the
/// connection after it, so that no client keeps a connection busy sending a body nobody reads.
///
/// No timer is scheduled for a request whose body arrives in the read that brought its head, as every bodiless
/// request's does.
final class ConnectionActivity: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let registry: ConnectionRegistry
    private var connection: TrackedConnection?
    private let bodyTimeout: Int64
    private var bodyTimer: Scheduled<Void>?
    /// A response head has been written and its end has not.
    private var isAnswering = false
    /// The response being written was begun before its request's body had all arrived: close after it.
    private var closesAfterAnswer = false

    init(registry: ConnectionRegistry) {
        self.registry = registry
        self.bodyTimeout = registry.limits.requestBodyTimeout.nanoseconds
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.connection = self.registry.connection(for: context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.bodyTimer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let connection = self.connection {
            switch self.unwrapInboundIn(data) {
            case .head:
                connection.requestsInFlight.add(1, ordering: .relaxed)
                connection.isReadingRequest.store(true, ordering: .relaxed)
                connection.headStartedAt.store(0, ordering: .relaxed)
            case .body:
                connection.bodyWaitingSince.store(0, ordering: .relaxed)
                connection.lastActive.store(TrackedConnection.now(context.eventLoop), ordering: .relaxed)
            case .end:
                connection.isReadingRequest.store(false, ordering: .relaxed)
                connection.bodyWaitingSince.store(0, ordering: .relaxed)
            }
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let connection = self.connection, self.bodyTimer == nil, connection.isReadingRequest.load(ordering: .relaxed) {
            self.armBodyTimer(context, at: TrackedConnection.now(context.eventLoop) + self.bodyTimeout)
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        // The server is ready for more; if a body is on its way, its client is what is waited for from now.
        if let connection = self.connection, connection.isReadingRequest.load(ordering: .relaxed),
            connection.bodyWaitingSince.load(ordering: .relaxed) == 0
        {
            connection.bodyWaitingSince.store(TrackedConnection.now(context.eventLoop), ordering: .relaxed)
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let connection = self.connection else {
            context.write(data, promise: promise)
            return
        }
        switch self.unwrapOutboundIn(data) {
        case .head(var response):
            self.isAnswering = true
            if connection.isReadingRequest.load(ordering: .relaxed), connection.requestsInFlight.load(ordering: .relaxed) == 1 {
                self.closesAfterAnswer = true
                response.headerFields[.connection] = "close"
                context.write(self.wrapOutboundOut(.head(response)), promise: promise)
                return
            }
        case .body:
            break
        case .end:
            self.isAnswering = false
            connection.lastActive.store(TrackedConnection.now(context.eventLoop), ordering: .relaxed)
            let remaining = connection.requestsInFlight.load(ordering: .relaxed)
            if remaining > 0 { connection.requestsInFlight.store(remaining - 1, ordering: .relaxed) }
            if self.closesAfterAnswer {
                let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(data).whenComplete { result in
                    promise?.completeWith(result)
                    loopContext.value.close(promise: nil)
                }
                return
            }
        }
        context.write(data, promise: promise)
    }

    /// Looks at the body being read when its deadline comes: no progress since the server became ready for more is
    /// a timeout; progress moves the deadline on.
    private func armBodyTimer(_ context: ChannelHandlerContext, at deadline: Int64) {
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.bodyTimer = context.eventLoop.assumeIsolated().scheduleTask(
            in: .nanoseconds(max(0, deadline - TrackedConnection.now(context.eventLoop)))
        ) {
            self.bodyTimer = nil
            guard let connection = self.connection, connection.isReadingRequest.load(ordering: .relaxed) else { return }
            let context = loopContext.value
            let waiting = connection.bodyWaitingSince.load(ordering: .relaxed)
            let now = TrackedConnection.now(context.eventLoop)
            guard waiting != 0, now - waiting >= self.bodyTimeout else {
                // Progress, or the server is not asking for more (it is busy with what it has): look again later.
                self.armBodyTimer(context, at: (waiting != 0 ? waiting : now) + self.bodyTimeout)
                return
            }
            self.registry.metrics?.connectionsClosedBodyTimeout.increment()
            // The 408 is this request's answer only when no other answer is due before it or under way.
            guard !self.isAnswering, connection.requestsInFlight.load(ordering: .relaxed) == 1 else {
                context.close(promise: nil)
                return
            }
            let milliseconds = self.bodyTimeout / 1_000_000
            let seconds = milliseconds % 1000 == 0 ? "\(milliseconds / 1000)" : "\(Double(milliseconds) / 1000)"
            let (headers, body) = OpenAIError(
                status: .requestTimeout,
                message: "The request body stopped arriving: none of it came for \(seconds) seconds.",
                code: "request_timeout",
                headers: [.connection: "close"]
            ).encoded()
            var fields = headers
            fields[.contentLength] = String(body.readableBytes)
            context.write(self.wrapOutboundOut(.head(HTTPResponse(status: .requestTimeout, headerFields: fields))), promise: nil)
            context.write(self.wrapOutboundOut(.body(body)), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in loopContext.value.close(promise: nil) }
        }
    }
}
