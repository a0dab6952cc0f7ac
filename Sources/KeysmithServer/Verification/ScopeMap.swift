import KeysmithCore

/// Which scope an OpenAI-style request needs, for keys that carry scopes.
///
/// A key without scopes may do anything. A key with scopes may make a request when one of its scopes is the one
/// the request's route needs, or when it has `api.all.read` and the request only reads (GET or HEAD). Routes the
/// map does not know are refused to scoped keys. docs/gateways.md documents the table.
enum ScopeMap {
    struct Rule: Sendable {
        /// Nil matches any method.
        var methods: Set<String>?
        /// Matches the path itself and any path below it.
        var prefix: String
        var scope: String
    }

    static let rules: [Rule] = [
        Rule(methods: ["GET", "HEAD"], prefix: "/v1/models", scope: "api.model.read"),
        Rule(methods: ["POST"], prefix: "/v1/chat/completions", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/completions", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/responses", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/embeddings", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/moderations", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/audio", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/images", scope: "api.model.request"),
        Rule(methods: ["POST"], prefix: "/v1/rerank", scope: "api.model.request"),
        Rule(methods: ["GET", "HEAD"], prefix: "/v1/responses", scope: "api.responses.read"),
        Rule(methods: ["DELETE"], prefix: "/v1/responses", scope: "api.responses.write"),
        Rule(methods: ["GET", "HEAD"], prefix: "/v1/files", scope: "api.files.read"),
        Rule(methods: ["POST", "DELETE"], prefix: "/v1/files", scope: "api.files.write"),
        Rule(methods: ["GET", "HEAD"], prefix: "/v1/batches", scope: "api.batch.read"),
        Rule(methods: ["POST"], prefix: "/v1/batches", scope: "api.batch.write"),
    ]

    /// The scope `method path` needs, or nil when no rule knows the route.
    static func requiredScope(method: String, path: some StringProtocol) -> String? {
        let path = Self.normalize(path)
        let method = method.uppercased()
        for rule in self.rules where rule.methods.map({ $0.contains(method) }) ?? true {
            if path == rule.prefix || path.hasPrefix(rule.prefix + "/") {
                return rule.scope
            }
        }
        return nil
    }

    /// Nil when the key may make the request; otherwise the scope it lacks (for a route the map does not know,
    /// a description of it).
    static func missingScope(scopes: [String], method: String, path: some StringProtocol) -> String? {
        guard !scopes.isEmpty else { return nil }
        let isRead = ["GET", "HEAD"].contains(method.uppercased())
        if isRead && scopes.contains("api.all.read") { return nil }
        guard let required = Self.requiredScope(method: method, path: path) else {
            return "a scope for \(method.uppercased()) \(Self.normalize(path)) (no scope covers it)"
        }
        return scopes.contains(required) ? nil : required
    }

    /// The path as an upstream would resolve it: without query string or fragment, percent-decoded, with `.` and
    /// `..` segments resolved and empty segments dropped. Gateways pass the raw request URI (nginx's
    /// `$request_uri`), so `/v1/models/../files` must be judged as `/v1/files`.
    static func normalize(_ path: some StringProtocol) -> String {
        let withoutQuery = path.prefix { $0 != "?" && $0 != "#" }
        var resolved: [Substring] = []
        for segment in PercentEncoding.decode(withoutQuery, plusAsSpace: false).split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = resolved.popLast()
            default: resolved.append(segment)
            }
        }
        return "/" + resolved.joined(separator: "/")
    }
}
