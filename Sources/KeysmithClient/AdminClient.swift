public import AsyncHTTPClient
import Foundation
import KeysmithCore
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// A client of Keysmith's admin API (OpenAI's Administration API and Keysmith's extensions) and of
/// `POST /v1/keys/verify`.
///
/// ```swift
/// let client = try AdminClient(baseURL: "http://127.0.0.1:8080", adminKey: adminKey)
/// let project = try await client.createProject(name: "Gateway")
/// for try await key in client.apiKeys(project: project.id) {
///     print(key.name, key.redactedValue)
/// }
/// ```
///
/// A value type with no state of its own beyond its configuration: copy it freely and share it between tasks. Its
/// connections belong to the `HTTPClient` it is given (by default `HTTPClient.shared`, which lives as long as the
/// process), so there is nothing to shut down unless you pass a client of your own.
///
/// Every method throws ``KeysmithClientError``: ``KeysmithClientError/api(_:)`` when the server answered with an
/// error, ``KeysmithClientError/connection(url:underlying:)`` when it could not be reached or did not answer in time.
public struct AdminClient: Sendable {
    /// The server's address, without the API's `/v1`: `http://127.0.0.1:8080`.
    public let baseURL: String
    /// How long one call may take, from sending the request to the last byte of the answer.
    public var timeout: Duration
    private let adminKey: String
    private let httpClient: HTTPClient

    /// - Parameters:
    ///   - baseURL: The server's address, `http://host:port` or `https://host:port`. A trailing `/v1` (as in
    ///     `OPENAI_BASE_URL`) is accepted and dropped.
    ///   - adminKey: An admin key (`sk-admin-…`) of the organization to manage.
    ///   - timeout: How long one call may take.
    ///   - httpClient: The HTTP client whose connections to use.
    /// - Throws: ``KeysmithClientError/invalidBaseURL(_:)`` when `baseURL` is not an http or https URL.
    public init(baseURL: String, adminKey: String, timeout: Duration = .seconds(30), httpClient: HTTPClient = .shared) throws {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasSuffix("/v1") { base.removeLast(3) }
        guard let url = URL(string: base), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil
        else {
            throw KeysmithClientError.invalidBaseURL(baseURL)
        }
        self.baseURL = base
        self.adminKey = adminKey
        self.timeout = timeout
        self.httpClient = httpClient
    }

    // MARK: The one way a call is made

    enum Method {
        case get
        case post
        case delete

        var nio: HTTPMethod {
            switch self {
            case .get: .GET
            case .post: .POST
            case .delete: .DELETE
            }
        }
    }

    /// Sends one request and decodes its answer as `Response`, or its error envelope as ``KeysmithClientError``.
    func call<Response: Decodable>(
        _ method: Method,
        _ path: Path,
        query: Query = Query(),
        body: [String: JSONValue]? = nil
    ) async throws(KeysmithClientError) -> Response {
        let url = self.baseURL + path.text + query.text
        var request = HTTPClientRequest(url: url)
        request.method = method.nio
        request.headers.add(name: "Authorization", value: "Bearer \(self.adminKey)")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "keysmith-client/\(KeysmithVersion.current)")
        if let body {
            let encoded: Data
            do {
                encoded = try JSONEncoder().encode(body)
            } catch {
                // A [String: JSONValue] always encodes; this is only the compiler's due.
                throw .invalidResponse(status: 0, reason: "could not encode the request body: \(error)")
            }
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: encoded))
        }

        let status: Int
        let bytes: ByteBuffer
        do {
            let response = try await self.httpClient.execute(request, timeout: .nanoseconds(self.timeout.nanoseconds))
            status = Int(response.status.code)
            bytes = try await response.body.collect(upTo: Self.maximumResponseBytes)
        } catch {
            throw .connection(url: self.baseURL, underlying: error)
        }

        let decoder = JSONDecoder()
        if (200..<300).contains(status) {
            do {
                var value = try decoder.decode(Response.self, from: bytes)
                if var carrier = value as? any CarriesJSON {
                    carrier.attach(try decoder.decode(JSONValue.self, from: bytes))
                    if let attached = carrier as? Response { value = attached }
                }
                return value
            } catch {
                throw .invalidResponse(status: status, reason: "the answer is not the JSON expected: \(error)")
            }
        }
        guard let envelope = try? decoder.decode(ErrorEnvelope.self, from: bytes) else {
            let text = String(buffer: bytes)
            throw .invalidResponse(status: status, reason: "not an OpenAI error envelope: \(text.prefix(200))")
        }
        throw .api(
            APIError(
                status: status,
                type: envelope.error.type,
                code: envelope.error.code,
                param: envelope.error.param,
                message: envelope.error.message
            )
        )
    }

    /// Answers larger than this are refused; the largest Keysmith gives (100 audit log entries) is far smaller.
    static let maximumResponseBytes = 16 * 1024 * 1024

    struct ErrorEnvelope: Decodable {
        struct Body: Decodable {
            var message: String
            var type: String
            var param: String?
            var code: String?
        }

        var error: Body
    }
}

/// A request path whose interpolated parts (ids) are percent-encoded, each as one segment:
/// `"/v1/organization/projects/\(id)"`.
struct Path: ExpressibleByStringInterpolation {
    var text: String

    init(stringLiteral value: String) {
        self.text = value
    }

    init(stringInterpolation: Interpolation) {
        self.text = stringInterpolation.text
    }

    struct Interpolation: StringInterpolationProtocol {
        var text = ""

        init(literalCapacity: Int, interpolationCount: Int) {
            self.text.reserveCapacity(literalCapacity + interpolationCount * 32)
        }

        mutating func appendLiteral(_ literal: String) {
            self.text += literal
        }

        mutating func appendInterpolation(_ segment: String) {
            self.text += PercentEncoding.encode(segment)
        }
    }
}

/// A query string built in order, each name and value percent-encoded.
struct Query {
    private var items: [(String, String)] = []

    mutating func add(_ name: String, _ value: String?) {
        if let value { self.items.append((name, value)) }
    }

    mutating func add(_ name: String, _ value: Int?) {
        if let value { self.items.append((name, String(value))) }
    }

    /// Arrays as the SDKs write them: `name[]=a&name[]=b`.
    mutating func add(_ name: String, all values: [String]) {
        for value in values { self.items.append((name + "[]", value)) }
    }

    var text: String {
        if self.items.isEmpty { return "" }
        return "?" + self.items.map { PercentEncoding.encode($0.0) + "=" + PercentEncoding.encode($0.1) }.joined(separator: "&")
    }
}
