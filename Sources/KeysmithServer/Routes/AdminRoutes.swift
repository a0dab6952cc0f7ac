import Hummingbird
import KeysmithCore
import KeysmithDomain

/// The OpenAI-compatible Administration API under `/v1/organization`, plus Keysmith's marked extensions.
///
/// Handlers read through the store's read side (``reader(_:)``) and write only through the domain layer
/// (``keysmith(as:)``), both logging to the request's logger.
struct AdminRoutes: Sendable {
    let keysmith: Keysmith
    /// The operator's default rate limits, which every project's list of rate limits starts from.
    var rateLimits = RateLimitConfiguration()

    /// The store's read side, logging to the request's logger.
    func reader(_ context: AdminRequestContext) -> any KeysmithStoreReader {
        self.keysmith.logging(to: context.logger).reader
    }

    /// The domain layer, its writes recorded in the audit log as made with the request's admin key, logging to the
    /// request's logger.
    func keysmith(as context: AdminRequestContext) -> Keysmith {
        self.keysmith.acting(as: .adminKey(id: context.principal.keyID)).logging(to: context.logger)
    }

    func register(on router: AdminRouter) {
        let base = "/v1/organization"
        router.route("\(base)/admin_api_keys", [.get: .read(self.listAdminKeys), .post: .write(self.createAdminKey)])
        router.route("\(base)/admin_api_keys/:key_id", [.get: .read(self.retrieveAdminKey), .delete: .write(self.deleteAdminKey)])

        router.route("\(base)/projects", [.get: .read(self.listProjects), .post: .write(self.createProject)])
        router.route("\(base)/usage/completions", [.get: .read(self.usageCompletions)])
        router.route("\(base)/usage/embeddings", [.get: .read(self.usageEmbeddings)])
        router.route("\(base)/projects/:project_id", [.get: .read(self.retrieveProject), .post: .write(self.modifyProject)])
        router.route("\(base)/projects/:project_id/archive", [.post: .write(self.archiveProject)])
        router.route("\(base)/projects/:project_id/rate_limits", [.get: .read(self.listRateLimits)])
        router.route("\(base)/projects/:project_id/rate_limits/:rate_limit_id", [.post: .write(self.updateRateLimit)])
        router.route(
            "\(base)/projects/:project_id/model_permissions",
            [.get: .read(self.retrieveModelPermissions), .post: .write(self.updateModelPermissions), .delete: .write(self.deleteModelPermissions)]
        )

        router.route("\(base)/projects/:project_id/api_keys", [.get: .read(self.listAPIKeys), .post: .write(self.createAPIKey)])
        router.route(
            "\(base)/projects/:project_id/api_keys/:api_key_id",
            [.get: .read(self.retrieveAPIKey), .post: .write(self.updateAPIKey), .delete: .write(self.deleteAPIKey)]
        )
        router.route("\(base)/projects/:project_id/api_keys/:api_key_id/rotate", [.post: .write(self.rotateAPIKey)])
        router.route(
            "\(base)/projects/:project_id/api_keys/:api_key_id/rate_limits",
            [.get: .read(self.retrieveAPIKeyRateLimits), .post: .write(self.updateAPIKeyRateLimits)]
        )

        router.route(
            "\(base)/projects/:project_id/service_accounts",
            [.get: .read(self.listServiceAccounts), .post: .write(self.createServiceAccount)]
        )
        router.route(
            "\(base)/projects/:project_id/service_accounts/:service_account_id",
            [
                .get: .read(self.retrieveServiceAccount), .post: .write(self.updateServiceAccount),
                .delete: .write(self.deleteServiceAccount),
            ]
        )
        router.route(
            "\(base)/projects/:project_id/service_accounts/:service_account_id/api_keys",
            [.post: .write(self.createServiceAccountKey)]
        )

        router.route("\(base)/projects/:project_id/users", [.get: .read(self.listProjectUsers), .post: .write(self.addProjectUser)])
        router.route(
            "\(base)/projects/:project_id/users/:user_id",
            [.get: .read(self.retrieveProjectUser), .post: .write(self.modifyProjectUser), .delete: .write(self.removeProjectUser)]
        )

        router.route("\(base)/users", [.get: .read(self.listUsers), .post: .write(self.createUser)])
        router.route(
            "\(base)/users/:user_id",
            [.get: .read(self.retrieveUser), .post: .write(self.modifyUser), .delete: .write(self.deleteUser)]
        )

        router.route("\(base)/invites", [.get: .read(self.listInvites), .post: .write(self.createInvite)])
        router.route("\(base)/invites/:invite_id", [.get: .read(self.retrieveInvite), .delete: .write(self.deleteInvite)])
        router.route("\(base)/invites/:invite_id/accept", [.post: .write(self.acceptInvite)])

        router.route("\(base)/audit_logs", [.get: .read(self.listAuditLogs)])
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
