import Hummingbird
import KeysmithCore
import KeysmithDomain

extension AdminRoutes {
    static let residencies = [
        "GLOBAL", "US_STORAGE_PROCESSING", "EU_STORAGE_PROCESSING", "JP_STORAGE", "JP_STORAGE_PROCESSING", "KR_STORAGE",
        "CA_STORAGE", "SG_STORAGE", "IN_STORAGE", "IN_STORAGE_PROCESSING", "AU_STORAGE", "AU_STORAGE_PROCESSING",
        "GB_STORAGE", "AE_STORAGE", "AE_STORAGE_PROCESSING",
    ]

    @Sendable func listProjects(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let page = try await self.reader(context).listProjects(
            organizationID: context.principal.organizationID,
            includeArchived: try query.bool("include_archived", default: false),
            page: try query.page()
        )
        return Wire.list(page, id: \.id, write: Wire.project)
    }

    @Sendable func createProject(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let project = try await self.keysmith(as: context).createProject(
            organizationID: context.principal.organizationID,
            name: try body.requiredString("name"),
            externalKeyID: try body.string("external_key_id"),
            residency: try body.enumeration("residency", allowed: Self.residencies)
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func retrieveProject(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let project = try await self.reader(context).project(
            organizationID: context.principal.organizationID,
            id: try context.parameters.requireID("project_id")
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func modifyProject(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let project = try await self.keysmith(as: context).updateProject(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            name: try body.string("name"),
            externalKeyID: try body.nullableString("external_key_id")
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    @Sendable func archiveProject(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let project = try await self.keysmith(as: context).archiveProject(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id")
        )
        return Wire.response { Wire.project(&$0, project) }
    }

    // MARK: Model permissions

    /// A project without model permissions answers an empty deny list: nothing is denied.
    @Sendable func retrieveModelPermissions(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let permissions = try await self.reader(context).modelPermissions(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id")
        )
        return Wire.response { Wire.modelPermissions(&$0, permissions ?? .unrestricted) }
    }

    @Sendable func updateModelPermissions(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        guard let mode = try body.enumeration("mode", as: ModelPermissions.Mode.self) else {
            throw OpenAIError.missingParameter("mode")
        }
        guard let modelIDs = try body.stringArray("model_ids") else { throw OpenAIError.missingParameter("model_ids") }
        guard modelIDs.count <= ModelPermissions.maximumModelIDs else {
            throw OpenAIError.invalid(
                "Invalid 'model_ids': array too long. Expected an array with maximum length \(ModelPermissions.maximumModelIDs), "
                    + "but got an array with length \(modelIDs.count) instead.",
                param: "model_ids"
            )
        }
        for (index, id) in modelIDs.enumerated() {
            if id.isEmpty || id.unicodeScalars.count > ModelPermissions.maximumModelIDLength || id.firstControlCharacter != nil {
                throw OpenAIError.invalid(
                    "Invalid 'model_ids[\(index)]': a model id is 1 to \(ModelPermissions.maximumModelIDLength) characters "
                        + "without control characters.",
                    param: "model_ids"
                )
            }
        }
        let permissions = try await self.keysmith(as: context).setModelPermissions(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            ModelPermissions(mode: mode, modelIDs: modelIDs)
        )
        return Wire.response { Wire.modelPermissions(&$0, permissions) }
    }

    @Sendable func deleteModelPermissions(_ request: Request, context: AdminRequestContext) async throws -> Response {
        try await self.keysmith(as: context).deleteModelPermissions(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id")
        )
        return Wire.response { writer in
            writer.object { writer in
                writer.field("object", literal: "project.model_permissions.deleted")
                writer.field("deleted", true)
            }
        }
    }

    // MARK: Organization users

    @Sendable func listUsers(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let page = try await self.reader(context).listUsers(
            organizationID: context.principal.organizationID,
            emails: query.all("emails"),
            page: try query.page()
        )
        return Wire.list(page, id: \.id, write: Wire.user)
    }

    /// Extension: OpenAI adds users only by invitation through its dashboard.
    @Sendable func createUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let user = try await self.keysmith(as: context).createUser(
            organizationID: context.principal.organizationID,
            email: try body.email("email"),
            name: try body.string("name"),
            role: try body.enumeration("role", as: OrganizationRole.self) ?? .reader
        )
        return Wire.response { Wire.user(&$0, user) }
    }

    @Sendable func retrieveUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let user = try await self.reader(context).user(
            organizationID: context.principal.organizationID,
            id: try context.parameters.requireID("user_id")
        )
        return Wire.response { Wire.user(&$0, user) }
    }

    // MARK: Project users

    @Sendable func listProjectUsers(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let page = try await self.reader(context).listProjectMembers(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            page: try QueryParameters(request.uri.query).page()
        )
        return Wire.list(page, id: \.user.id, write: Wire.projectUser)
    }

    /// Adds an organization user to a project, named by `user_id` or by `email`.
    @Sendable func addProjectUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let role = try body.enumeration("role", as: ProjectRole.self)
        let user: Keysmith.UserReference
        if let userID = try body.string("user_id").map(UserID.init(rawValue:)) {
            user = .id(userID)
        } else if let email = try body.string("email", maxLength: 320) {
            user = .email(email)
        } else {
            throw OpenAIError.missingParameter("user_id")
        }
        guard let role else { throw OpenAIError.missingParameter("role") }
        let member = try await self.keysmith(as: context).addProjectMember(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            user: user,
            role: role
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    @Sendable func retrieveProjectUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let member = try await self.reader(context).projectMember(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            userID: try context.parameters.requireID("user_id")
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    @Sendable func modifyProjectUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        guard let role = try body.enumeration("role", as: ProjectRole.self) else {
            throw OpenAIError.missingParameter("role")
        }
        let member = try await self.keysmith(as: context).updateProjectMember(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            userID: try context.parameters.requireID("user_id"),
            role: role
        )
        return Wire.response { Wire.projectUser(&$0, member) }
    }

    /// Removes the membership; the user's keys in the project stay, inactive, and stop verifying.
    @Sendable func removeProjectUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let userID: UserID = try context.parameters.requireID("user_id")
        try await self.keysmith(as: context).removeProjectMember(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            userID: userID
        )
        return Wire.deleted("organization.project.user.deleted", id: userID)
    }
}
