import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import KeysmithCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Keysmith as the gateway: every request under `/v1/` that is not Keysmith's own API is the OpenAI model API,
/// verified from memory as a check is (the same verdict and codes; scopes judged on the request's own method and
/// path, so there is no header to forge) and proxied to the upstream model server.
///
/// What goes up: the client's method, path below `/v1`, query, body (up to
/// ``GatewayConfiguration/maximumRequestBodySize``) and headers, less the hop-by-hop ones, its credentials
/// (`Authorization`, `api-key`), its cookies and any `X-Keysmith-*` it sent; plus the upstream's own credential, the
/// key's identity headers (as a check answers them) and `X-Request-Id`. What comes back: the upstream's status,
/// headers (less the hop-by-hop ones) and body, streamed as it arrives, so each server-sent event reaches the client
/// when the upstream sends it, and a client that does not read slows the read from the upstream.
final class Gateway: Sendable {
    /// One upstream with its own connection pool (its own connect and read timeouts) and model list.
    struct Route: Sendable {
        let upstream: GatewayConfiguration.Upstream
        let client: HTTPClient
        let models: ModelCatalog
    }

    let configuration: GatewayConfiguration
    let forwardAuth: ForwardAuth
    let routes: [Route]
    let metrics: ServerMetrics
    let usage: UsageRecorder
    let clock: KeysmithClock
    /// The client connections, to notice one closing while its request waits on the upstream.
    let connections: ConnectionRegistry?

