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
        let duration = ContinuousClock.now - started
        let route = context.endpointPath ?? "unmatched"
        self.metrics?.recordRequest(route: route, method: request.method.rawValue, status: response.status.code, duration: duration)
        if context.logger.logLevel <= .info {
            context.logger.info(
                "request",
                metadata: [
                    "method": .string(request.method.rawValue),
                    "route": .string(route),
                    "path": .string(request.uri.path),
                    "status": .stringConvertible(response.status.code),
                    "duration_ms": .string(Self.milliseconds(duration)),
                ]
            )
        }
        return response
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
