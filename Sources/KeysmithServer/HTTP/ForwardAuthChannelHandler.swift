import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTPTypes

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Answers `/v1/auth/check` on the connection's event loop, below Hummingbird's router.
///
/// A gateway sends one check per request it forwards, so a check's cost is mostly the HTTP stack's: Hummingbird's
/// request and response objects, its router and middleware, a task per connection and the hops between the event
/// loop and Swift's cooperative pool (docs/benchmarks.md measured 94% of a check's CPU there). This handler sits in
/// the pipeline right after HTTP decoding and answers a check where it is read, with the same ``ForwardAuth`` the
/// route uses, and does what the route's middleware does for it: the request id (the client's `X-Request-Id` when
/// usable, else a new one, returned in the response), `Date`, the request counted in `/metrics`, and the access log
/// line. Every other request goes on to Hummingbird untouched.
///
/// A check is answered here only when the connection has no earlier request still in Hummingbird's hands, so that
/// responses leave in the order requests came (HTTP/1.1 pipelining); otherwise, and for a path this handler does not
/// recognise as the check's exactly (`/v1/auth/check`, with a query or a suffix after a slash), the route answers it
/// instead, identically. `Connection: close` closes the connection after the answer, as Hummingbird does. A check's
/// body (the original request's, when a gateway forwards it) is kept for the answer, up to ``maximumBodySize``; a
/// larger one is refused (413) and the connection closed.
///
/// When the server shuts down gracefully, the checks already read are answered, a check whose body is still
/// arriving included, and written out, before Hummingbird's handler behind this one is told to close the connection
/// (which it would do at once, since it never sees these requests).
final class ForwardAuthChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let forwardAuth: ForwardAuth
    private let metrics: ServerMetrics?
    private let logger: Logger

    /// A check being read: its head has arrived, its end has not.
    private var reading: Check?
    /// Requests passed on to Hummingbird whose response has not been written yet.
    private var passedOn = 0
    /// An answer was written and awaits the end of this read to be flushed.
    private var needsFlush = false
    /// A read asked for while the channel could take no more writes: held until it can, so that a client that sends
    /// checks without reading the answers is held to what the sockets buffer, as it is for any other request.
    private var readPending = false
    private var date = HTTPDate()
    /// A check was refused for its body's size: the rest of that body is dropped.
    private var isDiscardingBody = false
    /// A graceful shutdown asked to close the connection; held until the checks read are answered and written.
    private var isQuiescing = false
    private var hasPassedOnQuiesce = false
    /// Completes once the last answer written is on the socket (answers are written in order).
    private var lastAnswerWritten: EventLoopFuture<Void>?
    /// A check's answer waits for a rate limit's lease: what arrives meanwhile is held, and no more is read, so that
    /// answers leave in order.
    private var isAwaitingAnswer = false
    private var held: [HTTPRequestPart] = []

    /// Gateways send checks without a body, or with the start of the original request's (Envoy's `max_request_bytes`); one
    /// this large is not a gateway's.
    static let maximumBodySize = 8 * 1024

    private struct Check {
        var request: HTTPRequest
        var target: (path: Substring, suffix: [Substring])
        var started: ContinuousClock.Instant
        var bodySize = 0
        /// The body, which a gateway sends when it forwards the original request's (the model it names).
        var body: ByteBuffer?
    }

    init(forwardAuth: ForwardAuth, metrics: ServerMetrics?, logger: Logger) {
        self.forwardAuth = forwardAuth
        self.metrics = metrics
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.isAwaitingAnswer {
            self.held.append(self.unwrapInboundIn(data))
            return
        }
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            if self.passedOn == 0, self.reading == nil, let target = Self.checkTarget(request) {
                self.reading = Check(request: request, target: target, started: .now)
                return
            }
            self.passedOn += 1
        case .body(let part):
            if self.isDiscardingBody { return }
            if var check = self.reading {
                check.bodySize += part.readableBytes
                guard check.bodySize <= Self.maximumBodySize else {
                    self.reading = nil
                    self.isDiscardingBody = true
                    self.answer(check, context: context, refusal: Self.bodyTooLarge)
                    return
                }
                if check.body == nil {
                    check.body = part
                } else {
                    var part = part
                    check.body!.writeBuffer(&part)
                }
                self.reading = check
                return
            }
        case .end:
            if self.isDiscardingBody {
                self.isDiscardingBody = false
                return
            }
            if let check = self.reading {
                self.reading = nil
                self.answer(check, context: context)
                return
            }
        }
        context.fireChannelRead(data)
    }

    static let bodyTooLarge = OpenAIError(
        status: .contentTooLarge,
        message: "A check carries no body, and this one is over the \(ForwardAuthChannelHandler.maximumBodySize / 1024) KiB a check may have.",
        code: "request_too_large",
        headers: [.connection: "close"]
    )

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        self.isQuiescing = true
        if self.reading == nil, !self.isDiscardingBody, !self.isAwaitingAnswer {
            self.passOnQuiesce(context)
        }
    }

    /// Tells the handlers behind this one to close the connection once the answers written so far are on the socket.
    private func passOnQuiesce(_ context: ChannelHandlerContext) {
        guard !self.hasPassedOnQuiesce else { return }
        self.hasPassedOnQuiesce = true
        guard let written = self.lastAnswerWritten else {
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            return
        }
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.whenComplete { _ in loopContext.value.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        // Shutting down: every check this read brought is answered; once they are written, the connection may close.
        if self.isQuiescing, self.reading == nil, !self.isDiscardingBody, !self.isAwaitingAnswer {
            self.passOnQuiesce(context)
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable, !self.isAwaitingAnswer {
            context.read()
        } else {
            self.readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if self.readPending, context.channel.isWritable, !self.isAwaitingAnswer {
            self.readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if self.readPending {
            self.readPending = false
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data), self.passedOn > 0 {
            self.passedOn -= 1
        }
        context.write(data, promise: promise)
    }

    /// The request's path without its query, and what follows `/v1/auth/check` split at its slashes (as
    /// Hummingbird's catch-all parameter splits it); nil when the request is not one this handler answers.
    static func checkTarget(_ request: HTTPRequest) -> (path: Substring, suffix: [Substring])? {
        guard let target = request.path, Self.isCheckMethod(request.method) else { return nil }
        let bytes = target.utf8
        let base = Self.checkPath.utf8
        guard bytes.starts(with: base) else { return nil }
        var index = bytes.index(bytes.startIndex, offsetBy: base.count)
        guard index != bytes.endIndex else { return (target[...], []) }
        switch bytes[index] {
        case UInt8(ascii: "?"): return (target[..<index], [])
        case UInt8(ascii: "/"): break
        default: return nil  // /v1/auth/checks, or a fragment
        }
        let start = index
        while index != bytes.endIndex, bytes[index] != UInt8(ascii: "?") {
            guard bytes[index] != UInt8(ascii: "#") else { return nil }
            bytes.formIndex(after: &index)
        }
        return (target[..<index], target[start..<index].split(separator: "/", omittingEmptySubsequences: true))
    }

    private static let checkPath = "/v1/auth/check"

    private static func isCheckMethod(_ method: HTTPRequest.Method) -> Bool {
        switch method {
        case .get, .post, .head, .put, .patch, .delete, .options: true
        default: false
        }
    }

    private func answer(_ check: Check, context: ChannelHandlerContext, refusal: OpenAIError? = nil) {
        let request = check.request
        if let refusal {
            self.write(ForwardAuth.Answer(refusal), for: check, context: context)
            return
        }
        switch self.forwardAuth.answer(method: request.method, headers: request.headerFields, suffix: check.target.suffix, body: check.body) {
        case .now(let answer):
            self.write(answer, for: check, context: context)
        case .afterLease(let later):
            self.isAwaitingAnswer = true
            let promise = context.eventLoop.makePromise(of: ForwardAuth.Answer.self)
            promise.completeWithTask { await later() }
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { answer in
                bound.value.handler.finishAwaiting(answer, for: check, context: bound.value.context)
            }
        }
    }

    /// Writes the answer that waited for a lease, then goes on with what arrived meanwhile.
    private func finishAwaiting(_ answer: ForwardAuth.Answer, for check: Check, context: ChannelHandlerContext) {
        self.isAwaitingAnswer = false
        self.write(answer, for: check, context: context)
        while !self.isAwaitingAnswer, !self.held.isEmpty {
            let part = self.held.removeFirst()
            self.channelRead(context: context, data: self.wrapInboundOut(part))
        }
        self.channelReadComplete(context: context)
        if !self.isAwaitingAnswer, self.readPending, context.channel.isWritable {
            self.readPending = false
            context.read()
        }
    }

    private func write(_ answer: ForwardAuth.Answer, for check: Check, context: ChannelHandlerContext) {
        let request = check.request
        var answer = answer
        let requestID = RequestObservation.usableID(request.headerFields[.requestID]) ?? RequestID().description
        let length = answer.body?.readableBytes ?? 0
        answer.headers[.contentLength] = String(length)
        answer.headers[.requestID] = requestID
        answer.headers[.date] = self.date.now()
        context.write(self.wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: answer.headers))), promise: nil)
        if let body = answer.body, length > 0, request.method != .head {
            context.write(self.wrapOutboundOut(.body(body)), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        self.lastAnswerWritten = written.futureResult
        if request.headerFields[.connection]?.lowercased() == "close" || answer.headers[.connection] == "close" {
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: written)
            written.futureResult.whenComplete { _ in loopContext.value.close(promise: nil) }
        } else {
            context.write(self.wrapOutboundOut(.end(nil)), promise: written)
            self.needsFlush = true
        }

        RequestObservation.finished(
            method: request.method,
            route: check.target.suffix.isEmpty ? "/v1/auth/check" : "/v1/auth/check/**",
            path: check.target.path,
            status: answer.status,
            duration: ContinuousClock.now - check.started,
            requestID: requestID,
            metrics: self.metrics,
            logger: self.logger
        )
    }
}

/// The `Date` header's value (RFC 9110's IMF-fixdate), formatted once a second.
struct HTTPDate {
    private var second = -1
    private var formatted = ""

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    mutating func now() -> String {
        let now = time(nil)
        if now != self.second {
            self.second = now
            self.formatted = Self.format(now)
        }
        return self.formatted
    }

    static func format(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(Self.days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(Self.months[Int(parts.tm_mon)]) \(1900 + parts.tm_year) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
