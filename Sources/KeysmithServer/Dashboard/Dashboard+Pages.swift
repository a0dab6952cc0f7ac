import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithStore

// The dashboard's pages: each reads through the store's read side and writes through the domain layer acting as the
// signed-in admin key. A form that fails shows the API's message beside it, with what was typed kept.

extension Dashboard {
    func registerPages(on group: RouterGroup<DashboardRequestContext>) {
        group.get("projects", use: self.page(self.projects))
        group.post("projects", use: self.page(self.createProject))

        group.get("projects/:project_id", use: self.page(self.projectKeys))
        group.post("projects/:project_id/keys", use: self.page(self.createKey))
        group.get("projects/:project_id/keys/:key_id/rotate", use: self.page(self.confirmRotate))
        group.post("projects/:project_id/keys/:key_id/rotate", use: self.page(self.rotateKey))
        group.get("projects/:project_id/keys/:key_id/revoke", use: self.page(self.confirmRevoke))
        group.post("projects/:project_id/keys/:key_id/revoke", use: self.page(self.revokeKey))

        group.get("projects/:project_id/settings", use: self.page(self.projectSettings))
        group.post("projects/:project_id/rename", use: self.page(self.renameProject))
        group.get("projects/:project_id/archive", use: self.page(self.confirmArchive))
        group.post("projects/:project_id/archive", use: self.page(self.archiveProject))

        group.get("projects/:project_id/service-accounts", use: self.page(self.serviceAccounts))
        group.post("projects/:project_id/service-accounts", use: self.page(self.createServiceAccount))
        group.get("projects/:project_id/service-accounts/:account_id/delete", use: self.page(self.confirmDeleteServiceAccount))
        group.post("projects/:project_id/service-accounts/:account_id/delete", use: self.page(self.deleteServiceAccount))

        group.get("projects/:project_id/members", use: self.page(self.members))
        group.post("projects/:project_id/members", use: self.page(self.addMember))
        group.post("projects/:project_id/members/:user_id/role", use: self.page(self.changeMemberRole))
        group.get("projects/:project_id/members/:user_id/remove", use: self.page(self.confirmRemoveMember))
        group.post("projects/:project_id/members/:user_id/remove", use: self.page(self.removeMember))

        group.get("people", use: self.page(self.people))
        group.post("people/users", use: self.page(self.createUser))
        group.post("people/invites", use: self.page(self.createInvite))
        group.get("people/invites/:invite_id/revoke", use: self.page(self.confirmRevokeInvite))
        group.post("people/invites/:invite_id/revoke", use: self.page(self.revokeInvite))

        group.get("admin-keys", use: self.page(self.adminKeys))
        group.post("admin-keys", use: self.page(self.createAdminKey))
        group.get("admin-keys/:key_id/delete", use: self.page(self.confirmDeleteAdminKey))
        group.post("admin-keys/:key_id/delete", use: self.page(self.deleteAdminKey))

        group.get("audit-log", use: self.page(self.auditLog))
    }

    /// The domain layer, its writes recorded in the audit log as made with the session's admin key.
    func domain(_ session: DashboardSession) -> Keysmith {
        self.keysmith.acting(as: .adminKey(id: session.adminKeyID))
    }

    var now: UnixSeconds { self.keysmith.clock.now() }

    func time(_ time: UnixSeconds?, none: String = "never") -> String {
        RelativeTime.phrase(time, now: self.now, none: none)
    }

    // MARK: Projects

    @Sendable func projects(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.projectsPage(session, query: form)
    }

    func projectsPage(
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok
    ) async throws -> Response {
        let archived = query["archived"] == "1"
        let trail = Trail(query)
        let page = try await self.reader.listProjects(
            organizationID: session.organizationID,
            includeArchived: archived,
            page: trail.request
        )
        var context = values
        context["archived"] = archived
        context["hasProjects"] = !page.items.isEmpty
        context["projects"] = page.items.map(self.projectView)
        context["pager"] = trail.pager(path: "/dashboard/projects", keeping: archived ? [("archived", "1")] : [], page: page, id: \.id)
        return self.render("projects", context, session: session, section: "navProjects", status: status)
    }

