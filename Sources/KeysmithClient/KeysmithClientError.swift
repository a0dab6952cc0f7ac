/// What an ``AdminClient`` call throws.
public enum KeysmithClientError: Error, Sendable, CustomStringConvertible {
    /// The server answered with an error in OpenAI's envelope.
    case api(APIError)
    /// The server could not be reached, or did not answer in time: nothing was learned about the request, which
    /// may or may not have been carried out.
    case connection(url: String, underlying: any Error)
    /// The server answered with something that is not Keysmith's API (a proxy's HTML page, say).
    case invalidResponse(status: Int, reason: String)
    /// The base URL given to ``AdminClient/init(baseURL:adminKey:timeout:httpClient:)`` is not an http(s) URL.
    case invalidBaseURL(String)

    public var description: String {
        switch self {
        case .api(let error):
            error.description
        case .connection(let url, let underlying):
            "cannot connect to Keysmith at \(url): \(underlying)"
        case .invalidResponse(let status, let reason):
            "unexpected answer (HTTP \(status)): \(reason)"
        case .invalidBaseURL(let url):
            "'\(url)' is not a URL of the form http://host:port or https://host:port"
        }
    }

    /// The API error, when the server answered with one.
    public var apiError: APIError? {
        guard case .api(let error) = self else { return nil }
        return error
    }
}

/// An error the server answered with, from OpenAI's envelope:
/// `{"error":{"message","type","param","code"}}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status: 400 for bad input, 401/403 for the admin key, 404 for an unknown id, 503 when the database
    /// is unreachable (retry).
    public var status: Int
    /// `invalid_request_error`, `server_error`, …
    public var type: String
    /// A machine-readable reason, when there is one: `last_owner`, `project_archived`, `invalid_api_key`, …
    public var code: String?
    /// The request field the error is about, when there is one.
    public var param: String?
    /// A sentence for people.
    public var message: String

    public init(status: Int, type: String, code: String?, param: String?, message: String) {
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.message = message
    }

    public var description: String { self.message }
}
