import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain
import NIOCore

/// The data plane: gateways' forward-auth check, and the verify API for admins.
///
/// A check is usually answered below Hummingbird, on the connection's event loop, by ``ForwardAuthChannelHandler``;
/// the routes here answer the checks it passes on (see its documentation for which), with the same ``ForwardAuth``.
struct VerificationRoutes: Sendable {
    let forwardAuth: ForwardAuth
    let keysmith: Keysmith

    var verifier: KeyVerifier { self.forwardAuth.verifier }

    /// The checks on `router` (a check authenticates with the key it checks; an admin key only adds details), and
    /// `/v1/keys/verify` behind the admin routes' authentication.
    func register(checksOn router: Router<KeysmithRequestContext>, adminRoutesOn admin: AdminRouter) {
        let handlers = Dictionary(uniqueKeysWithValues: ForwardAuth.methods.map { ($0, self.check as Handler) })
        router.route("/v1/auth/check", handlers)
        // Envoy's ext_authz appends the original path to the check path: /v1/auth/check/v1/chat/completions.
        router.route("/v1/auth/check/**", handlers)
        admin.route("/v1/keys/verify", [.post: .read(self.verify)])
    }

    // MARK: Forward auth

    @Sendable func check(_ request: Request, context: KeysmithRequestContext) async throws -> Response {
        // A body (the original request's, when the gateway forwards it) is read as on the event loop, and refused past
        // the same size.
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: ForwardAuthChannelHandler.maximumBodySize)
        } catch is NIOTooManyBytesError {
            throw ForwardAuthChannelHandler.bodyTooLarge
        }
        let answer: ForwardAuth.Answer
        switch self.forwardAuth.answer(method: request.method, headers: request.headers, suffix: context.parameters.getCatchAll(), body: body) {
        case .now(let now): answer = now
        case .afterLease(let later): answer = await later()
        }
        return Response(status: answer.status, headers: answer.headers, body: answer.body.map { .init(byteBuffer: $0) } ?? .init())
    }
}

/// What `/v1/auth/check` answers, whichever layer received the request.
struct ForwardAuth: Sendable {
    let verifier: KeyVerifier
    let usage: UsageRecorder
    let health: VerificationHealth
    let limiter: RateLimiter
    /// The one place the original request is read from, when the operator named one; nil reads every place and
    /// refuses a check whose descriptions disagree.
    var trustedSource: RequestDescriptionSource? = nil

