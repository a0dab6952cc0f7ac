import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import KeysmithServer

/// The handler in a channel of its own: what it answers itself, what it passes on to Hummingbird, and in which order.
/// (CheckTests run every check through it on a real server; these show that it is the one answering.)
@Suite("Checks answered on the event loop")
struct ForwardAuthChannelHandlerTests {
    /// A channel holding only the handler (behind a ``ReadCounter``), with a verifier over an empty index: every key
    /// is unknown.
    static func withChannel(_ body: @escaping @Sendable (EmbeddedChannel, ServerMetrics, ReadCounter) throws -> Void) async throws {
        try await Harness.run(.sqlite) { app in
            let metrics = ServerMetrics()
            let forwardAuth = ForwardAuth(
                verifier: KeyVerifier(
                    index: VerificationIndex(),
                    hasher: KeyHasher(secret: Array(repeating: 7, count: 32)),
                    clock: app.clock.clock,
                    metrics: metrics
                ),
                usage: app.usage,
                health: VerificationHealth(),
                limiter: RateLimiter(
                    configuration: RateLimitConfiguration(),
                    ledger: MemoryRateLimitLedger(),
                    clock: app.clock.clock,
                    logger: Harness.quietLogger
                )
            )
            let channel = EmbeddedChannel(handler: ForwardAuthChannelHandler(forwardAuth: forwardAuth, metrics: metrics, logger: Harness.quietLogger))
            let reads = ReadCounter()
            try channel.pipeline.syncOperations.addHandler(reads, position: .first)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
            #expect(channel.isActive)
            try body(channel, metrics, reads)
            _ = try? channel.finish()
        }
    }

    static func request(_ path: String, method: HTTPRequest.Method = .get, headers: HTTPFields = [:]) -> HTTPRequestPart {
        .head(HTTPRequest(method: method, scheme: nil, authority: "localhost", path: path, headerFields: headers))
    }

    /// The response parts written so far: the status of each head, in order.
    static func answered(_ channel: EmbeddedChannel) throws -> [HTTPResponse.Status] {
        var statuses: [HTTPResponse.Status] = []
        while let part = try channel.readOutbound(as: HTTPResponsePart.self) {
            if case .head(let response) = part { statuses.append(response.status) }
        }
        return statuses
    }

