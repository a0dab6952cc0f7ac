import HTTPTypes
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Synchronization
import Testing

@testable import KeysmithServer

/// The connection guard's bookkeeping in a channel of its own (test_connections.py holds it to its deadlines on a
/// real server).
@Suite("Connection guard")
struct ConnectionGuardTests {
    static func withConnection(
        limits: ConnectionLimits = ConnectionLimits(maximumConnections: 4),
        _ body: (EmbeddedChannel, TrackedConnection, ConnectionRegistry) throws -> Void
    ) throws {
        let registry = ConnectionRegistry(limits: limits, logger: Logger(label: "test"), metrics: nil)
        let channel = EmbeddedChannel()
        // Embedded time starts at 0, which the guard reads as "not now".
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let tracked = try #require(registry.admit(channel))
        try channel.pipeline.syncOperations.addHandler(ConnectionActivity(registry: registry))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
        try body(channel, tracked, registry)
        _ = try? channel.finish()
    }

    static func head(_ path: String = "/healthz") -> HTTPRequestPart {
        .head(HTTPRequest(method: .post, scheme: nil, authority: "localhost", path: path, headerFields: [:]))
    }

    @Test("Requests in flight are counted: a second pipelined request keeps the connection busy after the first's answer")
    func countsRequestsInFlight() throws {
        try Self.withConnection { channel, tracked, _ in
            try channel.writeInbound(Self.head())
            try channel.writeInbound(HTTPRequestPart.end(nil))
            try channel.writeInbound(Self.head())
            #expect(tracked.requestsInFlight.load(ordering: .relaxed) == 2)
            try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
            try channel.writeOutbound(HTTPResponsePart.end(nil))
            #expect(tracked.requestsInFlight.load(ordering: .relaxed) == 1)
            #expect(tracked.isReadingRequest.load(ordering: .relaxed) == true)
            try channel.writeInbound(HTTPRequestPart.end(nil))
            try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
            try channel.writeOutbound(HTTPResponsePart.end(nil))
            #expect(tracked.requestsInFlight.load(ordering: .relaxed) == 0)
            #expect(tracked.stalledSince != nil)
        }
    }

    @Test("A busy connection is not evictable until it waits on its client: a body that does not come, or unread answers")
    func stalledConnectionsAreEvictable() throws {
        try Self.withConnection { channel, tracked, _ in
            try channel.writeInbound(Self.head())
            #expect(tracked.stalledSince == nil)
            // The server asks for more of the body.
            channel.read()
            let since = try #require(tracked.stalledSince)
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "x")))
            #expect(tracked.stalledSince == nil)
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(tracked.stalledSince == nil)
            tracked.unwritableSince.store(since, ordering: .relaxed)
            #expect(tracked.stalledSince == since)
        }
    }

    @Test("At the limit the connection stalled longest goes; when all are busy being answered, the new one is refused")
    func evictsTheStalledLongest() throws {
        let registry = ConnectionRegistry(limits: ConnectionLimits(maximumConnections: 2), logger: Logger(label: "test"), metrics: nil)
        let busy = EmbeddedChannel()
        let stalled = EmbeddedChannel()
        for channel in [busy, stalled] { channel.embeddedEventLoop.advanceTime(by: .seconds(1)) }
        let first = try #require(registry.admit(busy))
        let second = try #require(registry.admit(stalled))
        first.requestsInFlight.store(1, ordering: .relaxed)
        second.requestsInFlight.store(1, ordering: .relaxed)
        #expect(registry.admit(EmbeddedChannel()) == nil)
        second.bodyWaitingSince.store(TrackedConnection.now(stalled.eventLoop), ordering: .relaxed)
        let third = EmbeddedChannel()
        #expect(registry.admit(third) != nil)
        #expect(registry.connection(for: stalled) == nil)
        #expect(registry.connection(for: busy) != nil)
    }

    @Test("An answer written before its request's body has arrived closes the connection after it")
    func closesAfterAnEarlyAnswer() throws {
        try Self.withConnection { channel, _, _ in
            try channel.writeInbound(Self.head())
            try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .unauthorized)))
            guard case .head(let response) = try channel.readOutbound(as: HTTPResponsePart.self) else {
                Issue.record("no head written")
                return
            }
            #expect(response.headerFields[.connection] == "close")
            try channel.writeOutbound(HTTPResponsePart.end(nil))
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
        }
    }

    @Test("A request whose body makes no progress is answered 408 and closed")
    func bodyTimeout() throws {
        let limits = ConnectionLimits(requestBodyTimeout: .seconds(5), maximumConnections: 4)
        try Self.withConnection(limits: limits) { channel, _, _ in
            try channel.writeInbound(Self.head())
            channel.read()
            channel.pipeline.fireChannelReadComplete()
            channel.embeddedEventLoop.advanceTime(by: .seconds(4))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "x")))
            channel.read()
            // Progress moved the deadline on.
            channel.embeddedEventLoop.advanceTime(by: .seconds(4))
            #expect(channel.isActive)
            channel.embeddedEventLoop.advanceTime(by: .seconds(2))
            guard case .head(let response) = try channel.readOutbound(as: HTTPResponsePart.self) else {
                Issue.record("no 408 written")
                return
            }
            #expect(response.status == .requestTimeout)
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
        }
    }
}
