import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// The organization's people: users and invites.
extension Dashboard {
    // MARK: People

    @Sendable func people(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        try await self.peoplePage(context, session, query: form, notice: Notice.text(form["notice"]))
    }

    func peoplePage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> DashboardReply {
        let trail = Trail(query)
        let users = try await self.reader(context).listUsers(organizationID: session.organizationID, emails: [], page: trail.request)
        let invites = try await self.reader(context).listInvites(
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
        return .view(DashboardView("people", view, section: "navPeople", status: status, notice: notice))
    }

    @Sendable func createUser(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session, context).createUser(
                organizationID: session.organizationID,
                email: try body.email("email"),
                name: try body.string("name"),
                role: try body.enumeration("role", as: OrganizationRole.self) ?? .reader
            )
            return .redirect("/dashboard/people?notice=user-added")
        } refused: { refusal in
            return try await self.peoplePage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["userError": refusal.message, "form": ["userEmail": form["email"] ?? "", "userName": form["name"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func createInvite(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        return try await self.submitting {
            let body = form.body()
            _ = try await self.domain(session, context).createInvite(
                organizationID: session.organizationID,
                email: try body.email("email"),
                role: try body.enumeration("role", as: OrganizationRole.self) ?? .reader,
                projects: nil
            )
            return .redirect("/dashboard/people?notice=invite-sent")
        } refused: { refusal in
            return try await self.peoplePage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["inviteError": refusal.message, "form": ["inviteEmail": form["email"] ?? ""]],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmRevokeInvite(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let invite = try await self.reader(context).invite(organizationID: session.organizationID, id: try context.parameters.requireID("invite_id"))
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
        async throws -> DashboardReply
    {
        try await self.domain(session, context).deleteInvite(
            organizationID: session.organizationID,
            inviteID: try context.parameters.requireID("invite_id")
        )
        return .redirect("/dashboard/people?notice=invite-revoked")
    }
}
