import Hummingbird
import KeysmithCore
import KeysmithDomain

extension AdminRoutes {
    // MARK: Organization users: modify and delete

    /// `role`: `owner` or `reader`. The organization's last owner cannot become a reader.
    @Sendable func modifyUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        guard let role = try body.enumeration("role", as: OrganizationRole.self) else {
            throw OpenAIError.missingParameter("role")
        }
        let user = try await self.keysmith(as: context).updateUser(
            organizationID: context.principal.organizationID,
            userID: try context.parameters.requireID("user_id"),
            role: role
        )
        return Wire.response { Wire.user(&$0, user) }
    }

    /// Removes the user and their project memberships: the keys they own become inactive and stop verifying.
    @Sendable func deleteUser(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let userID: UserID = try context.parameters.requireID("user_id")
        try await self.keysmith(as: context).deleteUser(organizationID: context.principal.organizationID, userID: userID)
        return Wire.deleted("organization.user.deleted", id: userID)
    }

    // MARK: Invites

    @Sendable func listInvites(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let page = try await self.reader(context).listInvites(
            organizationID: context.principal.organizationID,
            page: try QueryParameters(request.uri.query).page()
        )
        let now = self.keysmith.clock.now()
        return Wire.list(page, id: \.id) { Wire.invite(&$0, $1, now: now) }
    }

    /// `email` and `role` (`owner` or `reader`) required; `projects` optional: omitted, the invitee joins the
    /// default project as a member; `[]`, no project.
    @Sendable func createInvite(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let email = try body.email("email")
        guard let role = try body.enumeration("role", as: OrganizationRole.self) else {
            throw OpenAIError.missingParameter("role")
        }
        let invite = try await self.keysmith(as: context).createInvite(
            organizationID: context.principal.organizationID,
            email: email,
            role: role,
            projects: try body.projectGrants("projects")
        )
        let now = self.keysmith.clock.now()
        return Wire.response { Wire.invite(&$0, invite, now: now) }
    }

    @Sendable func retrieveInvite(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let invite = try await self.reader(context).invite(
            organizationID: context.principal.organizationID,
            id: try context.parameters.requireID("invite_id")
        )
        let now = self.keysmith.clock.now()
        return Wire.response { Wire.invite(&$0, invite, now: now) }
    }

    /// Deletes a pending or expired invite; an accepted one is a 400.
    @Sendable func deleteInvite(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let inviteID: InviteID = try context.parameters.requireID("invite_id")
        try await self.keysmith(as: context).deleteInvite(organizationID: context.principal.organizationID, inviteID: inviteID)
        return Wire.deleted("organization.invite.deleted", id: inviteID)
    }

    /// Extension: accepts a pending invite on the invitee's behalf (a self-hosted service sends no email), creating
    /// the user, named `name`, with the invite's role and project memberships. Answers the new user.
    @Sendable func acceptInvite(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.parse(request)
        let accepted = try await self.keysmith(as: context).acceptInvite(
            organizationID: context.principal.organizationID,
            inviteID: try context.parameters.requireID("invite_id"),
            name: try body.string("name")
        )
        return Wire.response { Wire.user(&$0, accepted.user) }
    }

    // MARK: Audit logs

    @Sendable func listAuditLogs(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let page = try query.page()
        let before = query["before"].flatMap { $0.isEmpty ? nil : $0 }
        if page.after != nil, before != nil {
            throw OpenAIError.invalid("Invalid 'before': give 'after' or 'before', not both.", param: "before")
        }
        var types: [AuditEventType] = []
        var unrecordedTypes: [String] = []
        for text in query.all("event_types") {
            if let type = AuditEventType(rawValue: text) {
                types.append(type)
            } else if AuditEventType.openAIEventTypes.contains(text) {
                // OpenAI's, never Keysmith's: it matches no event, as at OpenAI for a type an organization has none of.
                unrecordedTypes.append(text)
            } else {
                throw OpenAIError.invalid(
                    "Invalid 'event_types': '\(text)' is not an audit log event type (see OpenAI's AuditLogEventType).",
                    param: "event_types"
                )
            }
        }
        let filter = AuditLogFilter(
            effectiveAfter: try query.integer("effective_at[gt]"),
            effectiveFrom: try query.integer("effective_at[gte]"),
            effectiveBefore: try query.integer("effective_at[lt]"),
            effectiveThrough: try query.integer("effective_at[lte]"),
            projectIDs: query.all("project_ids"),
            types: types,
            unrecordedTypes: unrecordedTypes,
            actorIDs: query.all("actor_ids"),
            actorEmails: query.all("actor_emails"),
            resourceIDs: query.all("resource_ids")
        )
        let result = try await self.reader(context).listAuditLogs(
            organizationID: context.principal.organizationID,
            filter: filter,
            limit: page.limit,
            after: page.after,
            before: before
        )
        return Wire.list(result, id: \.id, capacity: 4096, write: Wire.auditLog)
    }
}

extension QueryParameters {
    /// An integer parameter, or nil when absent.
    func integer(_ name: String) throws -> Int? {
        guard let text = self[name] else { return nil }
        guard let value = Int(text) else {
            throw OpenAIError.invalid("Invalid '\(name)': expected an integer, but got '\(text)' instead.", param: name)
        }
        return value
    }
}

extension JSONBody {
    /// An invite's `projects`: an array of `{"id": ..., "role": "member" | "owner"}`; nil when absent.
    func projectGrants(_ name: String) throws -> [Invite.ProjectGrant]? {
        guard let value = self.value(name) else { return nil }
        guard case .array(let elements) = value else {
            throw OpenAIError.invalid(
                "Invalid type for '\(name)': expected an array of objects, but got \(value.typeDescription) instead.",
                param: name
            )
        }
        guard elements.count <= 100 else {
            throw OpenAIError.invalid("Invalid '\(name)': at most 100 projects are allowed.", param: name)
        }
        var seen = Set<String>()
        return try elements.enumerated().map { index, element in
            guard case .object(let fields) = element, case .string(let id)? = fields["id"], !id.isEmpty,
                id.firstControlCharacter == nil
            else {
                throw OpenAIError.invalid("Invalid '\(name)[\(index)]': expected an object with a string 'id' and a 'role'.", param: name)
            }
            guard case .string(let roleText)? = fields["role"], let role = ProjectRole(rawValue: roleText) else {
                throw OpenAIError.invalid(
                    "Invalid '\(name)[\(index)].role': expected 'member' or 'owner'.",
                    param: name
                )
            }
            guard seen.insert(id).inserted else {
                throw OpenAIError.invalid("Invalid '\(name)': project \(id) is named twice.", param: name)
            }
            return Invite.ProjectGrant(projectID: ProjectID(rawValue: id), role: role)
        }
    }
}
