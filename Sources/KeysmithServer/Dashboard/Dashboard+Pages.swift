import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain

// The dashboard's pages, one file per family (Dashboard+Projects, +Keys, +People, +AdminKeys, +AuditLog); here, where
// they are routed and what they share. Each reads through the store's read side and writes through the domain layer
// acting as the signed-in admin key. A form that fails shows the API's message beside it, with what was typed kept.

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

    /// The domain layer, its writes recorded in the audit log as made with the session's admin key, logging to the
    /// request's logger.
    func domain(_ session: DashboardSession, _ context: DashboardRequestContext) -> Keysmith {
        self.keysmith.acting(as: .adminKey(id: session.adminKeyID)).logging(to: context.logger)
    }

    /// The store's read side, logging to the request's logger.
    func reader(_ context: DashboardRequestContext) -> any KeysmithStoreReader {
        self.keysmith.logging(to: context.logger).reader
    }

    var now: UnixSeconds { self.keysmith.clock.now() }

    func time(_ time: UnixSeconds?, none: String = "never") -> String {
        RelativeTime.phrase(time, now: self.now, none: none)
    }

    // MARK: Shared by the pages

    static let expiries: [(value: String, label: String)] = [
        ("", "never"), ("604800", "in 7 days"), ("2592000", "in 30 days"), ("7776000", "in 90 days"), ("31536000", "in a year"),
    ]

    static let gracePeriods: [(value: String, label: String)] = [
        ("0", "no time: it stops now"), ("3600", "1 hour"), ("86400", "1 day"), ("604800", "7 days"),
    ]

    static func options(_ options: [(value: String, label: String)], selected: String?) -> [[String: Any]] {
        options.map { ["value": $0.value, "label": $0.label, "selected": $0.value == (selected ?? "")] }
    }

    /// The dialog that shows a new secret, this once.
    func secret(_ what: String, _ value: String, done: String) -> [String: Any] {
        ["heading": "\(what) is ready", "value": value, "done": done]
    }

    func confirmation(
        _ session: DashboardSession,
        heading: String,
        message: String,
        action: String,
        button: String,
        cancel: String,
        grace: Bool = false
    ) -> DashboardReply {
        .view(
            DashboardView(
                "confirm",
                [
                    "heading": heading, "message": message, "action": action, "button": button, "cancel": cancel,
                    "buttonClass": grace ? "" : "danger", "hasGrace": grace,
                    "graceOptions": Self.options(Self.gracePeriods, selected: "3600"),
                ],
                section: "navProjects"
            )
        )
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
    func pager<Item>(path: String, keeping: [(String, String)] = [], page: Page<Item>, id: (Item) -> some TypedID) -> [String: Any]? {
        self.pager(path: path, keeping: keeping, page: page, id: { id($0).rawValue })
    }

    func pager<Item>(path: String, keeping: [(String, String)] = [], page: Page<Item>, id: (Item) -> String) -> [String: Any]? {
        guard !self.cursors.isEmpty || page.hasMore else { return nil }
        func link(_ cursors: [String]) -> String {
            var items = keeping
            if !cursors.isEmpty { items.append(("pages", cursors.joined(separator: ","))) }
            guard !items.isEmpty else { return path }
            return path + "?" + items.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        }
        var pager: [String: Any] = ["number": self.cursors.count + 1]
        if !self.cursors.isEmpty { pager["previous"] = link(Array(self.cursors.dropLast())) }
        if page.hasMore, let last = page.items.last { pager["next"] = link(self.cursors + [id(last)]) }
        return pager
    }
}
