import KeysmithCore
import SQLKit

extension SQLStore {
    static let userColumns = "u.id, u.organization_id, u.email, u.name, u.role, u.added_at"

    func createUser(_ user: User) async throws {
        try await self.engine.write(logger: self.logger) { database in
            // New users and invitations take turns, so that an email cannot become a user's while it is invited.
            try await Self.lockOrganization(database, user.organizationID)
            try await Self.insertUser(database, user)
            try await Self.recordEvent(
                database,
                AuditEvent(.userAdded, resourceID: user.id, data: [("role", .string(user.role.rawValue))]),
                organizationID: user.organizationID,
                at: user.addedAt
            )
        }
    }

    /// Stores a new user, whose email must be no other user's in the organization (compared case-insensitively).
    static func insertUser(_ database: any SQLSession, _ user: User) async throws {
        try await self.ensureEmailIsFree(database, organizationID: user.organizationID, email: user.email)
        do {
            try await database.raw(
                """
                INSERT INTO users (id, organization_id, email, email_key, name, role, added_at)
                VALUES (\(bind: user.id), \(bind: user.organizationID), \(bind: user.email), \(bind: user.email.lowercased()),
                        \(bind: user.name), \(bind: user.role.rawValue), \(bind: user.addedAt))
                """
            ).run()
        } catch  where isUniqueViolation(error) {
            // Another process added the same email since the check.
            throw KeysmithError.emailTaken(user.email)
        }
    }

    /// Throws ``KeysmithError/emailTaken(_:)`` when a user of the organization has this email.
    static func ensureEmailIsFree(_ database: any SQLSession, organizationID: OrganizationID, email: String) async throws {
        let taken = try await database.raw(
            """
            SELECT id FROM users WHERE organization_id = \(bind: organizationID) AND email_key = \(bind: email.lowercased())
            """
        ).first()
        guard taken == nil else { throw KeysmithError.emailTaken(email) }
    }

    func updateUser(organizationID: OrganizationID, id: UserID, role: OrganizationRole) async throws -> User {
        try await self.engine.write(logger: self.logger) { database in
            if role != .owner { try await Self.lockOwners(database, organizationID: organizationID) }
            var user = try await Self.user(database, organizationID: organizationID, id: id, lock: .update)
            if user.role == .owner, role != .owner {
                try await Self.ensureAnotherOwner(database, organizationID: organizationID, besides: id)
            }
            try await database.raw("UPDATE users SET role = \(bind: role.rawValue) WHERE id = \(bind: id)").run()
            user.role = role
            try await Self.recordEvent(
                database,
                AuditEvent(.userUpdated, resourceID: id, data: [("role", .string(role.rawValue))], dataKey: "changes_requested"),
                organizationID: organizationID,
                at: self.clock.now()
            )
            return user
        }
    }

