import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// The audit log, filtered and paged.
extension Dashboard {
    // MARK: Audit log

    static let sinceOptions: [(value: String, label: String)] = [
        ("", "any time"), ("3600", "the last hour"), ("86400", "the last day"), ("604800", "the last 7 days"), ("2592000", "the last 30 days"),
    ]

    @Sendable func auditLog(_ request: Request, _ context: DashboardRequestContext, _ session: DashboardSession, _ form: DashboardForm)
        async throws -> DashboardReply
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
        let page = try await self.reader(context).listAuditLogs(
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
        return .view(DashboardView("audit-log", view, section: "navAuditLog"))
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
