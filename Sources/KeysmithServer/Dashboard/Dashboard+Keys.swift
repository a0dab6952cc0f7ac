import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// A project's keys: the list, creating, rotating and revoking.
extension Dashboard {
    // MARK: A project's keys

    @Sendable func projectKeys(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        try await self.keysPage(context, session, query: form, notice: Notice.text(form["notice"]))
    }

    func keysPage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> DashboardReply {
        let (project, header) = try await self.projectContext(context, session, tab: "tabKeys")
        let trail = Trail(query)
        let page = try await self.reader(context).listAPIKeys(
            organizationID: session.organizationID,
            projectID: project.id,
            access: .any,
            page: trail.request
        )
        let members = try await self.reader(context).listProjectMembers(
            organizationID: session.organizationID,
            projectID: project.id,
            page: PageRequest(limit: PageRequest.limitRange.upperBound)
        )
        var view = header.merging(values) { $1 }
        view["hasKeys"] = !page.items.isEmpty
        view["keys"] = page.items.map(self.keyView)
        view["pager"] = trail.pager(path: "/dashboard/projects/\(project.id)", page: page, id: \.id)
        let chosen = (view["form"] as? [String: String])?["user_id"]
        view["hasMembers"] = !members.items.isEmpty
        view["members"] = members.items.map { member in
            [
                "id": member.user.id.rawValue, "label": member.user.name.map { "\($0) (\(member.user.email))" } ?? member.user.email,
                "selected": member.user.id.rawValue == chosen,
            ] as [String: Any]
        }
        view["expiryOptions"] = Self.options(Self.expiries, selected: (view["form"] as? [String: String])?["expires_in_seconds"])
        return .view(DashboardView("project-keys", view, section: "navProjects", status: status, notice: notice))
    }

    func keyView(_ key: APIKey) -> [String: Any] {
        let owner: String
        let ownerKind: String
        switch key.owner {
        case .user(let user, let role):
            owner = user.email
            ownerKind = role.map { "user, project \($0.rawValue)" } ?? "user, left the project"
        case .serviceAccount(let account):
            owner = account.name
            ownerKind = "service account"
        }
        let active = key.owner.hasProjectAccess
        return [
            "id": key.id.rawValue, "name": key.name, "redacted": KeySecret.shortened(redacted: key.redactedValue), "owner": owner,
            "ownerKind": ownerKind, "access": active ? "active" : "inactive", "active": active,
            "scopes": key.scopes.isEmpty ? "all" : key.scopes.joined(separator: ", "), "created": self.time(key.createdAt),
            "lastUsed": self.time(key.lastUsedAt), "expires": self.time(key.expiresAt),
            // The API refuses to delete a service account's key: it goes with its account.
            "revocable": key.owner.type == .user,
        ]
    }

    @Sendable func createKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let body = form.body(integers: ["expires_in_seconds"], lists: ["scopes"])
            let name = try body.requiredString("name")
            let userID = UserID(rawValue: try body.requiredString("user_id"))
            let created = try await self.domain(session, context).createAPIKey(
                organizationID: session.organizationID,
                projectID: projectID,
                owner: .user(id: userID),
                name: name,
                scopes: try AdminRoutes.validatedScopes(body.stringArray("scopes")) ?? [],
                expiresInSeconds: try body.integer("expires_in_seconds", in: AdminRoutes.expiryRange)
            )
            return try await self.keysPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["secret": self.secret("The key “\(created.key.name)”", created.plaintext, done: "/dashboard/projects/\(projectID)")]
            )
        } refused: { refusal in
            let param = refusal.param
            return try await self.keysPage(
                context,
                session,
                query: DashboardForm.empty,
                values: [
                    "keyError": refusal.message, "errorName": param == "name", "errorScopes": param == "scopes",
                    "errorUser": param == "user_id", "form": form.fields("name", "scopes", "user_id", "expires_in_seconds"),
                ],
                status: .badRequest
            )
        }
    }

    func keyAndProject(_ context: DashboardRequestContext, _ session: DashboardSession) async throws -> (APIKey, ProjectID) {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        let key = try await self.reader(context).apiKey(
            organizationID: session.organizationID,
            projectID: projectID,
            id: try context.parameters.requireID("key_id")
        )
        return (key, projectID)
    }

    @Sendable func confirmRotate(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        return self.confirmation(
            session,
            heading: "Rotate the key “\(key.name)”?",
            message:
                "The key \(key.redactedValue) gets a new secret, shown once. Choose how long the old secret keeps working, so that whoever uses it can switch.",
            action: "/dashboard/projects/\(projectID)/keys/\(key.id)/rotate",
            button: "Rotate key",
            cancel: "/dashboard/projects/\(projectID)",
            grace: true
        )
    }

    @Sendable func rotateKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        let body = form.body(integers: ["grace_period_seconds"])
        let rotated = try await self.domain(session, context).rotateAPIKey(
            organizationID: session.organizationID,
            projectID: projectID,
            keyID: key.id,
            gracePeriodSeconds: try body.integer("grace_period_seconds", in: 0...604_800) ?? 0
        )
        let old = rotated.previousSecretExpiresAt.map { "The old secret stops working \(self.time($0))." } ?? "The old secret no longer works."
        return try await self.keysPage(
            context,
            session,
            query: DashboardForm.empty,
            values: ["secret": self.secret("The new secret of “\(key.name)”", rotated.plaintext, done: "/dashboard/projects/\(projectID)")],
            notice: "Rotated “\(key.name)”. \(old)"
        )
    }

    @Sendable func confirmRevoke(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        return self.confirmation(
            session,
            heading: "Revoke the key “\(key.name)”?",
            message: "The key \(key.redactedValue) stops working on its very next request. This cannot be undone.",
            action: "/dashboard/projects/\(projectID)/keys/\(key.id)/revoke",
            button: "Revoke key",
            cancel: "/dashboard/projects/\(projectID)"
        )
    }

    @Sendable func revokeKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        try await self.domain(session, context).deleteAPIKey(organizationID: session.organizationID, projectID: projectID, keyID: key.id)
        return .redirect("/dashboard/projects/\(projectID)?notice=key-revoked")
    }
}
