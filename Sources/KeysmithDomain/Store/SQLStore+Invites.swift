import KeysmithCore
import SQLKit

extension SQLStore {
    static let inviteColumns = "i.id, i.organization_id, i.email, i.role, i.projects, i.created_at, i.expires_at, i.accepted_at"

    static func invite(from row: some StoreRowReader) throws -> Invite {
        Invite(
            id: try row.id(at: 0),
            organizationID: try row.id(at: 1),
            email: try row.string(at: 2),
            role: try enumValue(OrganizationRole.self, row.string(at: 3), column: "role"),
            projects: try decodeGrants(row.string(at: 4)),
            createdAt: try row.int(at: 5),
            expiresAt: try row.int(at: 6),
            acceptedAt: try row.optionalInt(at: 7)
        )
    }

    /// Grants as the `projects` column holds them: `proj_a:member,proj_b:owner` (ids hold neither `:` nor `,`).
    static func encodeGrants(_ grants: [Invite.ProjectGrant]) -> String {
        grants.map { "\($0.projectID):\($0.role.rawValue)" }.joined(separator: ",")
    }

    static func decodeGrants(_ text: String) throws -> [Invite.ProjectGrant] {
        guard !text.isEmpty else { return [] }
        return try text.split(separator: ",").map { grant in
            let parts = grant.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { throw StoreRowError(column: "projects", problem: "holds '\(grant)', which is not a grant") }
            return Invite.ProjectGrant(
                projectID: ProjectID(rawValue: String(parts[0])),
                role: try enumValue(ProjectRole.self, String(parts[1]), column: "projects")
            )
        }
    }

    static func invite(_ database: any SQLSession, organizationID: OrganizationID, id: InviteID, lock: SQLLockingClause? = nil) async throws -> Invite
    {
        guard let invite = try await database.rows(InviteByID(organizationID: organizationID, id: id), lock: lock).first else {
            throw KeysmithError.notFound(.invite, id: id)
        }
        return invite
    }

    struct InviteByID: StoreQuery {
        static let sql = "SELECT \(inviteColumns) FROM invites i WHERE i.organization_id = $1 AND i.id = $2"

        var organizationID: OrganizationID
        var id: InviteID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> Invite { try SQLStore.invite(from: row) }
    }

    func invite(organizationID: OrganizationID, id: InviteID) async throws -> Invite {
        try await self.engine.unsafeRead(logger: self.logger) { database in try await Self.invite(database, organizationID: organizationID, id: id) }
    }

    func listInvites(organizationID: OrganizationID, page: PageRequest) async throws -> Page<Invite> {
        try await self.fetchPage(InviteList(organizationID: organizationID), page)
    }

    /// An organization's invites, in the order they were sent.
    struct InviteList: StoreList {
        static let select = "SELECT \(inviteColumns) FROM invites i WHERE i.organization_id = $1"
        static let filterCount = 1
        static let time = "i.created_at"
        static let id = "i.id"
        static let cursor = "SELECT created_at FROM invites WHERE id = $CURSOR AND organization_id = $1"

        var organizationID: OrganizationID