    /// Deletes the user: their project memberships go, so the keys they own stay listed but inactive and stop
    /// verifying everywhere. The row stays (the keys name their owner), its email free for a new user.
    func deleteUser(organizationID: OrganizationID, id: UserID) async throws {
        let now = self.clock.now()
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lockOwners(database, organizationID: organizationID)
            let user = try await Self.user(database, organizationID: organizationID, id: id, lock: .update)
            if user.role == .owner {
                try await Self.ensureAnotherOwner(database, organizationID: organizationID, besides: id)
            }
            let locking = database.dialect.locksRows ? SQLQueryString(" \(SQLLockingClause.update)") : ""
            let projects = try await database.raw(
                "SELECT project_id FROM project_members WHERE user_id = \(bind: id)" + locking
            ).all().map { try $0.id("project_id") as ProjectID }
            try await database.raw("DELETE FROM project_members WHERE user_id = \(bind: id)").run()
            try await database.raw(
                """
                UPDATE users SET deleted_at = \(bind: now), email_key = \(bind: "deleted:" + id.rawValue) WHERE id = \(bind: id)
                """
            ).run()
            try await Self.recordEvent(database, AuditEvent(.userDeleted, resourceID: id), organizationID: organizationID, at: now)
            try await Self.recordChanges(database, projects.map { .membership(projectID: $0, userID: id) }, at: now)
        }
    }

    /// Holds the organization's owners as they are until the transaction ends, so that two requests cannot each
    /// remove one of the last two owners.
    static func lockOwners(_ database: any SQLSession, organizationID: OrganizationID) async throws {
        try await self.lock(
            database,
            "users",
            where: "organization_id = \(bind: organizationID) AND role = 'owner' AND deleted_at IS NULL",
            .update
        )
    }

    static func ensureAnotherOwner(_ database: any SQLSession, organizationID: OrganizationID, besides userID: UserID) async throws {
        let other = try await database.raw(
            """
            SELECT id FROM users
            WHERE organization_id = \(bind: organizationID) AND role = 'owner' AND deleted_at IS NULL AND id <> \(bind: userID)
            LIMIT 1
            """
        ).first()
        guard other != nil else { throw KeysmithError.lastOwner(userID: userID) }
    }

    func user(organizationID: OrganizationID, id: UserID) async throws -> User {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await Self.user(database, organizationID: organizationID, id: id)
        }
    }

    /// The user; with `lock`, the row stays as read until the transaction ends.
    static func user(_ database: any SQLSession, organizationID: OrganizationID, id: UserID, lock: SQLLockingClause? = nil) async throws -> User {
        guard let user = try await database.rows(UserByID(organizationID: organizationID, id: id), lock: lock).first else {
            throw KeysmithError.notFound(.user, id: id)
        }
        return user
    }

    struct UserByID: StoreQuery {
        static let sql = "SELECT \(userColumns) FROM users u WHERE u.organization_id = $1 AND u.id = $2 AND u.deleted_at IS NULL"

        var organizationID: OrganizationID
        var id: UserID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> User { try SQLStore.user(from: row) }
    }

    /// A user from the first six columns of a row (``userColumns``), from position `offset` on.
    static func user(from row: some StoreRowReader, offset: Int = 0) throws -> User {
        User(
            id: try row.id(at: offset),
            organizationID: try row.id(at: offset + 1),
            email: try row.string(at: offset + 2),
            name: try row.optionalString(at: offset + 3),
            role: try enumValue(OrganizationRole.self, row.string(at: offset + 4), column: "role"),
            addedAt: try row.int(at: offset + 5)
        )
    }

    func listUsers(organizationID: OrganizationID, emails: [String], page: PageRequest) async throws -> Page<User> {
        guard !emails.isEmpty else {
            return try await self.fetchPage(UserList(organizationID: organizationID), page)
        }
        // A filter of as many emails as the caller names: a built query (its text varies with their count).
        return try await self.fetchPage(
            ListQuery(
                base: """
                    SELECT \(unsafeRaw: Self.userColumns) FROM users u
                    WHERE u.organization_id = \(bind: organizationID) AND u.deleted_at IS NULL
                      AND u.email_key IN (\(binds: emails.map { $0.lowercased() }))
                    """,
                page: page,
                time: UserList.time,
                id: UserList.id,
                cursor: """
                    SELECT added_at FROM users
                    WHERE id = \(bind: page.after ?? "") AND organization_id = \(bind: organizationID) AND deleted_at IS NULL
                    """
            ),
            decode: { try Self.user(from: $0) }
        )
    }

    /// An organization's users, in the order they were added.
    struct UserList: StoreList {
        static let select = "SELECT \(userColumns) FROM users u WHERE u.organization_id = $1 AND u.deleted_at IS NULL"
        static let filterCount = 1
        static let time = "u.added_at"
        static let id = "u.id"
        static let cursor = "SELECT added_at FROM users WHERE id = $CURSOR AND organization_id = $1 AND deleted_at IS NULL"

        var organizationID: OrganizationID

        var filters: [any Encodable & Sendable] { [self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> User { try SQLStore.user(from: row) }
    }

    // MARK: Project members

    /// A membership's columns, then the user's (``userColumns``).
    static let memberSelect = """
        SELECT m.project_id, m.role AS member_role, m.added_at AS member_added_at, \(userColumns)
        FROM project_members m JOIN users u ON u.id = m.user_id
        """

    static func member(from row: some StoreRowReader) throws -> ProjectMember {
        ProjectMember(
            projectID: try row.id(at: 0),
            user: try user(from: row, offset: 3),
            role: try enumValue(ProjectRole.self, row.string(at: 1), column: "member_role"),
            addedAt: try row.int(at: 2)
        )
    }

    static func findMember(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        projectID: ProjectID,
        userID: UserID,
        sharingMembership: Bool = false
    ) async throws -> ProjectMember? {
        if sharingMembership {
            return try await database.rows(SharedMembership(projectID: projectID, organizationID: organizationID, userID: userID)).first
        }
        return try await database.rows(MemberByID(organizationID: organizationID, projectID: projectID, userID: userID)).first
    }

    struct MemberByID: StoreQuery {
        static let sql = "\(memberSelect) WHERE u.organization_id = $1 AND m.project_id = $2 AND m.user_id = $3"

        var organizationID: OrganizationID
        var projectID: ProjectID
        var userID: UserID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.projectID, self.userID] }

        static func decode(_ row: any StoreRowReader) throws -> ProjectMember { try SQLStore.member(from: row) }
    }

    /// A membership with its user, the membership row (not the user's) shared until the transaction ends, as
    /// lockMembership(_:projectID:userID:_:) would, in the same statement.
    struct SharedMembership: StoreQuery {
        static let select = "\(memberSelect) WHERE m.project_id = $1 AND m.user_id = $3 AND u.organization_id = $2"
        static let sql = select + " FOR SHARE OF m"
        static let sqliteSQL = sqliteText(select)

        var projectID: ProjectID
        var organizationID: OrganizationID
        var userID: UserID

        var bindings: [any Encodable & Sendable] { [self.projectID, self.organizationID, self.userID] }

        static func decode(_ row: any StoreRowReader) throws -> ProjectMember { try SQLStore.member(from: row) }
    }

    /// The membership, or ``KeysmithError/notFound(_:id:)`` naming whichever of the project and the membership is
    /// unknown, within the caller's transaction.
    static func member(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        projectID: ProjectID,
        userID: UserID
    ) async throws -> ProjectMember {
        if let member = try await findMember(database, organizationID: organizationID, projectID: projectID, userID: userID) {
            return member
        }
        _ = try await project(database, organizationID: organizationID, id: projectID)
        throw KeysmithError.notFound(.projectUser, id: userID)
    }

    func addProjectMember(
        organizationID: OrganizationID,
        projectID: ProjectID,
        userID: UserID,
        role: ProjectRole,
        at time: UnixSeconds
    ) async throws -> ProjectMember {
        try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: organizationID, id: projectID)
            let user: User
            do {
                user = try await Self.user(database, organizationID: organizationID, id: userID, lock: .share)
            } catch KeysmithError.notFound {
                throw KeysmithError.referenceNotFound(.user, id: userID)
            }
            let existing = try await database.raw(
                "SELECT role FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)"
            ).first()
            guard existing == nil else { throw KeysmithError.alreadyProjectMember(userID: userID, projectID: projectID) }
            do {
                try await database.raw(
                    """
                    INSERT INTO project_members (project_id, user_id, role, added_at)
                    VALUES (\(bind: projectID), \(bind: userID), \(bind: role.rawValue), \(bind: time))
                    """
                ).run()
            } catch  where isUniqueViolation(error) {
                // Another process added the same membership since the check.
                throw KeysmithError.alreadyProjectMember(userID: userID, projectID: projectID)
            }
            try await Self.recordEvent(
                database,
                AuditEvent(.userAdded, resourceID: userID, projectID: projectID, data: [("role", .string(role.rawValue))]),
                organizationID: organizationID,
                at: time
            )
            // Keys the user kept from an earlier membership are active again.
            try await Self.recordChanges(database, [.membership(projectID: projectID, userID: userID)], at: time)
            return ProjectMember(projectID: projectID, user: user, role: role, addedAt: time)
        }
    }

    func projectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID) async throws -> ProjectMember {
        try await self.findOne { database in
            try await Self.findMember(database, organizationID: organizationID, projectID: projectID, userID: userID)
        } orExplain: { database in
            _ = try await Self.project(database, organizationID: organizationID, id: projectID)
            throw KeysmithError.notFound(.projectUser, id: userID)
        }
    }

    func listProjectMembers(organizationID: OrganizationID, projectID: ProjectID, page: PageRequest) async throws -> Page<ProjectMember> {
        try await self.fetchPage(
            MemberList(organizationID: organizationID, projectID: projectID),
            page,
            ensureListExists: { database in _ = try await Self.project(database, organizationID: organizationID, id: projectID) }
        )
    }

    /// A project's members, in the order they joined.
    struct MemberList: StoreList {
        static let select = "\(memberSelect) WHERE u.organization_id = $1 AND m.project_id = $2"
        static let filterCount = 2
        static let time = "m.added_at"
        static let id = "m.user_id"
        static let cursor = "SELECT added_at FROM project_members WHERE project_id = $2 AND user_id = $CURSOR"

        var organizationID: OrganizationID
        var projectID: ProjectID

        var filters: [any Encodable & Sendable] { [self.organizationID, self.projectID] }

        static func decode(_ row: any StoreRowReader) throws -> ProjectMember { try SQLStore.member(from: row) }
    }

    func updateProjectMember(
        organizationID: OrganizationID,
        projectID: ProjectID,
        userID: UserID,
        role: ProjectRole
    ) async throws -> ProjectMember {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lockMembership(database, projectID: projectID, userID: userID)
            var member = try await Self.member(database, organizationID: organizationID, projectID: projectID, userID: userID)
            try await database.raw(
                """
                UPDATE project_members SET role = \(bind: role.rawValue)
                WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)
                """
            ).run()
            member.role = role
            try await Self.recordEvent(
                database,
                AuditEvent(
                    .userUpdated,
                    resourceID: userID,
                    projectID: projectID,
                    data: [("role", .string(role.rawValue))],
                    dataKey: "changes_requested"
                ),
                organizationID: organizationID,
                at: self.clock.now()
            )
            return member
        }
    }

    func removeProjectMember(organizationID: OrganizationID, projectID: ProjectID, userID: UserID) async throws {
        try await self.engine.write(logger: self.logger) { database in
            try await Self.lockMembership(database, projectID: projectID, userID: userID)
            _ = try await Self.member(database, organizationID: organizationID, projectID: projectID, userID: userID)
            try await database.raw(
                "DELETE FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)"
            ).run()
            let now = self.clock.now()
            try await Self.recordEvent(
                database,
                AuditEvent(.userDeleted, resourceID: userID, projectID: projectID),
                organizationID: organizationID,
                at: now
            )
            // The user's keys in the project stay, inactive: they stop verifying.
            try await Self.recordChanges(database, [.membership(projectID: projectID, userID: userID)], at: now)
        }
    }
}

extension SQLStore {
    /// Keeps a membership from changing or going until the transaction ends (a key created for the member, a role
    /// change), or, with `.update`, claims it for a change.
    static func lockMembership(
        _ database: any SQLSession,
        projectID: ProjectID,
        userID: UserID,
        _ clause: SQLLockingClause = .update
    ) async throws {
        try await self.lock(database, "project_members", where: "project_id = \(bind: projectID) AND user_id = \(bind: userID)", clause)
    }
}

/// A value of one of the domain's string enumerations, as a column holds it.
func enumValue<Value: RawRepresentable<String>>(_ type: Value.Type, _ text: String, column: String) throws -> Value {
    guard let value = Value(rawValue: text) else {
        throw StoreRowError(column: column, problem: "holds '\(text)', which is not a \(Value.self)")
    }
    return value
}
