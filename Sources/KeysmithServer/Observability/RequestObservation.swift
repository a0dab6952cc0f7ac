import HTTPTypes
import Hummingbird
import Logging

/// The outermost middleware: gives each request its id, and once the response is made, counts it in `/metrics` and
/// writes its access log line.
///
/// The request id is the client's `X-Request-Id` when it sends a usable one (at most 128 visible ASCII
/// characters), else Hummingbird's own; it is in every log line the request causes (Hummingbird's `hb.request.id`,
/// which Keysmith's log handlers write as `request_id`) and in the response's `X-Request-Id`. The logger's metadata
/// is changed only for a client's id: a change costs a copy of the metadata on every request. The access log line (level info) names the method, the route pattern (ids are in the
/// path, never keys), the status and the duration; it never holds a header, so never a key.
struct RequestObservation: RouterMiddleware {
    typealias Context = KeysmithRequestContext

    let metrics: ServerMetrics?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let requestID: String
        if let given = Self.usableID(request.headers[.requestID]) {
            requestID = given
            context.logger[metadataKey: "hb.request.id"] = .string(given)
        } else {
            requestID = context.id
        }
        var response = try await next(request, context)
        response.headers[.requestID] = requestID
        Self.finished(
            method: request.method,
            route: context.endpointPath ?? "unmatched",
            path: request.uri.path,
            status: response.status,
            duration: ContinuousClock.now - started,
            metrics: self.metrics,
            logger: context.logger
        )
        return response
    }

    /// Counts a finished request in `/metrics` and writes its access log line: for requests through the router, and
    /// for the checks ``ForwardAuthChannelHandler`` answers below it. `requestID` is for a logger that does not
    /// carry the request's id in its metadata already.
    static func finished(
        method: HTTPRequest.Method,
        route: String,
        path: some StringProtocol,
        status: HTTPResponse.Status,
        duration: Duration,
        requestID: String? = nil,
        metrics: ServerMetrics?,
        logger: Logger
    ) {
        metrics?.recordRequest(route: route, method: method.rawValue, status: status.code, duration: duration)
        guard logger.logLevel <= .info else { return }
        var metadata: Logger.Metadata = [
            "method": .string(method.rawValue),
            "route": .string(route),
            "path": .string(String(path)),
            "status": .stringConvertible(status.code),
            "duration_ms": .string(Self.milliseconds(duration)),
        ]
        if let requestID {
            metadata["hb.request.id"] = .string(requestID)
        }
        logger.info("request", metadata: metadata)
    }

    static func usableID(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count), value.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return nil
        }
        return value
    }

    /// Milliseconds with three decimals.
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let fraction = String(microseconds % 1_000)
        return "\(microseconds / 1_000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}
