import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// The project pages: the list, a project's settings, its service accounts and its members.
extension Dashboard {
    // MARK: Projects

    @Sendable func projects(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        try await self.projectsPage(context, session, query: form)
    }

    func projectsPage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok
    ) async throws -> DashboardReply {
        let archived = query["archived"] == "1"
        let trail = Trail(query)
        let page = try await self.reader(context).listProjects(
            organizationID: session.organizationID,
            includeArchived: archived,
            page: trail.request
        )
        var view = values
        view["archived"] = archived
        view["hasProjects"] = !page.items.isEmpty
        view["projects"] = page.items.map(self.projectView)
        view["pager"] = trail.pager(path: "/dashboard/projects", keeping: archived ? [("archived", "1")] : [], page: page, id: \.id)
        return .view(DashboardView("projects", view, section: "navProjects", status: status))
    }

    func projectView(_ project: Project) -> [String: Any] {
        [
            "id": project.id.rawValue, "name": project.name, "status": project.isArchived ? "archived" : "active",
            "created": self.time(project.createdAt),
        ]
    }

    @Sendable func createProject(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        return try await self.submitting {
            let body = form.body()
            let project = try await self.domain(session, context).createProject(
                organizationID: session.organizationID,
                name: try body.requiredString("name"),
                externalKeyID: nil,
                residency: nil
            )
            return .redirect("/dashboard/projects/\(project.id)")
        } refused: { refusal in
            return try await self.projectsPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["createError": refusal.message, "form": ["name": form["name"] ?? ""]],
                status: .badRequest
            )
        }
    }

    /// The project a page is about, with what its header shows.
    func projectContext(_ context: DashboardRequestContext, _ session: DashboardSession, tab: String) async throws -> (Project, [String: Any]) {
        let project = try await self.reader(context).project(
            organizationID: session.organizationID,
            id: try context.parameters.requireID("project_id")
        )
        return (project, ["project": self.projectView(project), "archived": project.isArchived, tab: true])
    }

    // MARK: Settings

    @Sendable func projectSettings(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (project, header) = try await self.projectContext(context, session, tab: "tabSettings")
        var view = header
        view["form"] = ["name": project.name]
        return .view(DashboardView("project-settings", view, section: "navProjects", notice: Notice.text(form["notice"])))
    }

    @Sendable func renameProject(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let (project, header) = try await self.projectContext(context, session, tab: "tabSettings")
        return try await self.submitting {
            _ = try await self.domain(session, context).updateProject(
                organizationID: session.organizationID,
                projectID: project.id,
                name: try form.body().requiredString("name"),
                externalKeyID: .none
            )
            return .redirect("/dashboard/projects/\(project.id)/settings?notice=project-renamed")
        } refused: { refusal in
            var view = header
            view["renameError"] = refusal.message
            view["form"] = ["name": form["name"] ?? ""]
            return .view(DashboardView("project-settings", view, section: "navProjects", status: .badRequest))
        }
    }

    @Sendable func confirmArchive(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
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
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        _ = try await self.domain(session, context).archiveProject(organizationID: session.organizationID, projectID: projectID)
        return .redirect("/dashboard/projects/\(projectID)?notice=project-archived")
    }

    // MARK: Service accounts

    @Sendable func serviceAccounts(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
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
    ) async throws -> DashboardReply {
        let (project, header) = try await self.projectContext(context, session, tab: "tabServiceAccounts")
        let trail = Trail(query)
        let page = try await self.reader(context).listServiceAccounts(
            organizationID: session.organizationID,
            projectID: project.id,
            page: trail.request
        )
        var view = header.merging(values) { $1 }
        view["hasAccounts"] = !page.items.isEmpty
        view["accounts"] = page.items.map { ["id": $0.id, "name": $0.name, "role": $0.role.rawValue, "created": self.time($0.createdAt)] }
        view["pager"] = trail.pager(path: "/dashboard/projects/\(project.id)/service-accounts", page: page, id: \.id)
        return .view(DashboardView("project-service-accounts", view, section: "navProjects", status: status, notice: notice))
    }

    @Sendable func createServiceAccount(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let created = try await self.domain(session, context).createServiceAccount(
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
    ) async throws -> DashboardReply {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        let account = try await self.reader(context).serviceAccount(
            organizationID: session.organizationID,
            projectID: projectID,
            id: try context.parameters.requireID("account_id")
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
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        try await self.domain(session, context).deleteServiceAccount(
            organizationID: session.organizationID,
            projectID: projectID,
            accountID: try context.parameters.requireID("account_id")
        )
        return .redirect("/dashboard/projects/\(projectID)/service-accounts?notice=service-account-deleted")
    }

    // MARK: Members

    @Sendable func members(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
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
    ) async throws -> DashboardReply {
        let (project, header) = try await self.projectContext(context, session, tab: "tabMembers")
        let trail = Trail(query)
        let page = try await self.reader(context).listProjectMembers(
            organizationID: session.organizationID,
            projectID: project.id,
            page: trail.request
        )
        var view = header.merging(values) { $1 }
        view["hasMembers"] = !page.items.isEmpty
        view["members"] = page.items.map {
            [
                "id": $0.user.id.rawValue, "email": $0.user.email, "name": $0.user.name ?? "", "isMember": $0.role == .member,
                "added": self.time($0.addedAt),
            ] as [String: Any]
        }
        view["pager"] = trail.pager(path: "/dashboard/projects/\(project.id)/members", page: page, id: \.user.id)
        return .view(DashboardView("project-members", view, section: "navProjects", status: status, notice: notice))
    }

    @Sendable func addMember(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session, context).addProjectMember(
                organizationID: session.organizationID,
                projectID: projectID,
                user: .email(try body.email("email")),
                role: try body.enumeration("role", as: ProjectRole.self) ?? .member
            )
            return .redirect("/dashboard/projects/\(projectID)/members?notice=member-added")
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
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        return try await self.submitting {
            guard let role = try form.body().enumeration("role", as: ProjectRole.self) else { throw OpenAIError.missingParameter("role") }
            _ = try await self.domain(session, context).updateProjectMember(
                organizationID: session.organizationID,
                projectID: projectID,
                userID: try context.parameters.requireID("user_id"),
                role: role
            )
            return .redirect("/dashboard/projects/\(projectID)/members?notice=member-role-changed")
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
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        let member = try await self.reader(context).projectMember(
            organizationID: session.organizationID,
            projectID: projectID,
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
        async throws -> DashboardReply
    {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        try await self.domain(session, context).removeProjectMember(
            organizationID: session.organizationID,
            projectID: projectID,
            userID: try context.parameters.requireID("user_id")
        )
        return .redirect("/dashboard/projects/\(projectID)/members?notice=member-removed")
    }
}
