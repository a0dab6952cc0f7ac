import Hummingbird
import KeysmithCore
import KeysmithStore

/// The OpenAI-compatible Administration API under `/v1/organization`, plus Keysmith's marked extensions.
struct AdminRoutes: Sendable {
    let keysmith: Keysmith
    let authenticator: AdminAuthenticator

    var store: any KeysmithStore { self.keysmith.store }

    func register(on router: Router<BasicRequestContext>) {
        let base = "/v1/organization"
        router.route("\(base)/admin_api_keys", [.get: self.listAdminKeys, .post: self.createAdminKey])
        router.route("\(base)/admin_api_keys/:key_id", [.get: self.retrieveAdminKey, .delete: self.deleteAdminKey])

        router.route("\(base)/projects", [.get: self.listProjects, .post: self.createProject])
        router.route("\(base)/projects/:project_id", [.get: self.retrieveProject, .post: self.modifyProject])
        router.route("\(base)/projects/:project_id/archive", [.post: self.archiveProject])

        router.route("\(base)/projects/:project_id/api_keys", [.get: self.listAPIKeys, .post: self.createAPIKey])
        router.route(
            "\(base)/projects/:project_id/api_keys/:api_key_id",
            [.get: self.retrieveAPIKey, .post: self.updateAPIKey, .delete: self.deleteAPIKey]
        )
        router.route("\(base)/projects/:project_id/api_keys/:api_key_id/rotate", [.post: self.rotateAPIKey])

        router.route(
            "\(base)/projects/:project_id/service_accounts",
            [.get: self.listServiceAccounts, .post: self.createServiceAccount]
        )
        router.route(
            "\(base)/projects/:project_id/service_accounts/:service_account_id",
            [.get: self.retrieveServiceAccount, .post: self.updateServiceAccount, .delete: self.deleteServiceAccount]
        )
        router.route(
            "\(base)/projects/:project_id/service_accounts/:service_account_id/api_keys",
            [.post: self.createServiceAccountKey]
        )

        router.route("\(base)/projects/:project_id/users", [.get: self.listProjectUsers, .post: self.addProjectUser])
        router.route(
            "\(base)/projects/:project_id/users/:user_id",
            [.get: self.retrieveProjectUser, .post: self.modifyProjectUser, .delete: self.removeProjectUser]
        )

        router.route("\(base)/users", [.get: self.listUsers, .post: self.createUser])
        router.route("\(base)/users/:user_id", [.get: self.retrieveUser])
    }

    func read(_ request: Request) async throws -> AdminPrincipal {
        try await self.authenticator.authenticate(request, write: false)
    }

    func write(_ request: Request) async throws -> AdminPrincipal {
        try await self.authenticator.authenticate(request, write: true)
    }

    /// `scopes` as a key may carry them: at most 100 lowercase dotted names, duplicates dropped in order.
    static func validatedScopes(_ scopes: [String]?) throws -> [String]? {
        guard let scopes else { return nil }
        guard scopes.count <= 100 else {
            throw OpenAIError.invalid("Invalid 'scopes': at most 100 scopes are allowed.", param: "scopes")
        }
        var seen = Set<String>()
        var result: [String] = []
        for scope in scopes {
            let valid =
                (1...128).contains(scope.utf8.count)
                && scope.utf8.allSatisfy { byte in
                    switch byte {
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                        UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"):
                        true
                    default:
                        false
                    }
                }
            guard valid else {
                throw OpenAIError.invalid(
                    "Invalid 'scopes': '\(scope)' is not a scope. Scopes are lowercase dotted names such as 'api.model.read'.",
                    param: "scopes"
                )
            }
            if seen.insert(scope).inserted { result.append(scope) }
        }
        return result
    }

    /// `expires_in_seconds`: 1 second to 1 year, as OpenAI bounds it for admin keys; omitted means no expiry.
    static let expiryRange = 1...31_536_000
}
