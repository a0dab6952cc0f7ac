import HTTPTypes

/// Where a gateway says which request a check is about.
public enum RequestDescriptionSource: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `X-Original-Method` and `X-Original-URI`, as the nginx recipe sets them.
    case nginx
    /// `X-Forwarded-Method` and `X-Forwarded-Uri`, which Traefik's forwardAuth and Caddy's forward_auth set.
    case traefik
    /// The check's own method, and the original path appended to `/v1/auth/check` (Envoy's ext_authz).
    case envoy

    /// Accepts the names `--trusted-request-headers` documents; `caddy` sends what Traefik does.
    public init?(name: String) {
        switch name.lowercased() {
        case "nginx": self = .nginx
        case "traefik", "caddy": self = .traefik
        case "envoy": self = .envoy
        default: return nil
        }
    }

    public var description: String { self.rawValue }

    /// What this source is made of, for messages.
    var spelling: String {
        switch self {
        case .nginx: "X-Original-Method and X-Original-URI"
        case .traefik: "X-Forwarded-Method and X-Forwarded-Uri"
        case .envoy: "the original path after /v1/auth/check"
        }
    }
}

/// The request a check is about, as the gateway describes it.
///
/// Without a trusted source named, every description the check carries is read: nginx's headers, Traefik's (and
/// Caddy's), and Envoy's path. One is enough; several that describe the same request (the same method, and the same
/// path once resolved as an upstream resolves it) are one; several that disagree, a header sent twice, or half of a
/// pair of headers mean that someone other than the gateway wrote one of them (a client's own header that the gateway
/// passed on), and the check is refused rather than guessing which to believe. With a trusted source named, only that
/// one is read.
enum OriginalRequest: Equatable {
    /// The gateway described the request.
    case request(method: String, path: String)
    /// Nothing describes it.
    case absent
    /// The descriptions disagree, or one is incomplete; the reason, for the refusal's message.
    case untrustworthy(String)

    static func described(
        method: HTTPRequest.Method,
        headers: HTTPFields,
        suffix: [Substring],
        trusting trusted: RequestDescriptionSource?
    ) -> OriginalRequest {
        var found: (source: RequestDescriptionSource, method: String, path: String)?
        for source in RequestDescriptionSource.allCases where trusted == nil || trusted == source {
            let description: (method: String, path: String)
            switch source {
            case .nginx, .traefik:
                let (methodName, uriName): (HTTPField.Name, HTTPField.Name) =
                    source == .nginx ? (.originalMethod, .originalURI) : (.forwardedMethod, .forwardedURI)
                // Sent twice, a header is two descriptions (a gateway that appends to the client's rather than
                // replacing it), which `headers[name]` would join into one value.
                for name in [methodName, uriName] where headers[fields: name].count > 1 {
                    return .untrustworthy("\(name.rawName) was sent more than once")
                }
                switch (headers[methodName], headers[uriName]) {
                case (nil, nil):
                    continue
                case (let method?, let uri?):
                    description = (method, uri)
                default:
                    return .untrustworthy("\(source.spelling) go together, and only one was sent")
                }
            case .envoy:
                guard !suffix.isEmpty else { continue }
                description = (method.rawValue, "/" + suffix.joined(separator: "/"))
            }
            guard let first = found else {
                found = (source, description.method, description.path)
                continue
            }
            guard first.method.uppercased() == description.method.uppercased(),
                ScopeMap.normalize(first.path) == ScopeMap.normalize(description.path)
            else {
                return .untrustworthy(
                    "\(first.source.spelling): \(first.method.uppercased()) \(ScopeMap.normalize(first.path)); "
                        + "\(source.spelling): \(description.method.uppercased()) \(ScopeMap.normalize(description.path))"
                )
            }
        }
        guard let found else { return .absent }
        return .request(method: found.method, path: found.path)
    }

    /// What a gateway must send, for messages.
    static func expected(_ trusted: RequestDescriptionSource?) -> String {
        trusted.map(\.spelling) ?? RequestDescriptionSource.allCases.map(\.spelling).joined(separator: ", or ")
    }
}
