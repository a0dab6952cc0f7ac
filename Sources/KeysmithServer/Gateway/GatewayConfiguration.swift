public import Foundation

/// Keysmith as the gateway (`keysmith serve --upstream URL`): the OpenAI model API, verified from memory and
/// proxied to one OpenAI-compatible model server (vLLM, llama.cpp's server, Ollama, …). docs/gateway.md.
public struct GatewayConfiguration: Sendable {
    /// One model server: its OpenAI API's base URL (what its own clients take as `base_url`), the credential
    /// Keysmith presents to it (vLLM's `--api-key`, say; never the client's), the models it serves and its timeouts.
    public struct Upstream: Sendable, Equatable, CustomStringConvertible {
        /// For logs and errors.
        public var name: String
        /// `scheme://host[:port][/path]`, without a trailing slash: `/v1/chat/completions` goes to
        /// `<baseURL>/chat/completions`.
        public var baseURL: String
        public var apiKey: String?
        /// The models routed here: exact names, or prefixes ending in `*` (`llama-3*`); `*` alone for any.
        public var models: [String]
        /// How long connecting may take.
        public var connectTimeout: Duration
        /// How long the upstream may take to start its answer (its status and headers): a non-streamed completion's
        /// whole generation time.
        public var responseTimeout: Duration
        /// Once it has started, how long the upstream may go without sending more (between two server-sent events).
        public var readTimeout: Duration

        /// `text` must be an absolute http or https URL with a host and neither query, fragment nor credentials.
        public init(
            parsing text: String,
            apiKey: String? = nil,
            name: String = "upstream",
            models: [String] = ["*"],
            connectTimeout: Duration = .seconds(10),
            responseTimeout: Duration = .seconds(600),
            readTimeout: Duration = .seconds(120)
        ) throws {
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
                components.query == nil, components.fragment == nil, components.user == nil, components.password == nil
            else {
                throw InvalidUpstreamError(text: text)
            }
            var base = text
            while base.hasSuffix("/") { base.removeLast() }
            self.name = name
            self.baseURL = base
            self.apiKey = apiKey.flatMap { $0.isEmpty ? nil : $0 }
            self.models = models
            self.connectTimeout = connectTimeout
            self.responseTimeout = responseTimeout
            self.readTimeout = readTimeout
        }

        /// Whether requests for `model` are routed here.
        public func serves(_ model: String) -> Bool {
            self.models.contains { pattern in
                pattern.hasSuffix("*") ? model.hasPrefix(pattern.dropLast()) : model == pattern
            }
        }

        /// The name and base URL; the credential is never printed.
        public var description: String { self.name == "upstream" ? self.baseURL : "\(self.name) (\(self.baseURL))" }
    }

    /// In routing order: a request goes to the first upstream that serves its model; one that names no model (a file
    /// upload, a list of batches) to the first.
    public var upstreams: [Upstream]
    /// Request bodies up to this many bytes are forwarded; larger ones are answered 413.
    public var maximumRequestBodySize: Int
    /// How long an upstream's model list is served from memory before it is asked again.
    public var modelListLifetime: Duration

    public init(upstreams: [Upstream], maximumRequestBodySize: Int = 32 * 1024 * 1024, modelListLifetime: Duration = .seconds(30)) {
        precondition(!upstreams.isEmpty, "a gateway needs an upstream")
        self.upstreams = upstreams
        self.maximumRequestBodySize = maximumRequestBodySize
        self.modelListLifetime = modelListLifetime
    }

    /// One upstream for every model (`--upstream`).
    public init(upstream: Upstream, maximumRequestBodySize: Int = 32 * 1024 * 1024, modelListLifetime: Duration = .seconds(30)) {
        self.init(upstreams: [upstream], maximumRequestBodySize: maximumRequestBodySize, modelListLifetime: modelListLifetime)
    }

