import KeysmithCore
import SQLKit

extension SQLStore {
    static let projectColumns = "id, organization_id, name, external_key_id, residency, created_at, archived_at"

    func createProject(_ project: Project) async throws {
        try await self.engine.write(logger: self.logger) { database in
            try await database.raw(
                """
                INSERT INTO projects (id, organization_id, name, external_key_id, residency, created_at, archived_at)
                VALUES (\(bind: project.id), \(bind: project.organizationID), \(bind: project.name),
                        \(bind: project.externalKeyID), \(bind: project.residency), \(bind: project.createdAt),
                        \(bind: project.archivedAt))
                """
            ).run()
            try await Self.recordEvent(
                database,
                AuditEvent(
                    .projectCreated,
                    resourceID: project.id,
                    projectID: project.id,
                    data: [("name", .string(project.name)), ("title", .string(project.name))]
                ),
                organizationID: project.organizationID,
                at: project.createdAt
            )
        }
    }

    func project(organizationID: OrganizationID, id: ProjectID) async throws -> Project {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await Self.project(database, organizationID: organizationID, id: id)
        }
    }

    /// The project; with `lock`, its row stays as read until the transaction ends (see ``lock(_:_:where:_:)``).
    static func project(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        id: ProjectID,
        lock: SQLLockingClause? = nil
    ) async throws -> Project {
        guard let project = try await database.rows(ProjectByID(organizationID: organizationID, id: id), lock: lock).first else {
            throw KeysmithError.notFound(.project, id: id)
        }
        return project
    }

    struct ProjectByID: StoreQuery {
        static let sql = "SELECT \(projectColumns) FROM projects WHERE organization_id = $1 AND id = $2"

        var organizationID: OrganizationID
        var id: ProjectID

        var bindings: [any Encodable & Sendable] { [self.organizationID, self.id] }

        static func decode(_ row: any StoreRowReader) throws -> Project { try SQLStore.project(from: row) }
    }

    /// A project, shared until the transaction ends (`FOR SHARE` on PostgreSQL): it cannot be archived meanwhile.
    struct SharedProject: StoreQuery {
        static let select = "SELECT \(projectColumns) FROM projects WHERE id = $1 AND organization_id = $2"
        static let sql = select + " FOR SHARE"
        static let sqliteSQL = sqliteText(select)

        var id: ProjectID
        var organizationID: OrganizationID

        var bindings: [any Encodable & Sendable] { [self.id, self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> Project { try SQLStore.project(from: row) }
    }

    /// The project, which must accept new service accounts, members and keys; it cannot be archived until the
    /// transaction ends.
    static func activeProject(
        _ database: any SQLSession,
        organizationID: OrganizationID,
        id: ProjectID,
        lock: SQLLockingClause = .share
    ) async throws -> Project {
        let project: Project
        if lock == .share {
            guard let shared = try await database.rows(SharedProject(id: id, organizationID: organizationID)).first else {
                throw KeysmithError.notFound(.project, id: id)
            }
            project = shared
        } else {
            project = try await Self.project(database, organizationID: organizationID, id: id, lock: lock)
        }
        guard !project.isArchived else { throw KeysmithError.projectArchived(projectID: id) }
        return project
    }

    static func project(from row: some StoreRowReader) throws -> Project {
        Project(
            id: try row.id(at: 0),
            organizationID: try row.id(at: 1),
            name: try row.string(at: 2),
            createdAt: try row.int(at: 5),
            archivedAt: try row.optionalInt(at: 6),
            externalKeyID: try row.optionalString(at: 3),
            residency: try row.optionalString(at: 4)
        )
    }

    func listProjects(organizationID: OrganizationID, includeArchived: Bool, page: PageRequest) async throws -> Page<Project> {
        try await self.fetchPage(ProjectList(organizationID: organizationID, includeArchived: includeArchived), page)
    }

    /// An organization's projects, oldest first; archived ones too when `$2` is true.
    struct ProjectList: StoreList {
        static let select = "SELECT \(projectColumns) FROM projects WHERE organization_id = $1 AND ($2 OR archived_at IS NULL)"
        static let filterCount = 2
        static let time = "created_at"
        static let id = "id"
        static let cursor = "SELECT created_at FROM projects WHERE id = $CURSOR AND organization_id = $1"

        var organizationID: OrganizationID
        var includeArchived: Bool

        var filters: [any Encodable & Sendable] { [self.organizationID, self.includeArchived] }

        static func decode(_ row: any StoreRowReader) throws -> Project { try SQLStore.project(from: row) }
    }

    func updateProject(organizationID: OrganizationID, id: ProjectID, name: String?, externalKeyID: String??) async throws -> Project {
        try await self.engine.write(logger: self.logger) { database in
            var project = try await Self.activeProject(database, organizationID: organizationID, id: id, lock: .update)
            if let name { project.name = name }
            if let externalKeyID { project.externalKeyID = externalKeyID }
            try await database.raw(
                """
                UPDATE projects SET name = \(bind: project.name), external_key_id = \(bind: project.externalKeyID)
                WHERE id = \(bind: id)
                """
            ).run()
            var changes: [(String, AuditJSON)] = []
            if let name { changes.append(("title", .string(name))) }
            if let externalKeyID { changes.append(("external_key_id", externalKeyID.map(AuditJSON.string) ?? .null)) }
            try await Self.recordEvent(
                database,
                AuditEvent(.projectUpdated, resourceID: id, projectID: id, data: changes, dataKey: "changes_requested"),
                organizationID: organizationID,
                at: self.clock.now()
            )
            return project
        }
    }

    func archiveProject(organizationID: OrganizationID, id: ProjectID, at time: UnixSeconds) async throws -> Project {
        try await self.engine.write(logger: self.logger) { database in
            var project = try await Self.project(database, organizationID: organizationID, id: id, lock: .update)
            // Archiving twice is harmless and keeps the first archive time.
            guard !project.isArchived else { return project }
            project.archivedAt = time
            try await database.raw("UPDATE projects SET archived_at = \(bind: time) WHERE id = \(bind: id)").run()
            try await Self.recordEvent(
                database,
                AuditEvent(.projectArchived, resourceID: id, projectID: id),
                organizationID: organizationID,
                at: time
            )
            try await Self.recordChanges(database, [.project(id: id)], at: time)
            return project
        }
    }
}