    init(
        configuration: GatewayConfiguration,
        forwardAuth: ForwardAuth,
        usage: UsageRecorder,
        clock: KeysmithClock,
        connections: ConnectionRegistry?,
        metrics: ServerMetrics,
        logger: Logger
    ) {
        self.connections = connections
        self.configuration = configuration
        self.forwardAuth = forwardAuth
        self.usage = usage
        self.clock = clock
        self.metrics = metrics
        self.routes = configuration.upstreams.map { upstream in
            var clientConfiguration = HTTPClient.Configuration(
                // A proxy passes redirects on; it does not follow them.
                redirectConfiguration: .disallow,
                timeout: .init(connect: .init(upstream.connectTimeout), read: .init(upstream.readTimeout)),
                decompression: .disabled
            )
            // A stream holds its connection until it ends, so the pool must hold as many as there are requests at
            // once (async-http-client's default is 8 a host, past which requests queue for a connection).
            clientConfiguration.connectionPool = .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: Self.connectionsPerUpstream
            )
            clientConfiguration.httpVersion = .http1Only
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration, backgroundActivityLogger: logger)
            return Route(
                upstream: upstream,
                client: client,
                models: ModelCatalog(upstream: upstream, lifetime: configuration.modelListLifetime, client: client)
            )
        }
    }

    /// At most this many connections to one upstream stay open (more are opened past it and closed when done).
    static let connectionsPerUpstream = 1024

    /// Where a request for `model` goes: the first upstream that serves it; with no model, the first upstream.
    func route(for model: String?) -> Route? {
        guard let model, !model.isEmpty else { return self.routes.first }
        return self.routes.first { $0.upstream.serves(model) }
    }

    /// The model list, and the proxy for every other path under `/v1/` (Keysmith's own routes, registered on the
    /// same router, are matched first).
    func register(on router: Router<KeysmithRequestContext>) {
        router.on("/v1/models", method: .get, use: self.listModels)
        router.on("/v1/models/**", method: .get, use: self.retrieveModel)
        for method in [HTTPRequest.Method.get, .head, .post, .put, .patch, .delete, .options] {
            router.on("/v1/**", method: method, use: self.proxy)
        }
    }

    /// Shuts the upstream clients down after the server has drained.
    var service: some Service { GatewayService(clients: self.routes.map(\.client)) }

    // MARK: The model list

    @Sendable func listModels(_ request: Request, context: KeysmithRequestContext) async throws -> Response {
        let key = try self.forwardAuth.admit(method: request.method.rawValue, path: request.uri.path, headers: request.headers).get()
        var models = try await self.models(logger: context.logger)
        if let permissions = key.project.modelPermissions {
            models = models.filter { permissions.permits($0.id) }
        }
        return Wire.response { writer in
            writer.object { writer in
                writer.field("object", literal: "list")
                writer.key("data")
                writer.array { writer in
                    for model in models { model.write(&writer) }
                }
            }
        }
    }

    @Sendable func retrieveModel(_ request: Request, context: KeysmithRequestContext) async throws -> Response {
        let key = try self.forwardAuth.admit(method: request.method.rawValue, path: request.uri.path, headers: request.headers).get()
        let id = PercentEncoding.decode(context.parameters.getCatchAll().joined(separator: "/"), plusAsSpace: false)
        // A model the project may not use is as unknown to it as one no upstream serves, as OpenAI answers.
        let permitted = key.project.modelPermissions?.permits(id) ?? true
        guard permitted, let model = try await self.models(logger: context.logger).first(where: { $0.id == id }) else {
            throw OpenAIError(
                status: .notFound,
                message: "The model '\(id)' does not exist or you do not have access to it.",
                param: "model",
                code: "model_not_found"
            )
        }
        return Wire.response { writer in model.write(&writer) }
    }

    /// The union of the upstreams' model lists, each model listed once, by the upstream its requests are routed to
    /// (a model an upstream lists but is not routed to it is left out). An upstream that cannot be asked (and has no
    /// list kept) is left out too; when none can be, the client is told so.
    func models(logger: Logger) async throws -> [UpstreamModel] {
        var lists: [Int: Result<[UpstreamModel], any Error>] = [:]
        await withTaskGroup(of: (Int, Result<[UpstreamModel], any Error>).self) { group in
            for (index, route) in self.routes.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await route.models.models(logger: logger)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            for await (index, result) in group { lists[index] = result }
        }
        var models: [UpstreamModel] = []
        var seen: Set<String> = []
        var firstFailure: (any Error)?
        for (index, route) in self.routes.enumerated() {
            switch lists[index] {
            case .success(let listed):
                for model in listed where self.route(for: model.id)?.upstream == route.upstream && seen.insert(model.id).inserted {
                    models.append(model)
                }
            case .failure(let error):
                firstFailure = firstFailure ?? error
            case nil:
                break
            }
        }
        if models.isEmpty, let firstFailure { throw firstFailure }
        return models
    }

    // MARK: The proxy

    @Sendable func proxy(_ request: Request, context: KeysmithRequestContext) async throws -> Response {
        let path = request.uri.path
        guard !Self.isKeysmithPath(path) else {
            throw OpenAIError(status: .notFound, message: "Invalid URL (\(request.method) \(path))", code: "unknown_url")
        }
        guard let relative = Self.forwardablePath(path) else {
            throw OpenAIError.invalid(
                "The request path has an empty, '.' or '..' segment, or an encoded '/', '.' or '\\', which Keysmith does not "
                    + "forward: a model server could resolve it to another route than the one its key was judged for.",
                param: nil,
                code: "invalid_path"
            )
        }
        let key = try self.forwardAuth.admit(method: request.method.rawValue, path: path, headers: request.headers).get()
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > self.configuration.maximumRequestBodySize {
            throw Self.bodyTooLarge(self.configuration.maximumRequestBodySize)
        }
        let started = ContinuousClock.now
        let upstreamRequest = UpstreamRequest(
            method: HTTPMethod(rawValue: request.method.rawValue),
            path: path,
            target: relative + (request.uri.query.map { "?" + $0 } ?? ""),
            headers: self.forwardedHeaders(request.headers, key: key, requestID: context.requestID),
            isJSON: request.headers[.contentType].map { $0.lowercased().hasPrefix("application/json") } ?? false
        )
        let forwarded: Forwarded
        do {
            forwarded = try await self.forward(upstreamRequest, body: request.body, key: key, context: context)
        } catch is CancellationError {
            // The client closed its connection; nobody reads this answer.
            self.metrics.gatewayRequest(.clientGone)
            context.logger.info("The client went away before the upstream answered")
            return UpstreamFailure.clientGoneEnvelope.response()
        }
        var record: (@Sendable (ReportedUsage?) -> Void)?
        let ticket = forwarded.ticket
        let limiter = self.forwardAuth.limiter
        if let metered = forwarded.metered, (200..<300).contains(Int(forwarded.response.status.code)) {
            let usage = self.usage
            let clock = self.clock
            record = { reported in
                if let ticket { limiter.settle(ticket, tokensUsed: reported.map { $0.inputTokens + $0.outputTokens }) }
                let usageKey = ModelUsageKey(
                    organizationID: key.project.organizationID,
                    kind: metered.kind,
                    minute: clock.now(),
                    projectID: key.project.id,
                    ownerID: key.owner.id,
                    apiKeyID: key.id,
                    model: metered.model
                )
                usage.recordModelUsage(usageKey, .request(reported))
            }
        } else if let ticket {
            // The model server refused it, or it is not a request whose usage is reported: no tokens are known used.
            limiter.settle(ticket, tokensUsed: 0)
        }
        return self.relay(
            forwarded.response,
            metered: forwarded.metered,
            limits: ticket?.headers,
            slot: forwarded.slot,
            record: record,
            started: started,
            logger: context.logger
        )
    }

    /// The upstream's answer, what was learnt of the request on the way, and its admission by the rate limits.
    struct Forwarded {
        var response: HTTPClientResponse
        var metered: MeteredRequest?
        var ticket: RateLimiter.Ticket?
        /// Held until the answer has been relayed.
        var slot: RateLimiter.Slot?
    }

    /// What goes up, before the body is read and the upstream chosen.
    struct UpstreamRequest: Sendable {
        var method: HTTPMethod
        /// The client's path (`/v1/chat/completions`), for metering.
        var path: String
        /// The path below `/v1` and the query, appended to the upstream's base URL.
        var target: String
        var headers: HTTPHeaders
        var isJSON: Bool
    }

    /// Reads the body, picks the upstream by the model it names (and, for a metered request, inspects it), then
    /// sends the request up. Until the upstream answers, a client that closes its connection cancels the upstream
    /// request (a non-streamed completion can take minutes): the connection registry runs the cancellation when the
    /// connection closes. (Hummingbird's `consumeWithCancellationOnInboundClose` would, too, but it reads the
    /// connection's next request to notice, so the connection could not be kept alive.)
    private func forward(
        _ request: UpstreamRequest,
        body: RequestBody,
        key: IndexedKey,
        context: KeysmithRequestContext
    ) async throws -> Forwarded {
        let maximum = self.configuration.maximumRequestBodySize
        var bytes: ByteBuffer
        do {
            bytes = try await body.collect(upTo: maximum)
        } catch is NIOTooManyBytesError {
            throw Self.bodyTooLarge(maximum)
        }
        // The project's model permissions and rate limits, before anything goes up. The model is read from the body
        // only when one of them needs it.
        let requestModel: ModelAccess.RequestModel =
            self.forwardAuth.needsModel(key) ? ModelAccess.requestModel(method: request.method.rawValue, path: request.path, body: bytes) : .none
        if let permissions = key.project.modelPermissions,
            let refusal = ModelAccess.refusal(permissions, projectID: key.project.id, model: requestModel)
        {
            throw refusal
        }
        var metered: MeteredRequest?
        var model: String?
        if let kind = MeteredRequest.kind(method: request.method.rawValue, path: request.path) {
            let inspected = MeteredRequest.inspect(bytes, kind: kind, path: request.path)
            metered = inspected.request
            model = inspected.request.model
            if let rewritten = inspected.body { bytes = rewritten }
        } else if request.isJSON, self.routes.count > 1 {
            model = MeteredRequest.model(inJSON: bytes)
        }
        // The key's concurrent requests first: a request refused for it takes nothing from the windows.
        var slot: RateLimiter.Slot?
        if let concurrent = key.rateLimits?.limits.concurrentRequests {
            slot = try self.forwardAuth.limiter.occupy(key, limit: concurrent).get()
        }
        let ticket = try await self.admit(key, model: requestModel, metered: metered, bodySize: bytes.readableBytes)
        guard let route = self.route(for: model) else {
            throw OpenAIError(
                status: .notFound,
                message: "The model '\(model ?? "")' does not exist or you do not have access to it.",
                param: "model",
                code: "model_not_found"
            )
        }
        var upstreamRequest = HTTPClientRequest(url: route.upstream.baseURL + request.target)
        upstreamRequest.method = request.method
        upstreamRequest.headers = request.headers
        if let apiKey = route.upstream.apiKey {
            upstreamRequest.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        }
        if bytes.readableBytes > 0 || [.POST, .PUT, .PATCH].contains(request.method) {
            upstreamRequest.body = .bytes(bytes)
        }
        let sending = upstreamRequest
        let exchange = Task {
            try await route.client.execute(sending, timeout: .init(route.upstream.responseTimeout), logger: context.logger)
        }
        let connection = self.connections?.connection(for: context.connectionChannel)
        connection?.whenClosed { exchange.cancel() }
        defer { connection?.whenClosed(nil) }
        do {
            let response = try await withTaskCancellationHandler {
                try await exchange.value
            } onCancel: {
                exchange.cancel()
            }
            return Forwarded(response: response, metered: metered, ticket: ticket, slot: slot)
        } catch {
            if let ticket { self.forwardAuth.limiter.settle(ticket, tokensUsed: 0) }
            if connection?.isClosed ?? false || Task.isCancelled { throw CancellationError() }
            let failure = UpstreamFailure(error)
            self.metrics.gatewayRequest(failure.outcome)
            context.logger.warning(
                "The upstream did not answer",
                metadata: ["upstream": "\(route.upstream)", "error": "\(error)", "outcome": "\(failure.outcome.rawValue)"]
            )
            throw failure.envelope
        }
    }

    /// The request admitted by its project's rate limits for its model (nil when none applies), or the refusal thrown.
    /// A metered request reserves its tokens: a quarter of its body's bytes for the prompt, and the answer's maximum
    /// (`max_tokens`, `max_completion_tokens`, `max_output_tokens`, or the configured default) for a completion.
    private func admit(_ key: IndexedKey, model: ModelAccess.RequestModel, metered: MeteredRequest?, bodySize: Int) async throws
        -> RateLimiter.Ticket?
    {
        let limiter = self.forwardAuth.limiter
        var tokens = 0
        if let metered {
            tokens = max(1, bodySize / 4)
            if metered.kind == .completions { tokens += metered.maximumTokens ?? limiter.configuration.defaultMaxTokens }
        }
        guard let demand = try limiter.demand(key, model: model, tokens: tokens).get() else { return nil }
        switch await limiter.admit(demand) {
        case .admitted(let ticket): return ticket
        case .refused(let refusal): throw refusal
        }
    }

    /// The upstream's answer to the client as it arrives; once its headers are sent, an upstream that fails or goes
    /// quiet ends the client's stream cleanly (what came, then the end). A metered answer's usage is read as it passes
    /// and recorded when it ends, however it ends (unknown when it carried none).
    private func relay(
        _ response: HTTPClientResponse,
        metered: MeteredRequest?,
        limits: HTTPFields?,
        slot: RateLimiter.Slot?,
        record: (@Sendable (ReportedUsage?) -> Void)?,
        started: ContinuousClock.Instant,
        logger: Logger
    ) -> Response {
        var headers = Self.returnedHeaders(response.headers)
        if let limits {
            // Keysmith's limits, not the model server's own.
            for field in limits {
                headers[field.name] = nil
            }
            headers.append(contentsOf: limits)
        }
        var length = response.headers.first(name: "content-length").flatMap { Int($0) }
        let hidesUsageChunk = metered?.hidesUsageChunk ?? false
        let contentType = response.headers.first(name: "content-type")
        if hidesUsageChunk && UsageMeter(contentType: contentType, hidesUsageChunk: true).hidesUsageChunk {
            // The body will be shorter than the upstream's by the chunk left out.
            length = nil
            headers[.contentLength] = nil
        }
        let upstreamBody = response.body
        let metrics = self.metrics
        return Response(
            status: HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
            headers: headers,
            body: ResponseBody(contentLength: length) { writer in
                var meter = record.map { _ in UsageMeter(contentType: contentType, hidesUsageChunk: hidesUsageChunk) }
                var recorded = false
                defer {
                    // However the answer ended (the client gone included), the request was made, and is over.
                    if !recorded, let record { record(meter?.usage) }
                    withExtendedLifetime(slot) {}
                }
                var chunks = upstreamBody.makeAsyncIterator()
                while true {
                    let chunk: ByteBuffer?
                    do {
                        chunk = try await chunks.next()
                    } catch {
                        // The headers are gone: the client gets what came, then a clean end of the stream.
                        let failure = UpstreamFailure(error)
                        metrics.gatewayRequest(failure.outcome == .timeout ? .timeoutMidStream : .failedMidStream)
                        logger.warning(
                            "The upstream failed in the middle of its answer",
                            metadata: ["error": "\(error)", "after_ms": "\(RequestObservation.milliseconds(ContinuousClock.now - started))"]
                        )
                        break
                    }
                    guard let chunk else {
                        metrics.gatewayRequest(.proxied)
                        break
                    }
                    // Throws when the client has gone, which ends the upstream request with the iterator.
                    if meter == nil {
                        try await writer.write(chunk)
                    } else if let passed = meter?.pass(chunk) {
                        try await writer.write(passed)
                    }
                }
                if let rest = meter?.finish() {
                    try await writer.write(rest)
                }
                if let record {
                    recorded = true
                    record(meter?.usage)
                }
                try await writer.finish(nil)
            }
        )
    }

    static func bodyTooLarge(_ maximum: Int) -> OpenAIError {
        OpenAIError(
            status: .contentTooLarge,
            message: "The request body is larger than this gateway forwards (\(maximum) bytes).",
            code: "request_too_large"
        )
    }

    /// Keysmith's own API, never proxied: an unknown path there is Keysmith's 404.
    static func isKeysmithPath(_ path: String) -> Bool {
        for prefix in ["/v1/organization", "/v1/auth", "/v1/keys", "/v1/openapi.yaml", "/v1/keysmith"] {
            if path == prefix || path.hasPrefix(prefix + "/") { return true }
        }
        return false
    }

    /// The path below `/v1` to append to the upstream's base URL, exactly as the client sent it; nil when the
    /// upstream might resolve it to another route than ``ScopeMap`` judged (its normalized form): dot segments,
    /// empty segments, encoded slashes, dots or backslashes, or a backslash.
    static func forwardablePath(_ path: String) -> String? {
        guard path.hasPrefix("/v1/") else { return nil }
        let relative = String(path.dropFirst(3))
        let lowered = relative.lowercased()
        if lowered.contains("%2f") || lowered.contains("%2e") || lowered.contains("%5c") || relative.contains("\\") {
            return nil
        }
        for segment in relative.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." { return nil }
        }
        return relative
    }

    /// Headers that describe one connection, not the request (RFC 9110, 7.6.1), and those a proxy sets itself.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "host", "content-length", "expect",
    ]

    func forwardedHeaders(_ incoming: HTTPFields, key: IndexedKey, requestID: String?) -> HTTPHeaders {
        let named = Self.connectionOptions(incoming[values: .connection])
        var headers = HTTPHeaders()
        for field in incoming {
            let name = field.name.canonicalName
            if Self.hopByHop.contains(name) || named.contains(name) { continue }
            // The client's credentials stay here; the upstream gets its own. Cookies are Keysmith's (the dashboard).
            if name == "authorization" || name == "api-key" || name == "cookie" || name.hasPrefix("x-keysmith-") { continue }
            // Answers come back uncompressed, so that what they report can be read.
            if name == "accept-encoding" || name == "x-request-id" { continue }
            headers.add(name: field.name.rawName, value: field.value)
        }
        for field in key.identityHeaders {
            headers.add(name: field.name.rawName, value: field.value)
        }
        if let requestID {
            headers.add(name: "X-Request-Id", value: requestID)
        }
        return headers
    }

    static func returnedHeaders(_ incoming: HTTPHeaders) -> HTTPFields {
        let named = Self.connectionOptions(incoming["connection"])
        var headers = HTTPFields()
        for (name, value) in incoming {
            let lowered = name.lowercased()
            if Self.hopByHop.contains(lowered) || named.contains(lowered) || lowered == "x-request-id" { continue }
            guard let fieldName = HTTPField.Name(name) else { continue }
            headers.append(HTTPField(name: fieldName, value: value))
        }
        return headers
    }

    /// The header names a `Connection` header lists, lowercased, beyond the hop-by-hop ones (most answers say only
    /// `keep-alive` or `close`, which need no set).
    private static func connectionOptions(_ values: [String]) -> Set<String> {
        if values.allSatisfy({ ["keep-alive", "close"].contains($0.lowercased()) }) { return [] }
        return Set(values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
    }
}