    /// The methods a gateway forwards; others are not a check (404, as for any unknown route).
    static let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]

    struct Answer {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        /// The error envelope for a refusal; nil for a 200, whose answer is all in its headers.
        var body: ByteBuffer?
    }

    /// An answer now, or once a rate limit's lease has been taken from the database (the first check of a window,
    /// or one that finds the lease used up).
    enum Outcome: Sendable {
        case now(Answer)
        case afterLease(@Sendable () async -> Answer)
    }

    /// 200 with identity headers for a good project or service account key; 401 in OpenAI's envelope for a bad one;
    /// 403 for a scoped key whose scopes do not cover the original request, or that comes without one, and for any
    /// check whose description of the original request cannot be trusted. Answered from memory, whatever the key;
    /// `X-Keysmith-Stale: true` when that memory may be behind the database (see ``VerificationHealth``). `suffix` is
    /// what follows `/v1/auth/check/` in the path, split at its slashes (Envoy's original path). `body` is the
    /// check's: the original request's when the gateway forwards it (Envoy's `with_request_body`, Traefik's
    /// `forwardBody`), which is where a project's model permissions find the model (see ``ModelAccess``).
    func answer(method: HTTPRequest.Method, headers: HTTPFields, suffix: [Substring], body: ByteBuffer? = nil) -> Outcome {
        let health = self.health
        @Sendable func marked(_ answer: Answer) -> Answer {
            var answer = answer
            if health.isStale {
                answer.headers[.keysmithStale] = "true"
            }
            return answer
        }
        switch self.decide(method: method, headers: headers, suffix: suffix, body: body) {
        case .now(let answer): return .now(marked(answer))
        case .afterLease(let later): return .afterLease { marked(await later()) }
        }
    }

    private func decide(method: HTTPRequest.Method, headers: HTTPFields, suffix: [Substring], body: ByteBuffer?) -> Outcome {
        let key: IndexedKey
        switch self.authenticate(headers) {
        case .success(let verified): key = verified
        case .failure(let refusal): return .now(Answer(refusal))
        }
        let model: ModelAccess.RequestModel
        var isModelList = false
        switch OriginalRequest.described(method: method, headers: headers, suffix: suffix, trusting: self.trustedSource) {
        case .untrustworthy(let reason):
            return .now(
                Answer(
                    OpenAIError(
                        status: .forbidden,
                        message: "The check's description of the original request cannot be trusted: \(reason). "
                            + "A gateway must send one description of the request it forwards (see docs/gateways.md).",
                        code: "conflicting_original_request"
                    )
                )
            )
        case .absent:
            guard key.scopes.isEmpty else {
                return .now(
                    Answer(
                        OpenAIError(
                            status: .forbidden,
                            message: "This key has scopes (\(key.scopes.joined(separator: ", "))), so the request it makes must be "
                                + "known: the gateway must pass the original method and URI "
                                + "(\(OriginalRequest.expected(self.trustedSource)); see docs/gateways.md).",
                            code: "original_request_required"
                        )
                    )
                )
            }
            // Nothing says what the request does, so nor which model it uses.
            model = .unknown
        case .request(let originalMethod, let originalPath):
            if let refusal = Self.scopeRefusal(key, method: originalMethod, path: originalPath) {
                return .now(Answer(refusal))
            }
            // Envoy marks a body it cut at its `max_request_bytes`: not one to read a model from.
            let isPartial = headers[.envoyPartialBody]?.lowercased() == "true"
            // The path as the upstream resolves it, as the scopes judge it: `/v1/models/../chat/completions` is a
            // completion, not a model's lookup.
            let resolved = ScopeMap.normalize(originalPath)
            model =
                self.needsModel(key)
                ? ModelAccess.requestModel(method: originalMethod, path: resolved, body: isPartial ? nil : body, isResolved: true) : .none
            // Reading the model list is not a request to a model.
            isModelList = resolved == "/v1/models" || resolved.hasPrefix("/v1/models/")
        }
        if let permissions = key.project.modelPermissions, let refusal = ModelAccess.refusal(permissions, projectID: key.project.id, model: model) {
            return .now(Answer(refusal))
        }
        if isModelList { return .now(self.admitted(key, limits: nil)) }
        let demand: RateLimiter.Demand
        switch self.limiter.demand(key, model: model, tokens: 0) {
        case .failure(let refusal): return .now(Answer(refusal))
        case .success(nil): return .now(self.admitted(key, limits: nil))
        case .success(let made?): demand = made
        }
        if let verdict = self.limiter.admitFromLease(demand) { return .now(self.answer(key, verdict)) }
        let limiter = self.limiter
        return .afterLease { self.answer(key, await limiter.admit(demand)) }
    }

    /// Whether the model a request of `key` uses must be read (from its path or body): only when its project's model
    /// permissions or rate limits depend on it, since reading a body is most of a check's cost.
    func needsModel(_ key: IndexedKey) -> Bool {
        key.project.modelPermissions != nil || self.limiter.limitsSomeModel(project: key.project)
    }

    private func answer(_ key: IndexedKey, _ verdict: RateLimiter.Verdict) -> Answer {
        switch verdict {
        case .admitted(let ticket): self.admitted(key, limits: ticket.headers)
        case .refused(let refusal): Answer(refusal)
        }
    }

    /// A good check's answer: the key's identity, and its limits' state when it has any.
    private func admitted(_ key: IndexedKey, limits: HTTPFields?) -> Answer {
        self.usage.recordAPIKeyUse(key.id)
        guard let limits, !limits.isEmpty else { return Answer(status: .ok, headers: key.identityHeaders, body: nil) }
        var headers = key.identityHeaders
        headers.append(contentsOf: limits)
        return Answer(status: .ok, headers: headers, body: nil)
    }

    /// The gateway's verdict on a request it received itself, so that what it asks for is known without a header
    /// to trust: the same key verdict as a check's, and the scopes judged on `method` and `path` themselves.
    func admit(method: String, path: some StringProtocol, headers: HTTPFields) -> Result<IndexedKey, OpenAIError> {
        switch self.authenticate(headers) {
        case .success(let key):
            if let refusal = Self.scopeRefusal(key, method: method, path: path) { return .failure(refusal) }
            self.usage.recordAPIKeyUse(key.id)
            return .success(key)
        case .failure(let refusal):
            return .failure(refusal)
        }
    }

    /// The project or service account key the request's `Authorization` (or `X-Api-Key`) header carries, if it is
    /// good; otherwise the 401 that says why.
    private func authenticate(_ headers: HTTPFields) -> Result<IndexedKey, OpenAIError> {
        guard let token = headers.bearerToken(allowAPIKeyHeader: true) else {
            return .failure(OpenAIError.missingKey)
        }
        let verification = self.verifier.verify(token)
        guard verification.isValid, let key = verification.key else {
            return .failure(Self.refusal(verification.code, token: token))
        }
        return .success(key)
    }

    /// The 403 for a key whose scopes do not cover `method path`; nil when they do (or it has none).
    private static func scopeRefusal(_ key: IndexedKey, method: String, path: some StringProtocol) -> OpenAIError? {
        guard let missing = ScopeMap.missingScope(scopes: key.scopes, method: method, path: path) else { return nil }
        return OpenAIError(
            status: .forbidden,
            message: "You have insufficient permissions for this operation. Missing scopes: \(missing). "
                + "Check that your API key has the right scopes.",
            code: "missing_scope"
        )
    }

    static func refusal(_ code: VerificationCode, token: Substring) -> OpenAIError {
        let error: OpenAIError
        switch code {
        case .expired:
            error = .incorrectKey(token, detail: "This key has expired.", code: "api_key_expired")
        case .projectArchived:
            error = .incorrectKey(token, detail: "Its project is archived.")
        case .ownerInactive:
            error = .incorrectKey(token, detail: "Its owner is no longer a member of the project.")
        case .valid, .malformed, .notFound, .revoked:
            let isAdminKey = token.hasPrefix(KeyKind.admin.prefix)
            error = .incorrectKey(token, detail: isAdminKey ? "Admin keys cannot call the API; use a project key." : nil)
        }
        return error
    }
}

