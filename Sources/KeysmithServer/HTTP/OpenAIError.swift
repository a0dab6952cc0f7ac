public import HTTPTypes
public import Hummingbird
import KeysmithCore
import KeysmithDomain
import Logging
import NIOCore

/// The only shape in which errors leave the server: `{"error":{"message","type","param","code"}}`, all four keys
/// always present, as OpenAI's `ErrorResponse` requires.
public struct OpenAIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    public var headers: HTTPFields

    public init(
        status: HTTPResponse.Status,
        message: String,
        type: String = "invalid_request_error",
        param: String? = nil,
        code: String? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        self.response()
    }

    public func response() -> Response {
        let (headers, body) = self.encoded()
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: body))
    }

    /// The envelope's bytes and the headers that go with them.
    func encoded() -> (headers: HTTPFields, body: ByteBuffer) {
        var writer = JSONWriter(capacity: 256)
        writer.object { writer in
            writer.key("error")
            writer.object { error in
                error.field("message", self.message)
                error.field("type", self.type)
                error.field("param", self.param)
                error.field("code", self.code)
            }
        }
        var headers = self.headers
        headers[.contentType] = "application/json"
        return (headers, writer.buffer)
    }
}

extension OpenAIError {
    /// 400 for a client mistake in a parameter or the body.
    static func invalid(_ message: String, param: String?, code: String? = nil) -> OpenAIError {
        OpenAIError(status: .badRequest, message: message, param: param, code: code)
    }

    static func missingParameter(_ name: String) -> OpenAIError {
        .invalid("Missing required parameter: '\(name)'.", param: name)
    }

    /// 401 for a request without a key, in OpenAI's words.
    static let missingKey = OpenAIError.unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth "
            + "(i.e. Authorization: Bearer YOUR_KEY).",
        code: nil
    )

    /// 401 for a key that is not good, showing at most its first 8 and last 4 characters; `detail` says why when
    /// saying so helps the key's owner.
    static func incorrectKey(_ token: some StringProtocol, detail: String? = nil, code: String = "invalid_api_key") -> OpenAIError {
        .unauthorized(
            "Incorrect API key provided: \(KeySecret.describeForError(token))." + (detail.map { " \($0)" } ?? ""),
            code: code
        )
    }

    static func unauthorized(_ message: String, code: String?) -> OpenAIError {
        OpenAIError(status: .unauthorized, message: message, code: code, headers: [.wwwAuthenticate: "Bearer"])
    }

    /// The OpenAI envelope for a domain error: the one place that knows which request field (`param`) and which
    /// `code` each domain refusal is on the wire.
    init(_ error: KeysmithError) {
        let message = error.description
        switch error {
        case .notFound:
            self.init(status: .notFound, message: message)
        case .referenceNotFound(let resource, _):
            self.init(status: .badRequest, message: message, param: Self.field(naming: resource))
        case .noUserWithEmail:
            self.init(status: .badRequest, message: message, param: "email")
        case .unknownCursor:
            self.init(status: .badRequest, message: message, param: "after")
        case .unknownBeforeCursor:
            self.init(status: .badRequest, message: message, param: "before")
        case .projectArchived:
            self.init(status: .badRequest, message: message, code: "project_archived")
        case .ownerNotProjectMember:
            self.init(status: .badRequest, message: message, param: "user_id")
        case .alreadyProjectMember:
            self.init(status: .badRequest, message: message, param: "user_id", code: "user_already_member")
        case .emailTaken:
            self.init(status: .badRequest, message: message, param: "email", code: "user_already_exists")
        case .serviceAccountKey:
            self.init(status: .badRequest, message: message, param: "api_key_id")
        case .keyExpired:
            self.init(status: .badRequest, message: message, code: "api_key_expired")
        case .lastAdminKey:
            self.init(status: .badRequest, message: message, param: "key_id", code: "last_admin_key")
        case .lastOwner:
            self.init(status: .badRequest, message: message, param: "user_id", code: "last_owner")
        case .inviteExists:
            self.init(status: .badRequest, message: message, param: "email", code: "invite_already_exists")
        case .inviteAccepted:
            self.init(status: .badRequest, message: message, param: "invite_id", code: "invite_already_accepted")
        case .inviteExpired:
            self.init(status: .badRequest, message: message, param: "invite_id", code: "invite_expired")
        case .inviteProject:
            self.init(status: .badRequest, message: message, param: "projects")
        }
    }

    /// The body field that names an object of `resource`'s kind.
    private static func field(naming resource: KeysmithError.Resource) -> String? {
        switch resource {
        case .user, .projectUser: "user_id"
        case .project: "project_id"
        case .serviceAccount: "service_account_id"
        case .apiKey, .adminKey: "api_key_id"
        case .organization: "organization_id"
        case .invite: "invite_id"
        }
    }
}

extension OpenAIError {
    /// The envelope for an error a request can end in that is not a bug: what the client asked for was refused
    /// (``OpenAIError`` itself, a ``KeysmithError``, a body too large), or the database cannot serve it now (503,
    /// with `Retry-After`). Nil for anything else: an unexpected error, which the caller logs and answers 500. The
    /// one place that knows these mappings, for the API and the dashboard alike.
    init?(_ error: any Error) {
        switch error {
        case let error as OpenAIError:
            self = error
        case let error as KeysmithError:
            self.init(error)
        case is DatabaseUnavailableError:
            self.init(
                status: .serviceUnavailable,
                message: "The database is unavailable; try again shortly.",
                type: "server_error",
                code: "database_unavailable",
                headers: [.retryAfter: "2"]
            )
        case is DatabaseBusyError:
            self.init(
                status: .serviceUnavailable,
                message: "The database could not take this change in time (another change holds what it needs); nothing was "
                    + "changed. Try again shortly.",
                type: "server_error",
                code: "database_busy",
                headers: [.retryAfter: "1"]
            )
        case is NIOTooManyBytesError:
            self.init(status: .contentTooLarge, message: "The request body is larger than this endpoint accepts.", code: "request_too_large")
        default:
            return nil
        }
    }

    /// Whether the error says the database is unavailable or busy (logged as a warning, not as a bug).
    static func isDatabaseFailure(_ error: any Error) -> Bool {
        error is DatabaseUnavailableError || error is DatabaseBusyError
    }
}

/// Renders every error that reaches it as OpenAI's envelope: the errors `OpenAIError.init(_: any Error)` maps,
/// Hummingbird's own (unknown route, a method not allowed) with their status, and anything unexpected as a logged 500.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            if let rendered = OpenAIError(error) {
                if OpenAIError.isDatabaseFailure(error) {
                    // Not a bug: the database is down, unreachable or busy. Clients retry 503s.
                    context.logger.warning(
                        error is DatabaseBusyError ? "Database busy" : "Database unavailable",
                        metadata: ["error": "\(error)"]
                    )
                }
                return rendered.response()
            }
            if let error = error as? any HTTPResponseError {
                switch error.status {
                case .notFound:
                    return OpenAIError(
                        status: .notFound,
                        message: "Invalid URL (\(request.method) \(request.uri.path))",
                        code: "unknown_url"
                    ).response()
                default:
                    return OpenAIError(
                        status: error.status,
                        message: error.status.reasonPhrase,
                        type: error.status.code >= 500 ? "server_error" : "invalid_request_error"
                    ).response()
                }
            }
            context.logger.error("Unexpected error", metadata: ["error": "\(String(reflecting: error))"])
            return OpenAIError(
                status: .internalServerError,
                message: "The server had an error while processing your request.",
                type: "server_error"
            ).response()
        }
    }
}
