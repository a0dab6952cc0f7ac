import HTTPTypes
import Hummingbird
import KeysmithCore
import NIOCore

/// The data plane: gateways' forward-auth check, and the verify API for admins.
struct VerificationRoutes: Sendable {
    let verifier: KeyVerifier
    let usage: UsageRecorder
    let authenticator: AdminAuthenticator

    func register(on router: Router<BasicRequestContext>) {
        let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        let handlers = Dictionary(uniqueKeysWithValues: methods.map { ($0, self.check as Handler) })
        router.route("/v1/auth/check", handlers)
        // Envoy's ext_authz appends the original path to the check path: /v1/auth/check/v1/chat/completions.
        router.route("/v1/auth/check/**", handlers)
        router.route("/v1/keys/verify", [.post: self.verify])
    }

    // MARK: Forward auth

    /// 200 with identity headers for a good project or service account key; 401 (or 403 for a missing scope) in
    /// OpenAI's envelope otherwise.
    @Sendable func check(_ request: Request, context: BasicRequestContext) async throws -> Response {
        guard let token = request.headers.bearerToken(allowAPIKeyHeader: true) else {
            return OpenAIError.missingKey.response()
        }
        let verification = try await self.verifier.verify(token)
        guard verification.isValid, let keyID = verification.keyID else {
            return Self.refusal(verification.code, token: token)
        }
        if let original = Self.originalRequest(request, context: context),
            let missing = ScopeMap.missingScope(scopes: verification.scopes, method: original.method, path: original.path)
        {
            return OpenAIError(
                status: .forbidden,
                message: "You have insufficient permissions for this operation. Missing scopes: \(missing). "
                    + "Check that your API key has the right scopes.",
                code: "missing_scope"
            ).response()
        }
        self.usage.recordAPIKeyUse(keyID)
        return Response(status: .ok, headers: verification.identityHeaders)
    }

    /// The request the gateway is asking about: Traefik's `X-Forwarded-Method`/`X-Forwarded-Uri`, nginx's
    /// `X-Original-Method`/`X-Original-URI`, or Envoy's method with the original path appended to the check path.
    static func originalRequest(_ request: Request, context: BasicRequestContext) -> (method: String, path: String)? {
        let headers = request.headers
        if let method = headers[.forwardedMethod], let uri = headers[.forwardedURI] {
            return (method, uri)
        }
        if let method = headers[.originalMethod], let uri = headers[.originalURI] {
            return (method, uri)
        }
        let suffix = context.parameters.getCatchAll()
        if !suffix.isEmpty {
            return (request.method.rawValue, "/" + suffix.joined(separator: "/"))
        }
        return nil
    }

    static func refusal(_ code: VerificationCode, token: Substring) -> Response {
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
        return error.response()
    }

    // MARK: Verify API

    /// `{"key": "…"}` → whether it is good and why, for admins of the key's organization.
    @Sendable func verify(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.authenticator.authenticate(request, write: false)
        let body = try await JSONBody.parse(request)
        let presented = try body.requiredString("key", maxLength: 1024)
        var verification = try await self.verifier.verify(presented)
        // Another organization's key is not this admin's business: as unknown as a key that never existed.
        if let record = verification.record, record.key.organizationID != principal.organizationID {
            verification = Verification(code: .notFound)
        }
        return Wire.response { writer in
            writer.object { writer in
                writer.field("object", literal: "keysmith.key_verification")
                writer.field("valid", verification.isValid)
                writer.field("code", verification.code.rawValue)
                writer.key("key")
                if let record = verification.record {
                    Self.writeKey(&writer, record)
                } else {
                    writer.null()
                }
            }
        }
    }

    static func writeKey(_ writer: inout JSONWriter, _ record: KeyVerificationRecord) {
        let key = record.key
        writer.object { writer in
            writer.field("id", key.id)
            writer.field("name", key.name)
            writer.field("redacted_value", key.redactedValue)
            writer.field("organization_id", key.organizationID)
            writer.field("project_id", key.projectID)
            writer.key("owner")
            writer.object { writer in
                writer.field("type", key.owner.type)
                writer.field("id", key.owner.id)
            }
            writer.field("scopes", key.scopes)
            writer.field("created_at", key.createdAt)
            writer.field("expires_at", key.expiresAt)
            writer.field("last_used_at", key.lastUsedAt)
            writer.field("previous_secret_expires_at", record.previousSecretExpiresAt)
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
    static let forwardedMethod = Self("X-Forwarded-Method")!
    static let forwardedURI = Self("X-Forwarded-Uri")!
    static let originalMethod = Self("X-Original-Method")!
    static let originalURI = Self("X-Original-URI")!
}
