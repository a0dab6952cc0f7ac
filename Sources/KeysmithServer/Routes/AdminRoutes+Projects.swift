import Hummingbird
import KeysmithCore
import KeysmithStore

extension AdminRoutes {
    static let residencies = [
        "GLOBAL", "US_STORAGE_PROCESSING", "EU_STORAGE_PROCESSING", "JP_STORAGE", "JP_STORAGE_PROCESSING", "KR_STORAGE",
        "CA_STORAGE", "SG_STORAGE", "IN_STORAGE", "IN_STORAGE_PROCESSING", "AU_STORAGE", "AU_STORAGE_PROCESSING",
        "GB_STORAGE", "AE_STORAGE", "AE_STORAGE_PROCESSING",
    ]

    @Sendable func listProjects(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let query = QueryParameters(request.uri.query)
        let page = try await self.store.listProjects(
            organizationID: principal.organizationID,
            includeArchived: try query.bool("include_archived", default: false),
            page: try query.page()
        )
        return Wire.list(page, id: \.id, write: Wire.project)
    }

    @Sendable func createProject(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let body = try await JSONBody.parse(request)
        let project = try await self.keysmith.createProject(
            organizationID: principal.organizationID,
            name: try body.requiredString("name"),
            externalKeyID: try body.string("external_key_id"),
            residency: try body.enumeration("residency", allowed: Self.residencies)
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func retrieveProject(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let project = try await self.store.project(id: context.parameters.path("project_id"), organizationID: principal.organizationID)
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func modifyProject(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let body = try await JSONBody.parse(request)
        let project = try await self.store.updateProject(
            id: context.parameters.path("project_id"),
            organizationID: principal.organizationID,
            name: try body.string("name"),
            externalKeyID: try body.nullableString("external_key_id")
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func archiveProject(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let project = try await self.keysmith.archiveProject(
            organizationID: principal.organizationID,
            projectID: context.parameters.path("project_id")
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    // MARK: Organization users

    @Sendable func listUsers(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let query = QueryParameters(request.uri.query)
        let page = try await self.store.listUsers(
            organizationID: principal.organizationID,
            emails: query.all("emails"),
            page: try query.page()
        )
        return Wire.list(page, id: \.id, write: Wire.user)
    }

    /// Extension: OpenAI adds users only by invitation through its dashboard.
    @Sendable func createUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let body = try await JSONBody.parse(request)
        let email = try body.requiredString("email", maxLength: 320)
        guard Self.isPlausibleEmail(email) else {
            throw OpenAIError.invalid("Invalid 'email': '\(email)' is not an email address.", param: "email")
        }
        let user = try await self.keysmith.createUser(
            organizationID: principal.organizationID,
            email: email,
            name: try body.string("name"),
            role: try body.enumeration("role", allowed: ["owner", "reader"]) ?? "reader"
        )
        return Wire.response { Wire.user(&$0, user) }
    }

    @Sendable func retrieveUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let user = try await self.store.user(id: context.parameters.path("user_id"), organizationID: principal.organizationID)
        return Wire.response { Wire.user(&$0, user) }
    }

    static func isPlausibleEmail(_ email: String) -> Bool {
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".")
            && !parts[1].hasSuffix(".") && !email.contains(where: \.isWhitespace)
    }

    // MARK: Project users

    @Sendable func listProjectUsers(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let page = try await self.store.listProjectMembers(
            projectID: context.parameters.path("project_id"),
            organizationID: principal.organizationID,
            page: try QueryParameters(request.uri.query).page()
        )
        return Wire.list(page, id: \.user.id, write: Wire.projectUser)
    }

    /// Adds an organization user to a project, named by `user_id` or by `email`.
    @Sendable func addProjectUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let body = try await JSONBody.parse(request)
        let role = try body.enumeration("role", allowed: ["owner", "member"])
        var userID = try body.string("user_id")
        if userID == nil, let email = try body.string("email", maxLength: 320) {
            let page = try await self.store.listUsers(
                organizationID: principal.organizationID,
                emails: [email],
                page: PageRequest(limit: 1)
            )
            guard let user = page.items.first else {
                throw OpenAIError.invalid("No user with email \(email) in this organization.", param: "email")
            }
            userID = user.id
        }
        guard let userID else { throw OpenAIError.missingParameter("user_id") }
        guard let role else { throw OpenAIError.missingParameter("role") }
        let member = try await self.keysmith.addProjectMember(
            organizationID: principal.organizationID,
            projectID: context.parameters.path("project_id"),
            userID: userID,
            role: role
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    @Sendable func retrieveProjectUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.read(request)
        let member = try await self.store.projectMember(
            projectID: context.parameters.path("project_id"),
            organizationID: principal.organizationID,
            userID: context.parameters.path("user_id")
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    @Sendable func modifyProjectUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let body = try await JSONBody.parse(request)
        guard let role = try body.enumeration("role", allowed: ["owner", "member"]) else {
            throw OpenAIError.missingParameter("role")
        }
        let member = try await self.store.updateProjectMember(
            projectID: context.parameters.path("project_id"),
            organizationID: principal.organizationID,
            userID: context.parameters.path("user_id"),
            role: role
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    /// Removes the membership; the user's keys in the project stay, inactive, and stop verifying.
    @Sendable func removeProjectUser(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let principal = try await self.write(request)
        let userID = context.parameters.path("user_id")
        try await self.keysmith.removeProjectMember(
            organizationID: principal.organizationID,
            projectID: context.parameters.path("project_id"),
            userID: userID
        )
        return Wire.deleted("organization.project.user.deleted", id: userID)
    }
}
