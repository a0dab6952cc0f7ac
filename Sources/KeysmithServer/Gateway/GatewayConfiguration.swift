public import Foundation

/// Keysmith as the gateway (`keysmith serve --upstream URL`): the OpenAI model API, verified from memory and
/// proxied to one OpenAI-compatible model server (vLLM, llama.cpp's server, Ollama, …). docs/gateway.md.
public struct GatewayConfiguration: Sendable {
    /// The model server: its OpenAI API's base URL (what its own clients take as `base_url`), and the credential
    /// Keysmith presents to it (vLLM's `--api-key`, say), never the client's.
    public struct Upstream: Sendable, Equatable, CustomStringConvertible {
        /// `scheme://host[:port][/path]`, without a trailing slash: `/v1/chat/completions` goes to
        /// `<baseURL>/chat/completions`.
        public var baseURL: String
        public var apiKey: String?

        /// `text` must be an absolute http or https URL with a host and neither query, fragment nor credentials.
        public init(parsing text: String, apiKey: String? = nil) throws {
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
                components.query == nil, components.fragment == nil, components.user == nil, components.password == nil
            else {
                throw InvalidUpstreamError(text: text)
            }
            var base = text
            while base.hasSuffix("/") { base.removeLast() }
            self.baseURL = base
            self.apiKey = apiKey.flatMap { $0.isEmpty ? nil : $0 }
        }

        /// The base URL; the credential is never printed.
        public var description: String { self.baseURL }
    }

    public var upstream: Upstream
    /// How long connecting to the upstream may take.
    public var connectTimeout: Duration
    /// How long the upstream may take to start its answer (its status and headers): a non-streamed completion's
    /// whole generation time.
    public var responseTimeout: Duration
    /// Once it has started, how long the upstream may go without sending more (between two server-sent events).
    public var readTimeout: Duration
    /// Request bodies up to this many bytes are forwarded; larger ones are answered 413.
    public var maximumRequestBodySize: Int
    /// How long the upstream's model list is served from memory before it is asked again.
    public var modelListLifetime: Duration

    public init(
        upstream: Upstream,
        connectTimeout: Duration = .seconds(10),
        responseTimeout: Duration = .seconds(600),
        readTimeout: Duration = .seconds(120),
        maximumRequestBodySize: Int = 32 * 1024 * 1024,
        modelListLifetime: Duration = .seconds(30)
    ) {
        self.upstream = upstream
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.readTimeout = readTimeout
        self.maximumRequestBodySize = maximumRequestBodySize
        self.modelListLifetime = modelListLifetime
    }
}

public struct InvalidUpstreamError: Error, CustomStringConvertible {
    public var text: String

    public var description: String {
        "'\(self.text)' is not an upstream URL; expected the model server's OpenAI base URL, such as http://127.0.0.1:8000/v1"
    }
}
