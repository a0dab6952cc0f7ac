public import KeysmithCore
import SQLKit

extension SQLStore {
    static let projectColumns = "id, organization_id, name, external_key_id, residency, created_at, archived_at"

    public func createProject(_ project: Project) async throws {
        try await self.engine.write { database in
            try await database.raw(
                """
                INSERT INTO projects (id, organization_id, name, external_key_id, residency, created_at, archived_at)
                VALUES (\(bind: project.id), \(bind: project.organizationID), \(bind: project.name),
                        \(bind: project.externalKeyID), \(bind: project.residency), \(bind: project.createdAt),
                        \(bind: project.archivedAt))
                """
            ).run()
        }
    }

    public func project(id: String, organizationID: String) async throws -> Project {
        try await self.engine.read { database in
            try await Self.project(database, id: id, organizationID: organizationID)
        }
    }

    static func project(_ database: any SQLSession, id: String, organizationID: String) async throws -> Project {
        let row = try await database.raw(
            """
            SELECT \(unsafeRaw: projectColumns) FROM projects
            WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)
            """
        ).first()
        guard let row else { throw KeysmithError.notFound(resource: "project", id: id) }
        return try project(from: row)
    }

    /// The project, which must accept new service accounts and keys.
    static func activeProject(_ database: any SQLSession, id: String, organizationID: String) async throws -> Project {
        let project = try await project(database, id: id, organizationID: organizationID)
        guard !project.isArchived else {
            throw KeysmithError.invalidRequest(
                message: "Project \(id) is archived; archived projects cannot be used or updated.",
                param: nil,
                code: "project_archived"
            )
        }
        return project
    }

    static func project(from row: StoreRow) throws -> Project {
        Project(
            id: try row.string("id"),
            organizationID: try row.string("organization_id"),
            name: try row.string("name"),
            createdAt: try row.int("created_at"),
            archivedAt: try row.optionalInt("archived_at"),
            externalKeyID: try row.optionalString("external_key_id"),
            residency: try row.optionalString("residency")
        )
    }

    public func listProjects(organizationID: String, includeArchived: Bool, page: PageRequest) async throws -> Page<Project> {
        try await self.engine.read { database in
            var query: SQLQueryString = """
                SELECT \(unsafeRaw: Self.projectColumns) FROM projects WHERE organization_id = \(bind: organizationID)
                """
            if !includeArchived {
                query = query + " AND archived_at IS NULL"
            }
            return try await Self.fetchPage(
                database,
                base: query,
                page: page,
                time: "created_at",
                id: "id",
                cursor: """
                    SELECT created_at FROM projects WHERE id = \(bind: page.after ?? "") AND organization_id = \(bind: organizationID)
                    """,
                decode: { try Self.project(from: $0.copy()) }
            )
        }
    }

    public func updateProject(id: String, organizationID: String, name: String?, externalKeyID: String??) async throws -> Project {
        try await self.engine.write { database in
            var project = try await Self.project(database, id: id, organizationID: organizationID)
            guard !project.isArchived else {
                throw KeysmithError.invalidRequest(
                    message: "Project \(id) is archived; archived projects cannot be updated.",
                    param: nil,
                    code: "project_archived"
                )
            }
            if let name { project.name = name }
            if let externalKeyID { project.externalKeyID = externalKeyID }
            try await database.raw(
                """
                UPDATE projects SET name = \(bind: project.name), external_key_id = \(bind: project.externalKeyID)
                WHERE id = \(bind: id)
                """
            ).run()
            return project
        }
    }

    public func archiveProject(id: String, organizationID: String, at time: UnixSeconds) async throws -> Project {
        try await self.engine.write { database in
            var project = try await Self.project(database, id: id, organizationID: organizationID)
            // Archiving twice is harmless and keeps the first archive time.
            guard !project.isArchived else { return project }
            project.archivedAt = time
            try await database.raw("UPDATE projects SET archived_at = \(bind: time) WHERE id = \(bind: id)").run()
            return project
        }
    }
}
