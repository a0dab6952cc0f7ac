import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// The organization's admin keys.
extension Dashboard {
    // MARK: Admin keys

    @Sendable func adminKeys(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        try await self.adminKeysPage(context, session, query: form, notice: Notice.text(form["notice"]))
    }

    func adminKeysPage(
        _ context: DashboardRequestContext,
        _ session: DashboardSession,
        query: DashboardForm,
        values: [String: Any] = [:],
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) async throws -> DashboardReply {
        let trail = Trail(query)
        let page = try await self.reader(context).listAdminKeys(organizationID: session.organizationID, descending: false, page: trail.request)
        var view = values
        view["keys"] = page.items.map {
            [
                "id": $0.id.rawValue, "name": $0.name, "redacted": KeySecret.shortened(redacted: $0.redactedValue),
                "created": self.time($0.createdAt),
                "lastUsed": self.time($0.lastUsedAt), "expires": self.time($0.expiresAt), "current": $0.id == session.adminKeyID,
            ] as [String: Any]
        }
        view["pager"] = trail.pager(path: "/dashboard/admin-keys", page: page, id: \.id)
        view["expiryOptions"] = Self.options(Self.expiries, selected: (view["form"] as? [String: String])?["expires_in_seconds"])
        return .view(DashboardView("admin-keys", view, section: "navAdminKeys", status: status, notice: notice))
    }

    @Sendable func createAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        return try await self.submitting {
            let body = form.body(integers: ["expires_in_seconds"])
            let created = try await self.domain(session, context).createAdminKey(
                name: try body.requiredString("name"),
                organizationID: session.organizationID,
                expiresInSeconds: try body.integer("expires_in_seconds", in: AdminRoutes.expiryRange)
            )
            return try await self.adminKeysPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["secret": self.secret("The admin key “\(created.key.name)”", created.plaintext, done: "/dashboard/admin-keys")]
            )
        } refused: { refusal in
            return try await self.adminKeysPage(
                context,
                session,
                query: DashboardForm.empty,
                values: ["createError": refusal.message, "form": form.fields("name", "expires_in_seconds")],
                status: .badRequest
            )
        }
    }

    @Sendable func confirmDeleteAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let key = try await self.reader(context).adminKey(organizationID: session.organizationID, id: try context.parameters.requireID("key_id"))
        let yours = key.id == session.adminKeyID ? " It is the key this session signed in with: you will be signed out." : ""
        return .view(
            DashboardView(
                "confirm",
                [
                    "heading": "Delete the admin key “\(key.name)”?",
                    "message": "The admin key \(key.redactedValue) stops working at once, for the API, the CLI and the dashboard.\(yours)",
                    "action": "/dashboard/admin-keys/\(key.id)/delete", "button": "Delete admin key", "cancel": "/dashboard/admin-keys",
                    "buttonClass": "danger",
                ],
                section: "navAdminKeys"
            )
        )
    }

    @Sendable func deleteAdminKey(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
    {
        let keyID: AdminKeyID = try context.parameters.requireID("key_id")
        return try await self.submitting {
            try await self.domain(session, context).deleteAdminKey(organizationID: session.organizationID, keyID: keyID)
            return .redirect("/dashboard/admin-keys?notice=admin-key-deleted")
        } refused: { refusal in
            try await self.adminKeysPage(context, session, query: DashboardForm.empty, values: ["deleteError": refusal.message], status: .badRequest)
        }
    }
}
