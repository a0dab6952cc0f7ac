import HTTPTypes
import Hummingbird

typealias Handler = @Sendable (Request, BasicRequestContext) async throws -> Response

extension Router where Context == BasicRequestContext {
    /// Methods a path answers 405 for when it does not serve them (anything else is 404, as for unknown paths).
    static var knownMethods: [HTTPRequest.Method] { [.get, .post, .put, .patch, .delete] }

    /// Registers `handlers` on `path`, and a 405 in OpenAI's envelope, with `Allow`, for the other methods.
    func route(_ path: RouterPath, _ handlers: [HTTPRequest.Method: Handler]) {
        let allowed = handlers.keys.map(\.rawValue).sorted().joined(separator: ", ")
        for (method, handler) in handlers {
            self.on(path, method: method, use: handler)
        }
        for method in Self.knownMethods where handlers[method] == nil {
            self.on(path, method: method) { request, _ -> Response in
                throw OpenAIError(
                    status: .methodNotAllowed,
                    message: "Method \(request.method) is not allowed for \(request.uri.path). Allowed: \(allowed).",
                    code: "method_not_allowed",
                    headers: [.allow: allowed]
                )
            }
        }
    }
}

extension Parameters {
    /// A path parameter the route pattern guarantees.
    func path(_ name: String) -> String {
        // The router only calls a handler when every parameter of its pattern matched.
        self.get(name) ?? ""
    }
}
