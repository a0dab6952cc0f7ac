import HTTPTypes
import Hummingbird
import KeysmithCore

/// Who is calling the Administration API: an admin key of one organization.
struct AdminPrincipal: Sendable {
    var keyID: AdminKeyID
    var organizationID: OrganizationID
}

/// What an admin route needs: OpenAI's `api.management.read` (reads) or `api.management.write` (changes).
enum AdminAccess: Sendable {
    case read
    case write

    var scope: String {
        switch self {
        case .read: "api.management.read"
        case .write: "api.management.write"
        }
    }
}

/// Checks `Authorization: Bearer sk-admin-…` from memory (the admin keys in the ``VerificationIndex``), never with
/// a database read, whatever is presented.
///
/// OpenAI's rules: no key, a malformed key, an unknown, expired or deleted key → 401; a project or service account
/// key (valid, but not an admin key) → 403 naming the missing scope.
struct AdminAuthenticator: Sendable {
    let index: VerificationIndex
    let verifier: KeyVerifier
    let usage: UsageRecorder
    let clock: KeysmithClock

    func authenticate(_ headers: HTTPFields, for access: AdminAccess) throws -> AdminPrincipal {
        guard let token = headers.bearerToken() else { throw OpenAIError.missingKey }
        return try self.authenticate(token: token, for: access)
    }

    /// The admin key `token` (say, typed into the dashboard's sign-in form), judged as a bearer token would be.
    func authenticate(token: Substring, for access: AdminAccess = .write) throws -> AdminPrincipal {
        guard let kind = KeySecret.parse(token) else { throw OpenAIError.incorrectKey(token) }
        let digest = self.verifier.hasher.digest(token)
        switch kind {
        case .admin:
            guard let key = self.index.adminKey(digest) else { throw OpenAIError.incorrectKey(token) }
            if let expiresAt = key.expiresAt, expiresAt <= self.clock.now() {
                throw OpenAIError.incorrectKey(token, detail: "This key has expired.", code: "api_key_expired")
            }
            self.usage.recordAdminKeyUse(key.id)
            return AdminPrincipal(keyID: key.id, organizationID: key.organizationID)
        case .project, .serviceAccount:
            guard self.verifier.isKnownKey(digest) else { throw OpenAIError.incorrectKey(token) }
            throw OpenAIError(
                status: .forbidden,
                message: "You have insufficient permissions for this operation. Missing scopes: \(access.scope). "
                    + "The Administration API needs an admin key (sk-admin-…); project and service account keys cannot call it.",
                code: "missing_scope"
            )
        }
    }
}

/// Authentication as middleware on a route group: every route of the group gets the principal in its context
/// (``AdminRequestContext``), or the request is refused before any handler runs.
struct AdminAuthentication: RouterMiddleware {
    typealias Context = KeysmithRequestContext

    let authenticator: AdminAuthenticator
    let access: AdminAccess

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.principal = try self.authenticator.authenticate(request.headers, for: self.access)
        return try await next(request, context)
    }
}
