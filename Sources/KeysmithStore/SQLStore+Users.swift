public import KeysmithCore
import SQLKit

extension SQLStore {
    static let userColumns = "u.id, u.organization_id, u.email, u.name, u.role, u.added_at"

    public func createUser(_ user: User) async throws {
        try await self.engine.write { database in
            let emailKey = user.email.lowercased()
            let taken = try await database.raw(
                """
                SELECT id FROM users WHERE organization_id = \(bind: user.organizationID) AND email_key = \(bind: emailKey)
                """
            ).first()
            guard taken == nil else {
                throw KeysmithError.invalidRequest(
                    message: "A user with email \(user.email) already exists in this organization.",
                    param: "email",
                    code: "user_already_exists"
                )
            }
            try await database.raw(
                """
                INSERT INTO users (id, organization_id, email, email_key, name, role, added_at)
                VALUES (\(bind: user.id), \(bind: user.organizationID), \(bind: user.email), \(bind: emailKey),
                        \(bind: user.name), \(bind: user.role), \(bind: user.addedAt))
                """
            ).run()
        }
    }

    public func user(id: String, organizationID: String) async throws -> User {
        try await self.engine.read { database in
            try await Self.user(database, id: id, organizationID: organizationID)
        }
    }

    static func user(_ database: any SQLSession, id: String, organizationID: String) async throws -> User {
        let row = try await database.raw(
            "SELECT \(unsafeRaw: userColumns) FROM users u WHERE u.id = \(bind: id) AND u.organization_id = \(bind: organizationID)"
        ).first()
        guard let row else { throw KeysmithError.notFound(resource: "user", id: id) }
        return try user(from: row)
    }

    static func user(from row: StoreRow) throws -> User {
        User(
            id: try row.string("id"),
            organizationID: try row.string("organization_id"),
            email: try row.string("email"),
            name: try row.optionalString("name"),
            role: try row.string("role"),
            addedAt: try row.int("added_at")
        )
    }

    public func listUsers(organizationID: String, emails: [String], page: PageRequest) async throws -> Page<User> {
        try await self.engine.read { database in
            var query: SQLQueryString = """
                SELECT \(unsafeRaw: Self.userColumns) FROM users u WHERE u.organization_id = \(bind: organizationID)
                """
            if !emails.isEmpty {
                query = query + " AND u.email_key IN (\(binds: emails.map { $0.lowercased() }))"
            }
            return try await Self.fetchPage(
                database,
                base: query,
                page: page,
                time: "u.added_at",
                id: "u.id",
                cursor: """
                    SELECT added_at FROM users WHERE id = \(bind: page.after ?? "") AND organization_id = \(bind: organizationID)
                    """,
                decode: { try Self.user(from: $0.copy()) }
            )
        }
    }

    // MARK: Project members

    static let memberSelect = """
        SELECT m.project_id, m.role AS member_role, m.added_at AS member_added_at, \(userColumns)
        FROM project_members m JOIN users u ON u.id = m.user_id
        """

    static func member(from row: StoreRow) throws -> ProjectMember {
        ProjectMember(
            projectID: try row.string("project_id"),
            user: try user(from: row),
            role: try row.string("member_role"),
            addedAt: try row.int("member_added_at")
        )
    }

    static func member(
        _ database: any SQLSession,
        projectID: String,
        organizationID: String,
        userID: String
    ) async throws -> ProjectMember {
        let row = try await database.raw(
            """
            \(unsafeRaw: memberSelect)
            WHERE m.project_id = \(bind: projectID) AND m.user_id = \(bind: userID) AND u.organization_id = \(bind: organizationID)
            """
        ).first()
        guard let row else {
            // Say which of the two is unknown.
            _ = try await project(database, id: projectID, organizationID: organizationID)
            throw KeysmithError.notFound(resource: "project user", id: userID)
        }
        return try member(from: row)
    }

    public func addProjectMember(
        projectID: String,
        organizationID: String,
        userID: String,
        role: String,
        at time: UnixSeconds
    ) async throws -> ProjectMember {
        try await self.engine.write { database in
            _ = try await Self.activeProject(database, id: projectID, organizationID: organizationID)
            let user: User
            do {
                user = try await Self.user(database, id: userID, organizationID: organizationID)
            } catch KeysmithError.notFound {
                throw KeysmithError.invalidRequest(
                    message: "No such user: \(userID). Add the user to the organization first.",
                    param: "user_id",
                    code: nil
                )
            }
            let existing = try await database.raw(
                "SELECT role FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)"
            ).first()
            guard existing == nil else {
                throw KeysmithError.invalidRequest(
                    message: "User \(userID) is already a member of project \(projectID).",
                    param: "user_id",
                    code: "user_already_member"
                )
            }
            try await database.raw(
                """
                INSERT INTO project_members (project_id, user_id, role, added_at)
                VALUES (\(bind: projectID), \(bind: userID), \(bind: role), \(bind: time))
                """
            ).run()
            return ProjectMember(projectID: projectID, user: user, role: role, addedAt: time)
        }
    }

    public func projectMember(projectID: String, organizationID: String, userID: String) async throws -> ProjectMember {
        try await self.engine.read { database in
            try await Self.member(database, projectID: projectID, organizationID: organizationID, userID: userID)
        }
    }

    public func listProjectMembers(projectID: String, organizationID: String, page: PageRequest) async throws -> Page<ProjectMember> {
        try await self.engine.read { database in
            _ = try await Self.project(database, id: projectID, organizationID: organizationID)
            let query: SQLQueryString = "\(unsafeRaw: Self.memberSelect) WHERE m.project_id = \(bind: projectID)"
            return try await Self.fetchPage(
                database,
                base: query,
                page: page,
                time: "m.added_at",
                id: "m.user_id",
                cursor: """
                    SELECT added_at FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: page.after ?? "")
                    """,
                decode: { try Self.member(from: $0.copy()) }
            )
        }
    }

    public func updateProjectMember(projectID: String, organizationID: String, userID: String, role: String) async throws -> ProjectMember {
        try await self.engine.write { database in
            var member = try await Self.member(database, projectID: projectID, organizationID: organizationID, userID: userID)
            try await database.raw(
                "UPDATE project_members SET role = \(bind: role) WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)"
            ).run()
            member.role = role
            return member
        }
    }

    public func removeProjectMember(projectID: String, organizationID: String, userID: String) async throws {
        try await self.engine.write { database in
            _ = try await Self.member(database, projectID: projectID, organizationID: organizationID, userID: userID)
            try await database.raw(
                "DELETE FROM project_members WHERE project_id = \(bind: projectID) AND user_id = \(bind: userID)"
            ).run()
        }
    }
}