    func projectView(_ project: Project) -> [String: Any] {
        ["id": project.id, "name": project.name, "status": project.isArchived ? "archived" : "active", "created": self.time(project.createdAt)]
    }

    @Sendable func createProject(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        return try await self.submitting {
            let body = form.body()
            let project = try await self.domain(session).createProject(
                organizationID: session.organizationID,
                name: try body.requiredString("name"),
                externalKeyID: nil,
                residency: nil
            )
            return Self.redirect("/dashboard/projects/\(project.id)")
        } refused: { refusal in
            return try await self.projectsPage(
                session,
                query: DashboardForm.empty,
                values: ["createError": refusal.message, "form": ["name": form["name"] ?? ""]],
                status: .badRequest
            )
        }
    }

    /// The project a page is about, with what its header shows.
    func projectContext(_ context: DashboardRequestContext, _ session: DashboardSession, tab: String) async throws -> (Project, [String: Any]) {
        let project = try await self.reader.project(id: try context.parameters.requireID("project_id"), organizationID: session.organizationID)
        return (project, ["project": self.projectView(project), "archived": project.isArchived, tab: true])
    }

    // MARK: A project's keys

    @Sendable func projectKeys(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
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
    ) async throws -> Response {
        let (project, header) = try await self.projectContext(context, session, tab: "tabKeys")
        let trail = Trail(query)
        let page = try await self.reader.listAPIKeys(
            projectID: project.id,
            organizationID: session.organizationID,
            access: .any,
            page: trail.request
        )
        let members = try await self.reader.listProjectMembers(
            projectID: project.id,
            organizationID: session.organizationID,
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
                "id": member.user.id, "label": member.user.name.map { "\($0) (\(member.user.email))" } ?? member.user.email,
                "selected": member.user.id == chosen,
            ] as [String: Any]
        }
        view["expiryOptions"] = Self.options(Self.expiries, selected: (view["form"] as? [String: String])?["expires_in_seconds"])
        return self.render("project-keys", view, session: session, section: "navProjects", status: status, notice: notice)
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
            "id": key.id, "name": key.name, "redacted": KeySecret.shortened(redacted: key.redactedValue), "owner": owner,
            "ownerKind": ownerKind, "access": active ? "active" : "inactive", "active": active,
            "scopes": key.scopes.isEmpty ? "all" : key.scopes.joined(separator: ", "), "created": self.time(key.createdAt),
            "lastUsed": self.time(key.lastUsedAt), "expires": self.time(key.expiresAt),
            // The API refuses to delete a service account's key: it goes with its account.
            "revocable": key.owner.type == .user,
        ]
    }

    static let expiries: [(value: String, label: String)] = [
        ("", "never"), ("604800", "in 7 days"), ("2592000", "in 30 days"), ("7776000", "in 90 days"), ("31536000", "in a year"),
    ]

    static let gracePeriods: [(value: String, label: String)] = [
        ("0", "no time: it stops now"), ("3600", "1 hour"), ("86400", "1 day"), ("604800", "7 days"),
    ]

    static func options(_ options: [(value: String, label: String)], selected: String?) -> [[String: Any]] {
        options.map { ["value": $0.value, "label": $0.label, "selected": $0.value == (selected ?? "")] }
    }

    @Sendable func createKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let body = form.body(integers: ["expires_in_seconds"], lists: ["scopes"])
            let name = try body.requiredString("name")
            let userID = try body.requiredString("user_id")
            let created = try await self.domain(session).createAPIKey(
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

    /// The dialog that shows a new secret, this once.
    func secret(_ what: String, _ value: String, done: String) -> [String: Any] {
        ["heading": "\(what) is ready", "value": value, "done": done]
    }

    func keyAndProject(_ context: DashboardRequestContext, _ session: DashboardSession) async throws -> (APIKey, String) {
        let projectID = try context.parameters.requireID("project_id")
        let key = try await self.reader.apiKey(
            id: try context.parameters.requireID("key_id"),
            projectID: projectID,
            organizationID: session.organizationID
        )
        return (key, projectID)
    }

    @Sendable func confirmRotate(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
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
        async throws -> Response
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        let body = form.body(integers: ["grace_period_seconds"])
        let rotated = try await self.domain(session).rotateAPIKey(
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
        async throws -> Response
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
        async throws -> Response
    {
        let (key, projectID) = try await self.keyAndProject(context, session)
        try await self.domain(session).deleteAPIKey(organizationID: session.organizationID, projectID: projectID, keyID: key.id)
        return Self.redirect("/dashboard/projects/\(projectID)?notice=key-revoked")
    }

    func confirmation(
        _ session: DashboardSession,
        heading: String,
        message: String,
        action: String,
        button: String,
        cancel: String,
        grace: Bool = false
    ) -> Response {
        self.render(
            "confirm",
            [
                "heading": heading, "message": message, "action": action, "button": button, "cancel": cancel,
                "buttonClass": grace ? "" : "danger", "hasGrace": grace,
                "graceOptions": Self.options(Self.gracePeriods, selected: "3600"),
            ],
            session: session,
            section: "navProjects"
        )
    }

    // MARK: Settings

    @Sendable func projectSettings(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let (project, header) = try await self.projectContext(context, session, tab: "tabSettings")
        var view = header
        view["form"] = ["name": project.name]
        return self.render("project-settings", view, session: session, section: "navProjects", notice: Notice.text(form["notice"]))
    }

    @Sendable func renameProject(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let (project, header) = try await self.projectContext(context, session, tab: "tabSettings")
        return try await self.submitting {
            _ = try await self.domain(session).updateProject(
                organizationID: session.organizationID,
                projectID: project.id,
                name: try form.body().requiredString("name"),
                externalKeyID: .none
            )
            return Self.redirect("/dashboard/projects/\(project.id)/settings?notice=project-renamed")
        } refused: { refusal in
            var view = header
            view["renameError"] = refusal.message
            view["form"] = ["name": form["name"] ?? ""]
            return self.render("project-settings", view, session: session, section: "navProjects", status: .badRequest)
        }
    }

    @Sendable func confirmArchive(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let (project, _) = try await self.projectContext(context, session, tab: "tabSettings")
        return self.confirmation(
            session,
            heading: "Archive the project “\(project.name)”?",
            message:
                "Every key of \(project.name) stops working at once, and the project takes no new keys, service accounts or members. This cannot be undone.",
            action: "/dashboard/projects/\(project.id)/archive",
            button: "Archive project",
            cancel: "/dashboard/projects/\(project.id)/settings"
        )
    }

    @Sendable func archiveProject(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        _ = try await self.domain(session).archiveProject(organizationID: session.organizationID, projectID: projectID)
        return Self.redirect("/dashboard/projects/\(projectID)?notice=project-archived")
    }

    // MARK: Service accounts

    @Sendable func serviceAccounts(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.serviceAccountsPage(context, session, query: form, notice: Notice.text(form["notice"]))
    }

    func serviceAccountsPage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> Response {
        let (project, header) = try await self.projectContext(context, session, tab: "tabServiceAccounts")
        let trail = Trail(query)
        let page = try await self.reader.listServiceAccounts(projectID: project.id, organizationID: session.organizationID, page: trail.request)
        var view = header.merging(values) { $1 }
        view["hasAccounts"] = !page.items.isEmpty
        view["accounts"] = page.items.map { ["id": $0.id, "name": $0.name, "role": $0.role.rawValue, "created": self.time($0.createdAt)] }
        view["pager"] = trail.pager(path: "/dashboard/projects/\(project.id)/service-accounts", page: page, id: \.id)
        return self.render("project-service-accounts", view, session: session, section: "navProjects", status: status, notice: notice)
    }

    @Sendable func createServiceAccount(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let created = try await self.domain(session).createServiceAccount(
                organizationID: session.organizationID,
                projectID: projectID,
                name: try form.body().requiredString("name"),
                withoutKey: false
            )
            var values: [String: Any] = [:]
            if let key = created.key {
                values["secret"] = self.secret(
                    "The key of “\(created.account.name)”",
                    key.plaintext,
                    done: "/dashboard/projects/\(projectID)/service-accounts"
                )
            }
            return try await self.serviceAccountsPage(context, session, query: DashboardForm.empty, values: values)
        } refused: { refusal in
            return try await self.serviceAccountsPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["createError": refusal.message, "form": ["name": form["name"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmDeleteServiceAccount(
        _ request: Request,
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        _ form: DashboardForm
    ) async throws -> Response {
        let projectID = try context.parameters.requireID("project_id")
        let account = try await self.reader.serviceAccount(
            id: try context.parameters.requireID("account_id"),
            projectID: projectID,
            organizationID: session.organizationID
        )
        return self.confirmation(
            session,
            heading: "Delete the service account “\(account.name)”?",
            message: "\(account.name) and all its keys are deleted; the keys stop working on their very next request. This cannot be undone.",
            action: "/dashboard/projects/\(projectID)/service-accounts/\(account.id)/delete",
            button: "Delete service account",
            cancel: "/dashboard/projects/\(projectID)/service-accounts"
        )
    }

    @Sendable func deleteServiceAccount(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        try await self.domain(session).deleteServiceAccount(
            organizationID: session.organizationID,
            projectID: projectID,
            accountID: try context.parameters.requireID("account_id")
        )
        return Self.redirect("/dashboard/projects/\(projectID)/service-accounts?notice=service-account-deleted")
    }

    // MARK: Members

    @Sendable func members(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.membersPage(context, session, query: form, notice: Notice.text(form["notice"]))
    }

    func membersPage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> Response {
        let (project, header) = try await self.projectContext(context, session, tab: "tabMembers")
        let trail = Trail(query)
        let page = try await self.reader.listProjectMembers(projectID: project.id, organizationID: session.organizationID, page: trail.request)
        var view = header.merging(values) { $1 }
        view["hasMembers"] = !page.items.isEmpty
        view["members"] = page.items.map {
            [
                "id": $0.user.id, "email": $0.user.email, "name": $0.user.name ?? "", "isMember": $0.role == .member,
                "added": self.time($0.addedAt),
            ] as [String: Any]
        }
        view["pager"] = trail.pager(path: "/dashboard/projects/\(project.id)/members", page: page, id: \.user.id)
        return self.render("project-members", view, session: session, section: "navProjects", status: status, notice: notice)
    }

    @Sendable func addMember(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session).addProjectMember(
                organizationID: session.organizationID,
                projectID: projectID,
                user: .email(try body.email("email")),
                role: try body.enumeration("role", as: ProjectRole.self) ?? .member
            )
            return Self.redirect("/dashboard/projects/\(projectID)/members?notice=member-added")
        } refused: { refusal in
            return try await self.membersPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["addError": refusal.message, "form": ["email": form["email"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func changeMemberRole(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            guard let role = try form.body().enumeration("role", as: ProjectRole.self) else { throw OpenAIError.missingParameter("role") }
            _ = try await self.domain(session).updateProjectMember(
                organizationID: session.organizationID,
                projectID: projectID,
                userID: try context.parameters.requireID("user_id"),
                role: role
            )
            return Self.redirect("/dashboard/projects/\(projectID)/members?notice=member-role-changed")
        } refused: { refusal in
            return try await self.membersPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["memberError": refusal.message],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmRemoveMember(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        let member = try await self.reader.projectMember(
            projectID: projectID,
            organizationID: session.organizationID,
            userID: try context.parameters.requireID("user_id")
        )
        return self.confirmation(
            session,
            heading: "Remove \(member.user.email) from the project?",
            message: "Their keys in this project stay listed, as inactive, and stop working on their very next request.",
            action: "/dashboard/projects/\(projectID)/members/\(member.user.id)/remove",
            button: "Remove member",
            cancel: "/dashboard/projects/\(projectID)/members"
        )
    }

    @Sendable func removeMember(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let projectID = try context.parameters.requireID("project_id")
        try await self.domain(session).removeProjectMember(
            organizationID: session.organizationID,
            projectID: projectID,
            userID: try context.parameters.requireID("user_id")
        )
        return Self.redirect("/dashboard/projects/\(projectID)/members?notice=member-removed")
    }

    // MARK: People

    @Sendable func people(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.peoplePage(session, query: form, notice: Notice.text(form["notice"]))
    }

    func peoplePage(
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> Response {
        let trail = Trail(query)
        let users = try await self.reader.listUsers(organizationID: session.organizationID, emails: [], page: trail.request)
        let invites = try await self.reader.listInvites(
            organizationID: session.organizationID,
            page: PageRequest(limit: PageRequest.limitRange.upperBound)
        )
        let now = self.now
        var view = values
        view["hasUsers"] = !users.items.isEmpty
        view["users"] = users.items.map {
            ["email": $0.email, "name": $0.name ?? "", "role": $0.role.rawValue, "added": self.time($0.addedAt)]
        }
        view["pager"] = trail.pager(path: "/dashboard/people", page: users, id: \.id)
        view["hasInvites"] = !invites.items.isEmpty
        view["moreInvites"] = invites.hasMore
        view["invites"] = invites.items.map {
            let status = $0.status(at: now)
            return [
                "id": $0.id, "email": $0.email, "role": $0.role.rawValue, "status": status.rawValue,
                "created": self.time($0.createdAt), "expires": status == .accepted ? "–" : self.time($0.expiresAt),
                "revocable": status != .accepted,
            ] as [String: Any]
        }
        return self.render("people", view, session: session, section: "navPeople", status: status, notice: notice)
    }

    @Sendable func createUser(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session).createUser(
                organizationID: session.organizationID,
                email: try body.email("email"),
                name: try body.string("name"),
                role: try body.enumeration("role", as: OrganizationRole.self) ?? .reader
            )
            return Self.redirect("/dashboard/people?notice=user-added")
        } refused: { refusal in
            return try await self.peoplePage(
                session,
                query: DashboardForm.empty,
                values: ["userError": refusal.message, "form": ["userEmail": form["email"] ?? "", "userName": form["name"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func createInvite(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session).createInvite(
                organizationID: session.organizationID,
                email: try body.email("email"),
                role: try body.enumeration("role", as: OrganizationRole.self) ?? .reader,
                projects: nil
            )
            return Self.redirect("/dashboard/people?notice=invite-sent")
        } refused: { refusal in
            return try await self.peoplePage(
                session,
                query: DashboardForm.empty,
                values: ["inviteError": refusal.message, "form": ["inviteEmail": form["email"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmRevokeInvite(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let invite = try await self.reader.invite(id: try context.parameters.requireID("invite_id"), organizationID: session.organizationID)
        return self.confirmation(
            session,
            heading: "Revoke the invite for \(invite.email)?",
            message: "The invite can no longer be accepted. You can invite \(invite.email) again later.",
            action: "/dashboard/people/invites/\(invite.id)/revoke",
            button: "Revoke invite",
            cancel: "/dashboard/people"
        )
    }

    @Sendable func revokeInvite(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.domain(session).deleteInvite(organizationID: session.organizationID, inviteID: try context.parameters.requireID("invite_id"))
        return Self.redirect("/dashboard/people?notice=invite-revoked")
    }

    // MARK: Admin keys

    @Sendable func adminKeys(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        try await self.adminKeysPage(session, query: form, notice: Notice.text(form["notice"]))
    }

    func adminKeysPage(
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> Response {
        let trail = Trail(query)
        let page = try await self.reader.listAdminKeys(organizationID: session.organizationID, descending: false, page: trail.request)
        var view = values
        view["keys"] = page.items.map {
            [
                "id": $0.id, "name": $0.name, "redacted": KeySecret.shortened(redacted: $0.redactedValue), "created": self.time($0.createdAt),
                "lastUsed": self.time($0.lastUsedAt), "expires": self.time($0.expiresAt), "current": $0.id == session.adminKeyID,
            ] as [String: Any]
        }
        view["pager"] = trail.pager(path: "/dashboard/admin-keys", page: page, id: \.id)
        view["expiryOptions"] = Self.options(Self.expiries, selected: (view["form"] as? [String: String])?["expires_in_seconds"])
        return self.render("admin-keys", view, session: session, section: "navAdminKeys", status: status, notice: notice)
    }

    @Sendable func createAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        return try await self.submitting {
            let body = form.body(integers: ["expires_in_seconds"])
            let created = try await self.domain(session).createAdminKey(
                name: try body.requiredString("name"),
                organizationID: session.organizationID,
                expiresInSeconds: try body.integer("expires_in_seconds", in: AdminRoutes.expiryRange)
            )
            return try await self.adminKeysPage(
                session,
                query: DashboardForm.empty,
                values: ["secret": self.secret("The admin key “\(created.key.name)”", created.plaintext, done: "/dashboard/admin-keys")]
            )
        } refused: { refusal in
            return try await self.adminKeysPage(
                session,
                query: DashboardForm.empty,
                values: ["createError": refusal.message, "form": form.fields("name", "expires_in_seconds")],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmDeleteAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let key = try await self.reader.adminKey(id: try context.parameters.requireID("key_id"), organizationID: session.organizationID)
        let yours = key.id == session.adminKeyID ? " It is the key this session signed in with: you will be signed out." : ""
        return self.render(
            "confirm",
            [
                "heading": "Delete the admin key “\(key.name)”?",
                "message": "The admin key \(key.redactedValue) stops working at once, for the API, the CLI and the dashboard.\(yours)",
                "action": "/dashboard/admin-keys/\(key.id)/delete", "button": "Delete admin key", "cancel": "/dashboard/admin-keys",
                "buttonClass": "danger",
            ],
            session: session,
            section: "navAdminKeys"
        )
    }

    @Sendable func deleteAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        let keyID = try context.parameters.requireID("key_id")
        return try await self.submitting {
            try await self.domain(session).deleteAdminKey(organizationID: session.organizationID, keyID: keyID)
            return Self.redirect("/dashboard/admin-keys?notice=admin-key-deleted")
        } refused: { refusal in
            try await self.adminKeysPage(session, query: DashboardForm.empty, values: ["deleteError": refusal.message], status: .badRequest)
        }
    }

    // MARK: Audit log

    static let sinceOptions: [(value: String, label: String)] = [
        ("", "any time"), ("3600", "the last hour"), ("86400", "the last day"), ("604800", "the last 7 days"), ("2592000", "the last 30 days"),
    ]

    @Sendable func auditLog(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> Response
    {
        var filter = AuditLogFilter()
        var view: [String: Any] = [:]
        var keep: [(String, String)] = []
        if let type = form.text("type") {
            guard let parsed = AuditEventType(rawValue: type) else {
                throw OpenAIError.invalid("'\(type)' is not an event type Keysmith records.", param: "type")
            }
            filter.types = [parsed]
            keep.append(("type", type))
        }
        for (field, apply) in [
            ("project", { (filter: inout AuditLogFilter, value: String) in filter.projectIDs = [value] }),
            ("actor", { (filter: inout AuditLogFilter, value: String) in filter.actorIDs = [value] }),
            ("resource", { (filter: inout AuditLogFilter, value: String) in filter.resourceIDs = [value] }),
        ] {
            if let value = form.text(field) {
                apply(&filter, value)
                keep.append((field, value))
            }
        }
        if let since = form.text("since") {
            guard let seconds = Int(since), seconds > 0 else {
                throw OpenAIError.invalid("'since' must be a number of seconds.", param: "since")
            }
            filter.effectiveFrom = self.now - seconds
            keep.append(("since", since))
        }
        let trail = Trail(form)
        let page = try await self.reader.listAuditLogs(
            organizationID: session.organizationID,
            filter: filter,
            limit: PageRequest.defaultLimit,
            after: trail.request.after,
            before: nil
        )
        view["filter"] = ["project": form["project"] ?? "", "actor": form["actor"] ?? "", "resource": form["resource"] ?? ""]
        view["types"] = AuditEventType.allCases.map { ["value": $0.rawValue, "selected": filter.types.first == $0] as [String: Any] }
        view["sinceOptions"] = Self.options(Self.sinceOptions, selected: form["since"])
        view["hasEntries"] = !page.items.isEmpty
        view["entries"] = page.items.map(self.auditView)
        view["pager"] = trail.pager(path: "/dashboard/audit-log", keeping: keep, page: page, id: \.id)
        return self.render("audit-log", view, session: session, section: "navAuditLog")
    }

    func auditView(_ entry: AuditLogEntry) -> [String: Any] {
        let actor = DashboardJSON.object(entry.actorJSON)
        let details = DashboardJSON.object(entry.details)
        let actorText: String
        if let key = actor["api_key"] as? [String: Any], let id = key["id"] as? String {
            actorText = "admin key \(id)"
        } else if let session = actor["session"] as? [String: Any], let agent = session["user_agent"] as? String {
            actorText = agent
        } else {
            actorText = actor["type"] as? String ?? ""
        }
        return [
            "when": self.time(entry.effectiveAt), "timestamp": DashboardJSON.timestamp(entry.effectiveAt), "type": entry.type.rawValue,
            "actor": actorText, "resource": details["id"] as? String ?? "",
            "resourceName": (details["name"] as? String) ?? (details["email"] as? String) ?? "", "project": entry.projectID ?? "",
        ]
    }
}

/// What a redirect after a change says on the next page, named by a short code in the URL (never a value).
enum Notice {
    static let texts: [String: String] = [
        "key-revoked": "The key was revoked: it no longer works.",
        "project-renamed": "The project was renamed.",
        "project-archived": "The project was archived: its keys no longer work.",
        "service-account-deleted": "The service account and its keys were deleted.",
        "member-added": "The member was added.",
        "member-role-changed": "The member's role was changed.",
        "member-removed": "The member was removed; their keys here no longer work.",
        "user-added": "The user was added to the organization.",
        "invite-sent": "The invite was created.",
        "invite-revoked": "The invite was revoked.",
        "admin-key-deleted": "The admin key was deleted.",
    ]

    static func text(_ code: String?) -> String? {
        code.flatMap { Self.texts[$0] }
    }
}

/// Pages as the API pages them (`limit`, `after`), with "previous" too: the query keeps the `after` cursor of every
/// page so far (`pages=a,b,c`), so going back is dropping the last.
struct Trail {
    var cursors: [String]

    init(_ query: DashboardForm) {
        self.cursors = (query["pages"] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
    }

    var request: PageRequest { PageRequest(limit: PageRequest.defaultLimit, after: self.cursors.last) }

    /// Links to the previous and next pages; nil when the list fits on one.
    func pager<Item>(path: String, keeping: [(String, String)] = [], page: Page<Item>, id: (Item) -> String) -> [String: Any]? {
        guard !self.cursors.isEmpty || page.hasMore else { return nil }
        func link(_ cursors: [String]) -> String {
            var items = keeping
            if !cursors.isEmpty { items.append(("pages", cursors.joined(separator: ","))) }
            guard !items.isEmpty else { return path }
            return path + "?" + items.map { "\(DashboardJSON.encode($0.0))=\(DashboardJSON.encode($0.1))" }.joined(separator: "&")
        }
        var pager: [String: Any] = ["number": self.cursors.count + 1]
        if !self.cursors.isEmpty { pager["previous"] = link(Array(self.cursors.dropLast())) }
        if page.hasMore, let last = page.items.last { pager["next"] = link(self.cursors + [id(last)]) }
        return pager
    }
}