extension ForwardAuth.Answer {
    init(_ error: OpenAIError) {
        let (headers, body) = error.encoded()
        self.init(status: error.status, headers: headers, body: body)
    }
}

extension VerificationRoutes {

    // MARK: Verify API

    /// `{"key": "…"}` → whether it is good and why, for admins of the key's organization.
    ///
    /// The verdict comes from memory, like a check's. Only what a check never needs is read from the database: the
    /// key's details for the answer, and, for a secret the index does not hold, whether it was revoked or never
    /// existed.
    @Sendable func verify(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let presented = try body.requiredString("key", maxLength: 1024)
        var verification = self.verifier.verify(presented)
        var details: (key: APIKey, previousSecretExpiresAt: UnixSeconds?)?
        if let key = verification.key {
            if key.project.organizationID != context.principal.organizationID {
                // Another organization's key is not this admin's business: as unknown as a key that never existed.
                verification = Verification(code: .notFound)
            } else {
                do {
                    let stored = try await self.keysmith.logging(to: context.logger).reader.apiKey(
                        organizationID: key.project.organizationID,
                        projectID: key.project.id,
                        id: key.id
                    )
                    details = (stored, verification.previousSecretExpiresAt)
                } catch KeysmithError.notFound {
                    // Deleted between the verdict and the read.
                    verification = Verification(code: .revoked)
                }
            }
        } else if verification.code == .notFound, KeySecret.parse(presented).map({ $0 != .admin }) ?? false {
            let revoked = try await self.keysmith.logging(to: context.logger).reader.revokedSecret(secretHash: self.verifier.hasher.hash(presented))
            if let revoked, revoked.organizationID == context.principal.organizationID {
                verification = Verification(code: .revoked)
            }
        }
        return Wire.response { writer in
            writer.object { writer in
                writer.field("object", literal: "keysmith.key_verification")
                writer.field("valid", verification.isValid)
                writer.field("code", verification.code.rawValue)
                writer.key("key")
                if let details {
                    Self.writeKey(&writer, details.key, previousSecretExpiresAt: details.previousSecretExpiresAt)
                } else {
                    writer.null()
                }
            }
        }
    }

    static func writeKey(_ writer: inout JSONWriter, _ key: APIKey, previousSecretExpiresAt: UnixSeconds?) {
        writer.object { writer in
            writer.field("id", key.id)
            writer.field("name", key.name)
            writer.field("redacted_value", key.redactedValue)
            writer.field("organization_id", key.organizationID)
            writer.field("project_id", key.projectID)
            writer.key("owner")
            writer.object { writer in
                writer.field("type", key.owner.type.rawValue)
                writer.field("id", key.owner.id)
            }
            writer.field("scopes", key.scopes)
            writer.field("created_at", key.createdAt)
            writer.field("expires_at", key.expiresAt)
            writer.field("last_used_at", key.lastUsedAt)
            writer.field("previous_secret_expires_at", previousSecretExpiresAt)
        }
    }
}

extension HTTPField.Name {
    static let keysmithOrganizationID = Self("X-Keysmith-Organization-Id")!
    static let keysmithProjectID = Self("X-Keysmith-Project-Id")!
    static let keysmithKeyID = Self("X-Keysmith-Key-Id")!
    static let keysmithOwnerType = Self("X-Keysmith-Owner-Type")!
    static let keysmithOwnerID = Self("X-Keysmith-Owner-Id")!
    static let keysmithScopes = Self("X-Keysmith-Scopes")!
    static let keysmithStale = Self("X-Keysmith-Stale")!
    static let envoyPartialBody = Self("X-Envoy-Auth-Partial-Body")!
    static let forwardedMethod = Self("X-Forwarded-Method")!
    static let forwardedURI = Self("X-Forwarded-Uri")!
    static let originalMethod = Self("X-Original-Method")!
    static let originalURI = Self("X-Original-URI")!
}