        var filters: [any Encodable & Sendable] { [self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> Invite { try SQLStore.invite(from: row) }
    }

    /// Invitations and new users of one organization take turns (PostgreSQL: the organization's row, locked), so
    /// that an email cannot gain two pending invites, or an invite and a user, at once.
    static func lockOrganization(_ database: any SQLSession, _ organizationID: OrganizationID) async throws {
        try await self.lock(database, "organizations", where: "id = \(bind: organizationID)", .update)
    }

    func createInvite(_ invite: Invite, joinDefaultProject: Bool) async throws -> Invite {
        try await self.engine.write(logger: self.logger) { database in
            var invite = invite
            try await Self.lockOrganization(database, invite.organizationID)
            try await Self.ensureEmailIsFree(database, organizationID: invite.organizationID, email: invite.email)
            let emailKey = invite.email.lowercased()
            let pending = try await database.raw(
                """
                SELECT id FROM invites
                WHERE organization_id = \(bind: invite.organizationID) AND email_key = \(bind: emailKey)
                  AND accepted_at IS NULL AND expires_at > \(bind: invite.createdAt)
                """
            ).first()
            guard pending == nil else { throw KeysmithError.inviteExists(email: invite.email) }
            if joinDefaultProject {
                // The organization's default project: its oldest active one.
                let first = try await database.raw(
                    """
                    SELECT id FROM projects WHERE organization_id = \(bind: invite.organizationID) AND archived_at IS NULL
                    ORDER BY created_at, id LIMIT 1
                    """
                ).first()
                invite.projects = try first.map { [Invite.ProjectGrant(projectID: try $0.id("id"), role: .member)] } ?? []
            } else {
                for grant in invite.projects {
                    do {
                        _ = try await Self.activeProject(database, organizationID: invite.organizationID, id: grant.projectID)
                    } catch KeysmithError.notFound {
                        throw KeysmithError.inviteProject(projectID: grant.projectID, archived: false)
                    } catch KeysmithError.projectArchived {
                        throw KeysmithError.inviteProject(projectID: grant.projectID, archived: true)
                    }
                }
            }
            try await database.raw(
                """
                INSERT INTO invites (id, organization_id, email, email_key, role, projects, created_at, expires_at)
                VALUES (\(bind: invite.id), \(bind: invite.organizationID), \(bind: invite.email), \(bind: emailKey),
                        \(bind: invite.role.rawValue), \(bind: Self.encodeGrants(invite.projects)), \(bind: invite.createdAt),
                        \(bind: invite.expiresAt))
                """
            ).run()
            try await Self.recordEvent(
                database,
                AuditEvent(.inviteSent, resourceID: invite.id, data: [("email", .string(invite.email)), ("role", .string(invite.role.rawValue))]),
                organizationID: invite.organizationID,
                at: invite.createdAt
            )
            return invite
        }
    }

    func deleteInvite(organizationID: OrganizationID, id: InviteID) async throws {
        try await self.engine.write(logger: self.logger) { database in
            let invite = try await Self.invite(database, organizationID: organizationID, id: id, lock: .update)
            guard invite.acceptedAt == nil else { throw KeysmithError.inviteAccepted(inviteID: id) }
            try await database.raw("DELETE FROM invites WHERE id = \(bind: id)").run()
            try await Self.recordEvent(database, AuditEvent(.inviteDeleted, resourceID: id), organizationID: organizationID, at: self.clock.now())
        }
    }

    /// Accepts a pending invite: creates the user `userID`, named `name`, with the invite's email and role, and its
    /// memberships of the invite's projects that are still active, in one transaction. Projects archived or gone
    /// since the invite was sent are left out.
    func acceptInvite(
        organizationID: OrganizationID,
        id: InviteID,
        userID: UserID,
        name: String?,
        at time: UnixSeconds
    ) async throws -> (user: User, invite: Invite) {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lockOrganization(database, organizationID)
            var invite = try await Self.invite(database, organizationID: organizationID, id: id, lock: .update)
            switch invite.status(at: time) {
            case .accepted: throw KeysmithError.inviteAccepted(inviteID: id)
            case .expired: throw KeysmithError.inviteExpired(inviteID: id)
            case .pending: break
            }
            let user = User(id: userID, organizationID: organizationID, email: invite.email, name: name, role: invite.role, addedAt: time)
            try await Self.insertUser(database, user)
            for grant in invite.projects {
                let project = try await database.raw(
                    """
                    SELECT id FROM projects
                    WHERE id = \(bind: grant.projectID) AND organization_id = \(bind: organizationID) AND archived_at IS NULL
                    """
                ).first()
                guard project != nil else { continue }
                try await database.raw(
                    """
                    INSERT INTO project_members (project_id, user_id, role, added_at)
                    VALUES (\(bind: grant.projectID), \(bind: user.id), \(bind: grant.role.rawValue), \(bind: user.addedAt))
                    """
                ).run()
            }
            try await database.raw(
                "UPDATE invites SET accepted_at = \(bind: user.addedAt), user_id = \(bind: user.id) WHERE id = \(bind: id)"
            ).run()
            invite.acceptedAt = user.addedAt
            try await Self.recordEvent(
                database,
                AuditEvent(.inviteAccepted, resourceID: id, data: [("user_id", .string(user.id))]),
                organizationID: organizationID,
                at: user.addedAt
            )
            return (user, invite)
        }
    }
}
