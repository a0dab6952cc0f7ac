import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithStore
import NIOCore

/// The data plane: gateways' forward-auth check, and the verify API for admins.
struct VerificationRoutes: Sendable {
    let verifier: KeyVerifier
    let usage: UsageRecorder
    let reader: any KeysmithStoreReader
    let health: VerificationHealth

    func register(on router: AdminRouter) {
        let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        let handlers = Dictionary(uniqueKeysWithValues: methods.map { ($0, self.check as Handler) })
        router.router.route("/v1/auth/check", handlers)
        // Envoy's ext_authz appends the original path to the check path: /v1/auth/check/v1/chat/completions.
        router.router.route("/v1/auth/check/**", handlers)
        router.route("/v1/keys/verify", [.post: .read(self.verify)])
    }

    // MARK: Forward auth

    /// 200 with identity headers for a good project or service account key; 401 (or 403 for a missing scope) in
    /// OpenAI's envelope otherwise. Answered from memory, whatever the key; `X-Keysmith-Stale: true` when that memory
    /// may be behind the database (see ``VerificationHealth``).
    @Sendable func check(_ request: Request, context: KeysmithRequestContext) async throws -> Response {
        var response = self.answer(request, context: context)
        if self.health.isStale {
            response.headers[.keysmithStale] = "true"
        }
        return response
    }

    private func answer(_ request: Request, context: KeysmithRequestContext) -> Response {
        guard let token = request.headers.bearerToken(allowAPIKeyHeader: true) else {
            return OpenAIError.missingKey.response()
        }
        let verification = self.verifier.verify(token)
        guard verification.isValid, let key = verification.key else {
            return Self.refusal(verification.code, token: token)
        }
        if let original = Self.originalRequest(request, context: context),
            let missing = ScopeMap.missingScope(scopes: key.scopes, method: original.method, path: original.path)
        {
            return OpenAIError(
                status: .forbidden,
                message: "You have insufficient permissions for this operation. Missing scopes: \(missing). "
                    + "Check that your API key has the right scopes.",
                code: "missing_scope"
            ).response()
        }
        self.usage.recordAPIKeyUse(key.id)
        return Response(status: .ok, headers: key.identityHeaders)
    }

    /// The request the gateway is asking about: Traefik's `X-Forwarded-Method`/`X-Forwarded-Uri`, nginx's
    /// `X-Original-Method`/`X-Original-URI`, or Envoy's method with the original path appended to the check path.
    static func originalRequest(_ request: Request, context: KeysmithRequestContext) -> (method: String, path: String)? {
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
                    let stored = try await self.reader.apiKey(
                        id: key.id,
                        projectID: key.project.id,
                        organizationID: key.project.organizationID
                    )
                    details = (stored, verification.previousSecretExpiresAt)
                } catch KeysmithError.notFound {
                    // Deleted between the verdict and the read.
                    verification = Verification(code: .revoked)
                }
            }
        } else if verification.code == .notFound, KeySecret.parse(presented).map({ $0 != .admin }) ?? false {
            let revoked = try await self.reader.revokedSecret(secretHash: self.verifier.hasher.hash(presented))
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
    static let forwardedMethod = Self("X-Forwarded-Method")!
    static let forwardedURI = Self("X-Forwarded-Uri")!
    static let originalMethod = Self("X-Original-Method")!
    static let originalURI = Self("X-Original-URI")!
}