    @Test("A check is answered where it is read, with the envelope, and counted; it never reaches the router")
    func answersChecks() async throws {
        try await Self.withChannel { channel, metrics, _ in
            try channel.writeInbound(Self.request("/v1/auth/check", headers: [.authorization: "Bearer sk-proj-garbage"]))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)

            let head = try #require(try channel.readOutbound(as: HTTPResponsePart.self))
            guard case .head(let response) = head else {
                Issue.record("expected a head, got \(head)")
                return
            }
            #expect(response.status == .unauthorized)
            #expect(response.headerFields[.wwwAuthenticate] == "Bearer")
            #expect(response.headerFields[.init("X-Request-Id")!]?.isEmpty == false)
            let body = try #require(try channel.readOutbound(as: HTTPResponsePart.self))
            guard case .body(let buffer) = body else {
                Issue.record("expected a body, got \(body)")
                return
            }
            #expect(response.headerFields[.contentLength] == String(buffer.readableBytes))
            #expect(String(buffer: buffer).contains(#""code":"invalid_api_key""#))
            #expect(try channel.readOutbound(as: HTTPResponsePart.self) == .end(nil))
            #expect(
                String(decoding: metrics.exposition(), as: UTF8.self).contains(
                    #"keysmith_http_requests_total{route="/v1/auth/check",method="GET",status="401"} 1"#
                )
            )
            #expect(channel.isActive)
        }
    }

    @Test("Other requests, and a check that only looks like one, are passed on untouched")
    func passesOthersOn() async throws {
        try await Self.withChannel { channel, _, _ in
            for (method, path) in [
                (HTTPRequest.Method.get, "/v1/organization/projects"), (.get, "/v1/auth/checks"), (.init("TRACE")!, "/v1/auth/check"),
                (.get, "/dashboard"), (.get, "/v1/auth/check#x"),
            ] {
                let head = Self.request(path, method: method)
                try channel.writeInbound(head)
                try channel.writeInbound(HTTPRequestPart.end(nil))
                #expect(try channel.readInbound(as: HTTPRequestPart.self) == head, "\(method) \(path)")
                #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
                #expect(try Self.answered(channel).isEmpty)
                // Hummingbird answers it.
                try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .notFound)))
                try channel.writeOutbound(HTTPResponsePart.end(nil))
                #expect(try Self.answered(channel) == [.notFound])
            }
        }
    }

    @Test("Pipelined behind a request the router still holds, a check waits its turn there; then checks are answered here again")
    func keepsPipelinedOrder() async throws {
        try await Self.withChannel { channel, _, _ in
            let admin = Self.request("/v1/organization/projects")
            let check = Self.request("/v1/auth/check/v1/chat/completions", method: .post)
            try channel.writeInbound(admin)
            try channel.writeInbound(HTTPRequestPart.end(nil))
            try channel.writeInbound(check)
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "{}")))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            // Both went on to the router, in order, the check's body included: answering the check here would put its
            // response before the admin request's.
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == admin)
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == check)
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .body(ByteBuffer(string: "{}")))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
            #expect(try Self.answered(channel).isEmpty)

            for status in [HTTPResponse.Status.ok, .unauthorized] {
                try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: status)))
                try channel.writeOutbound(HTTPResponsePart.end(nil))
            }
            #expect(try Self.answered(channel) == [.ok, .unauthorized])

            // Nothing outstanding: the next check, body and all, is answered here.
            try channel.writeInbound(check)
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "{}")))
            #expect(try Self.answered(channel).isEmpty)
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
            #expect(try Self.answered(channel) == [.unauthorized])
        }
    }

    @Test("It recognises the route's methods and paths, splitting a suffix as Hummingbird's catch-all does")
    func recognisesChecks() {
        func suffix(_ path: String, _ method: HTTPRequest.Method = .get) -> [String]? {
            ForwardAuthChannelHandler.checkTarget(
                HTTPRequest(method: method, scheme: nil, authority: "localhost", path: path, headerFields: [:])
            )?.suffix.map(String.init)
        }
        for method in ForwardAuth.methods {
            #expect(suffix("/v1/auth/check", method) == [])
        }
        for method in ["TRACE", "CONNECT", "PROPFIND", "get"] {
            #expect(suffix("/v1/auth/check", HTTPRequest.Method(method)!) == nil)
        }
        #expect(suffix("/v1/auth/check?x=1") == [])
        #expect(suffix("/v1/auth/check/") == [])
        #expect(suffix("/v1/auth/check/?x=/v1/models") == [])
        #expect(suffix("/v1/auth/check/v1/chat/completions") == ["v1", "chat", "completions"])
        #expect(suffix("/v1/auth/check//v1//models/?a=/b") == ["v1", "models"])
        let target = ForwardAuthChannelHandler.checkTarget(
            HTTPRequest(method: .get, scheme: nil, authority: "localhost", path: "/v1/auth/check/v1/models?a=/b", headerFields: [:])
        )
        #expect(target?.path == "/v1/auth/check/v1/models")
        for path in ["/v1/auth/checks", "/v1/auth/check#x", "/v1/auth/check/v1#x", "/V1/auth/check", "/v1/auth", "http://h/v1/auth/check", "*"] {
            #expect(suffix(path) == nil, "\(path)")
        }
    }

    @Test("While the channel can take no more writes, reads wait: a client that does not read its answers is held back")
    func holdsReadsWhileUnwritable() async throws {
        try await Self.withChannel { channel, _, reads in
            channel.read()
            #expect(reads.count == 1)
            channel.isWritable = false
            channel.pipeline.fireChannelWritabilityChanged()
            channel.read()
            #expect(reads.count == 1)
            channel.isWritable = true
            channel.pipeline.fireChannelWritabilityChanged()
            #expect(reads.count == 2)
        }
    }

    @Test("Connection: close closes the connection once the answer is written")
    func closes() async throws {
        try await Self.withChannel { channel, _, _ in
            try channel.writeInbound(Self.request("/v1/auth/check", headers: [.connection: "close"]))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try Self.answered(channel) == [.unauthorized])
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
        }
    }

    @Test("A check's body is read and dropped up to 8 KiB; past that it is refused with 413 and the connection closed")
    func limitsBodies() async throws {
        try await Self.withChannel { channel, _, _ in
            try channel.writeInbound(Self.request("/v1/auth/check", method: .post))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 120, count: ForwardAuthChannelHandler.maximumBodySize)))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try Self.answered(channel) == [.unauthorized])
            #expect(channel.isActive)

            try channel.writeInbound(Self.request("/v1/auth/check", method: .post))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 120, count: 6000)))
            #expect(try Self.answered(channel).isEmpty)
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 120, count: 6000)))
            // Refused before the body ends, and the rest of it goes nowhere.
            var parts: [HTTPResponsePart] = []
            while let part = try channel.readOutbound(as: HTTPResponsePart.self) { parts.append(part) }
            guard case .head(let response) = parts.first, case .body(let body) = parts.dropFirst().first else {
                Issue.record("expected a head and a body, got \(parts)")
                return
            }
            #expect(response.status == .contentTooLarge && response.headerFields[.connection] == "close")
            #expect(String(buffer: body).contains(#""code":"request_too_large""#))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(repeating: 120, count: 6000)))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
        }
    }

    @Test("A graceful shutdown waits for the check being read: it is answered first, then the connection may close")
    func finishesChecksOnQuiesce() async throws {
        try await Self.withChannel { channel, _, _ in
            let events = EventRecorder()
            try channel.pipeline.syncOperations.addHandler(events)
            // Idle: the event goes on at once.
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            #expect(events.quiesceEvents == 1)
        }
        try await Self.withChannel { channel, _, _ in
            let events = EventRecorder()
            try channel.pipeline.syncOperations.addHandler(events)
            try channel.writeInbound(Self.request("/v1/auth/check", method: .post))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "he")))
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            #expect(events.quiesceEvents == 0)
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: "llo")))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            channel.pipeline.fireChannelReadComplete()
            channel.embeddedEventLoop.run()
            #expect(try Self.answered(channel) == [.unauthorized])
            #expect(events.quiesceEvents == 1)
        }
    }
}

/// Counts the quiesce events that get past the handler under test.
final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = Any
    private(set) var quiesceEvents = 0

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { self.quiesceEvents += 1 }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Counts the reads that reach the front of the pipeline.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    private(set) var count = 0

    func read(context: ChannelHandlerContext) {
        self.count += 1
        context.read()
    }
}