/// Why the upstream did not answer, as the client and `/metrics` are told.
struct UpstreamFailure {
    var outcome: GatewayOutcome
    var envelope: OpenAIError

    /// nginx's 499, for the access log: the client closed the connection before the answer.
    static let clientGoneEnvelope = OpenAIError(
        status: .init(code: 499, reasonPhrase: "Client Closed Request"),
        message: "The client closed the connection before the model server answered."
    )

    init(_ error: any Error) {
        if let error = error as? HTTPClientError,
            error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout
        {
            self.outcome = .timeout
            self.envelope = OpenAIError(
                status: .gatewayTimeout,
                message: "The model server did not answer in time.",
                type: "server_error",
                code: "upstream_timeout"
            )
            return
        }
        self.outcome = .unavailable
        self.envelope = OpenAIError(
            status: .badGateway,
            message: "The model server could not be reached, or closed the connection before answering.",
            type: "server_error",
            code: "upstream_unavailable"
        )
    }
}

/// How a proxied request ended, for `keysmith_gateway_requests_total{outcome}`.
enum GatewayOutcome: String, CaseIterable, Sendable {
    /// The upstream's whole answer reached the client.
    case proxied
    /// The upstream could not be reached, or failed before its answer began (502).
    case unavailable
    /// The upstream took too long to connect or to begin its answer (504).
    case timeout
    /// The client left before the upstream answered.
    case clientGone = "client_gone"
    /// The upstream failed after its answer began; the client got a clean end of stream.
    case failedMidStream = "failed_mid_stream"
    /// The upstream went quiet for longer than the read timeout after its answer began.
    case timeoutMidStream = "timeout_mid_stream"
}

private struct GatewayService: Service {
    let clients: [HTTPClient]

    func run() async throws {
        try? await gracefulShutdown()
        for client in self.clients {
            try await client.shutdown()
        }
    }
}

extension KeysmithRequestContext {
    /// The id ``RequestObservation`` gave this request (the client's `X-Request-Id`, or one of its own).
    var requestID: String? {
        if case .string(let id) = self.logger[metadataKey: "hb.request.id"] { return id }
        return nil
    }
}
