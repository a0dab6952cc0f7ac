import KeysmithCore
import SQLKit

extension SQLStore {
    /// The project's model permissions; nil when it has none. Throws ``KeysmithError/notFound(_:id:)`` for an unknown
    /// project (or one of another organization).
    func modelPermissions(organizationID: OrganizationID, projectID: ProjectID) async throws -> ModelPermissions? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            guard let row = try await database.rows(ProjectModelPermissions(projectID: projectID, organizationID: organizationID)).first else {
                throw KeysmithError.notFound(.project, id: projectID)
            }
            return row
        }
    }

    /// Sets the project's model permissions, replacing any it had. The project must not be archived.
    func setModelPermissions(
        organizationID: OrganizationID,
        projectID: ProjectID,
        _ permissions: ModelPermissions
    ) async throws -> ModelPermissions {
        let now = self.clock.now()
        return try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.activeProject(database, organizationID: organizationID, id: projectID)
            try await database.raw(
                """
                INSERT INTO project_model_permissions (project_id, organization_id, mode, model_ids, updated_at)
                VALUES (\(bind: projectID), \(bind: organizationID), \(bind: permissions.mode.rawValue),
                        \(bind: ModelIDList.encode(permissions.modelIDs)), \(bind: now))
                ON CONFLICT (project_id) DO UPDATE
                SET mode = excluded.mode, model_ids = excluded.model_ids, updated_at = excluded.updated_at
                """
            ).run()
            try await Self.recordChanges(database, [.project(id: projectID)], at: now)
            return permissions
        }
    }

    /// Removes the project's model permissions (if it has any): every model is permitted again.
    func deleteModelPermissions(organizationID: OrganizationID, projectID: ProjectID) async throws {
        let now = self.clock.now()
        try await self.engine.write(logger: self.logger) { database in
            _ = try await Self.project(database, organizationID: organizationID, id: projectID, lock: .share)
            try await database.raw(
                "DELETE FROM project_model_permissions WHERE project_id = \(bind: projectID) AND organization_id = \(bind: organizationID)"
            ).run()
            try await Self.recordChanges(database, [.project(id: projectID)], at: now)
        }
    }

    func modelPermissions(projectID: ProjectID) async throws -> ModelPermissions? {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            try await database.rows(ModelPermissionsForVerification(projectID: projectID)).first
        }
    }

    func everyProjectsModelPermissions() async throws -> [ProjectID: ModelPermissions] {
        try await self.engine.unsafeRead(logger: self.logger) { database in
            Dictionary(try await database.rows(EveryProjectsModelPermissions()), uniquingKeysWith: { first, _ in first })
        }
    }

    /// A row for each project that exists, with its permissions if it has any: what tells an unknown project from
    /// one without permissions, in one statement.
    struct ProjectModelPermissions: StoreQuery {
        static let sql = """
            SELECT m.mode, m.model_ids FROM projects p
            LEFT JOIN project_model_permissions m ON m.project_id = p.id
            WHERE p.id = $1 AND p.organization_id = $2
            """

        var projectID: ProjectID
        var organizationID: OrganizationID

        var bindings: [any Encodable & Sendable] { [self.projectID, self.organizationID] }

        static func decode(_ row: any StoreRowReader) throws -> ModelPermissions? {
            guard let mode = try row.optionalString(at: 0) else { return nil }
            return try SQLStore.modelPermissions(mode: mode, modelIDs: try row.string(at: 1))
        }
    }

    /// The project's permissions, for verification (which knows the project by id alone).
    struct ModelPermissionsForVerification: StoreQuery {
        static let sql = "SELECT mode, model_ids FROM project_model_permissions WHERE project_id = $1"

        var projectID: ProjectID

        var bindings: [any Encodable & Sendable] { [self.projectID] }

        static func decode(_ row: any StoreRowReader) throws -> ModelPermissions {
            try SQLStore.modelPermissions(mode: try row.string(at: 0), modelIDs: try row.string(at: 1))
        }
    }

    /// Every project's permissions, for loading the verification state.
    struct EveryProjectsModelPermissions: StoreQuery {
        static let sql = "SELECT project_id, mode, model_ids FROM project_model_permissions"

        var bindings: [any Encodable & Sendable] { [] }

        static func decode(_ row: any StoreRowReader) throws -> (ProjectID, ModelPermissions) {
            (try row.id(at: 0), try SQLStore.modelPermissions(mode: try row.string(at: 1), modelIDs: try row.string(at: 2)))
        }
    }

    static func modelPermissions(mode: String, modelIDs: String) throws -> ModelPermissions {
        guard let mode = ModelPermissions.Mode(rawValue: mode) else {
            throw StoreRowError(column: "mode", problem: "holds '\(mode)', not a model permissions mode")
        }
        return ModelPermissions(mode: mode, modelIDs: ModelIDList.decode(modelIDs))
    }
}

/// Model ids as a column holds them: one per line.
enum ModelIDList {
    static func encode(_ ids: [String]) -> String { ids.joined(separator: "\n") }

    static func decode(_ text: String) -> [String] {
        text.isEmpty ? [] : text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }
}
