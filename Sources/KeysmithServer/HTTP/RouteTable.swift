import HTTPTypes
import Hummingbird

typealias Handler = @Sendable (Request, KeysmithRequestContext) async throws -> Response
typealias AdminHandler = @Sendable (Request, AdminRequestContext) async throws -> Response

/// An admin route's handler and the access it needs.
struct AdminEndpoint: Sendable {
    var access: AdminAccess
    var handler: AdminHandler

    static func read(_ handler: @escaping AdminHandler) -> AdminEndpoint { AdminEndpoint(access: .read, handler: handler) }
    static func write(_ handler: @escaping AdminHandler) -> AdminEndpoint { AdminEndpoint(access: .write, handler: handler) }
}

/// The admin API's routes: two route groups behind ``AdminAuthentication``, one asking for read access and one for
/// write access, each handing its handlers an ``AdminRequestContext``.
struct AdminRouter {
    private let router: Router<KeysmithRequestContext>
    private let reads: RouterGroup<AdminRequestContext>
    private let writes: RouterGroup<AdminRequestContext>

    init(router: Router<KeysmithRequestContext>, authenticator: AdminAuthenticator) {
        self.router = router
        self.reads = router.group()
            .add(middleware: AdminAuthentication(authenticator: authenticator, access: .read))
            .group(context: AdminRequestContext.self)
        self.writes = router.group()
            .add(middleware: AdminAuthentication(authenticator: authenticator, access: .write))
            .group(context: AdminRequestContext.self)
    }

    /// Registers each method's handler in the group for its access, and a 405 for the other methods.
    func route(_ path: RouterPath, _ endpoints: [HTTPRequest.Method: AdminEndpoint]) {
        for (method, endpoint) in endpoints {
            let group = endpoint.access == .read ? self.reads : self.writes
            group.on(path, method: method, use: endpoint.handler)
        }
        self.router.refuseOtherMethods(path, allowed: Array(endpoints.keys))
    }
}

extension Router where Context == KeysmithRequestContext {
    /// Methods a path answers 405 for when it does not serve them (anything else is 404, as for unknown paths).
    static var knownMethods: [HTTPRequest.Method] { [.get, .post, .put, .patch, .delete] }

    /// Registers `handlers` on `path`, and a 405 for the other methods.
    func route(_ path: RouterPath, _ handlers: [HTTPRequest.Method: Handler]) {
        for (method, handler) in handlers {
            self.on(path, method: method, use: handler)
        }
        self.refuseOtherMethods(path, allowed: Array(handlers.keys))
    }

    /// A 405 in OpenAI's envelope, with `Allow`, for every known method not in `allowed`.
    func refuseOtherMethods(_ path: RouterPath, allowed: [HTTPRequest.Method]) {
        let allow = allowed.map(\.rawValue).sorted().joined(separator: ", ")
        for method in Self.knownMethods where !allowed.contains(method) {
            self.on(path, method: method) { request, _ -> Response in
                throw OpenAIError(
                    status: .methodNotAllowed,
                    message: "Method \(request.method) is not allowed for \(request.uri.path). Allowed: \(allow).",
                    code: "method_not_allowed",
                    headers: [.allow: allow]
                )
            }
        }
    }
}