    /// The upstreams file (`--upstreams-file`, docs/gateway.md#several-upstreams): a JSON object with `upstreams`, an
    /// array of `{"name", "base_url", "models", "api_key_env", "connect_timeout", "response_timeout",
    /// "read_timeout"}` (only `base_url` and `models` required; timeouts in seconds), and optionally
    /// `max_request_body_size`. Credentials are not in the file: `api_key_env` names the environment variable that
    /// holds one, and `environment` reads it.
    public static func load(contentsOf data: Data, file: String, environment: (String) -> String?) throws -> GatewayConfiguration {
        func fail(_ problem: String) -> InvalidUpstreamsFileError { InvalidUpstreamsFileError(file: file, problem: problem) }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("it is not a JSON object")
        }
        for field in root.keys where !["upstreams", "max_request_body_size"].contains(field) {
            throw fail("unknown field '\(field)'")
        }
        guard let entries = root["upstreams"] as? [Any], !entries.isEmpty else {
            throw fail("'upstreams' must be a non-empty array")
        }
        var upstreams: [Upstream] = []
        var names: Set<String> = []
        let known: Set<String> = ["name", "base_url", "models", "api_key_env", "connect_timeout", "response_timeout", "read_timeout"]
        for (index, entry) in entries.enumerated() {
            let at = "upstreams[\(index)]"
            guard let object = entry as? [String: Any] else { throw fail("\(at) must be an object") }
            for field in object.keys where !known.contains(field) { throw fail("\(at) has an unknown field '\(field)'") }
            guard let url = object["base_url"] as? String else { throw fail("\(at).base_url must be a URL") }
            let name = (object["name"] as? String) ?? "upstream \(index + 1)"
            guard names.insert(name).inserted else { throw fail("two upstreams are named '\(name)'") }
            guard let models = object["models"] as? [String], !models.isEmpty, models.allSatisfy({ !$0.isEmpty }) else {
                throw fail("\(at).models must be a non-empty array of model names or prefixes ending in '*'")
            }
            var apiKey: String?
            if let variable = object["api_key_env"] {
                guard let variable = variable as? String, !variable.isEmpty else { throw fail("\(at).api_key_env must name a variable") }
                guard let value = environment(variable), !value.isEmpty else {
                    throw fail("\(at).api_key_env names \(variable), which is not set")
                }
                apiKey = value
            }
            func seconds(_ field: String, _ defaultValue: Double) throws -> Duration {
                guard let value = object[field] else { return .milliseconds(Int64(defaultValue * 1000)) }
                guard let number = value as? NSNumber, !(value is Bool), number.doubleValue > 0, number.doubleValue <= 86_400 else {
                    throw fail("\(at).\(field) must be a number of seconds between 0 and 86400")
                }
                return .milliseconds(Int64(number.doubleValue * 1000))
            }
            do {
                upstreams.append(
                    try Upstream(
                        parsing: url,
                        apiKey: apiKey,
                        name: name,
                        models: models,
                        connectTimeout: try seconds("connect_timeout", 10),
                        responseTimeout: try seconds("response_timeout", 600),
                        readTimeout: try seconds("read_timeout", 120)
                    )
                )
            } catch let error as InvalidUpstreamError {
                throw fail("\(at).base_url: \(error)")
            }
        }
        var maximum = 32 * 1024 * 1024
        if let value = root["max_request_body_size"] {
            guard let number = value as? NSNumber, !(value is Bool), (1...(1 << 30)).contains(number.intValue) else {
                throw fail("max_request_body_size must be a number of bytes between 1 and 1073741824")
            }
            maximum = number.intValue
        }
        return GatewayConfiguration(upstreams: upstreams, maximumRequestBodySize: maximum)
    }
}

public struct InvalidUpstreamsFileError: Error, CustomStringConvertible {
    public var file: String
    public var problem: String

    public var description: String { "the upstreams file \(self.file) cannot be used: \(self.problem)" }
}

public struct InvalidUpstreamError: Error, CustomStringConvertible {
    public var text: String

    public var description: String {
        "'\(self.text)' is not an upstream URL; expected the model server's OpenAI base URL, such as http://127.0.0.1:8000/v1"
    }
}
