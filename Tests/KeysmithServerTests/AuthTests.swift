import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Admin authentication")
struct AuthTests {
    @Test("No key, a malformed key or an unknown key is a 401 in OpenAI's envelope", arguments: TestEngine.available)
    func unauthenticated(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let missing = try await app.get("/projects", key: "")
            missing.expectError(.unauthorized)
            #expect(missing.headers[.wwwAuthenticate] == "Bearer")

            let malformed = try await app.get("/projects", key: "sk-admin-not-a-real-key")
            malformed.expectError(.unauthorized, code: "invalid_api_key")

            // Well formed, right checksum, never issued.
            let unknown = KeySecret.generate(.admin)
            let unknownReply = try await app.get("/projects", key: unknown)
            unknownReply.expectError(.unauthorized, code: "invalid_api_key")
            // The message shows the key redacted, never whole.
            #expect(!unknownReply.text.contains(unknown))

            let basic = try await app.request(.get, "/v1/organization/projects", key: "", headers: [.authorization: "Basic Zm9vOmJhcg=="])
            basic.expectError(.unauthorized)
        }
    }

    @Test("Project and service account keys get 403 naming the missing scope", arguments: TestEngine.available)
    func projectKeysAreForbidden(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let userKey = try await app.userKey(projectID: projectID, userID: userID)
            let account = try await app.serviceAccount(projectID: projectID)

            for key in [userKey.value, account.value] {
                let read = try await app.get("/projects", key: key)
                read.expectError(.forbidden)
                #expect((read.error["message"] as? String)?.contains("Missing scopes: api.management.read") == true)
                let write = try await app.post("/projects", #"{"name":"x"}"#, key: key)
                write.expectError(.forbidden)
                #expect((write.error["message"] as? String)?.contains("Missing scopes: api.management.write") == true)
            }
            // A well-formed project key that was never issued is not a valid key at all.
            let unknown = try await app.get("/projects", key: KeySecret.generate(.project))
            unknown.expectError(.unauthorized, code: "invalid_api_key")
            // Nothing was created by the refused write.
            let projects = try await app.get("/projects")
            #expect(projects.data.count == 1)
        }
    }

    @Test("A deleted admin key is refused on its very next request; an expired one too", arguments: TestEngine.available)
    func deletedAndExpiredAdminKeys(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let created = try await app.post("/admin_api_keys", #"{"name":"temporary"}"#)
            #expect(created.status == .ok)
            let value = try #require(created["value"] as? String)
            let id = try #require(created["id"] as? String)
            #expect(try await app.get("/projects", key: value).status == .ok)

            let deleted = try await app.delete("/admin_api_keys/\(id)")
            #expect(deleted.status == .ok)
            #expect(deleted["object"] as? String == "organization.admin_api_key.deleted")
            #expect(deleted["deleted"] as? Bool == true)
            try await app.get("/projects", key: value).expectError(.unauthorized, code: "invalid_api_key")

            let expiring = try await app.post("/admin_api_keys", #"{"name":"short","expires_in_seconds":60}"#)
            let expiringValue = try #require(expiring["value"] as? String)
            #expect(expiring["expires_at"] as? Int == app.clock.now + 60)
            #expect(try await app.get("/projects", key: expiringValue).status == .ok)
            app.clock.advance(by: 60)
            try await app.get("/projects", key: expiringValue).expectError(.unauthorized, code: "api_key_expired")
        }
    }

    @Test("An admin key sees only its own organization", arguments: TestEngine.available)
    func organizationIsolation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project("mine")
            let other = try await app.keysmith.createOrganization(name: "Other tenant")
            let otherKey = try await app.keysmith.createAdminKey(name: "other", organizationID: other.id).plaintext

            try await app.get("/projects/\(projectID)", key: otherKey).expectError(.notFound)
            try await app.get("/projects/\(projectID)/api_keys", key: otherKey).expectError(.notFound)
            try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"x"}"#, key: otherKey).expectError(.notFound)
            let list = try await app.get("/projects", key: otherKey)
            #expect(list.data.isEmpty)
            let admins = try await app.get("/admin_api_keys", key: otherKey)
            #expect(admins.data.count == 1)
        }
    }

    @Test("Admin keys list, retrieve and show their value only at creation", arguments: TestEngine.available)
    func adminKeyEndpoints(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let created = try await app.post("/admin_api_keys", #"{"name":"ci"}"#)
            let value = try #require(created["value"] as? String)
            let id = try #require(created["id"] as? String)
            #expect(value.hasPrefix("sk-admin-"))
            #expect(created["object"] as? String == "organization.admin_api_key")
            #expect((created["redacted_value"] as? String)?.hasSuffix(String(value.suffix(4))) == true)

            let retrieved = try await app.get("/admin_api_keys/\(id)")
            #expect(retrieved["value"] == nil)
            #expect(retrieved["name"] as? String == "ci")
            #expect(retrieved.json.keys.contains("last_used_at"))
            #expect(retrieved.json.keys.contains("expires_at"))
            #expect(!retrieved.text.contains(value))

            let list = try await app.get("/admin_api_keys?order=desc&limit=1")
            #expect(list.data.map { $0["id"] as? String } == [id])
            #expect(list["has_more"] as? Bool == true)
            try await app.get("/admin_api_keys?order=sideways").expectError(.badRequest, param: "order")
            try await app.post("/admin_api_keys", "{}").expectError(.badRequest, param: "name")
            try await app.get("/admin_api_keys/key_missing").expectError(.notFound)
        }
    }

    @Test("The organization's last admin key cannot be deleted: 400 naming it, and the key keeps working", arguments: TestEngine.available)
    func lastAdminKey(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let only = try #require(try await app.get("/admin_api_keys").data.first?["id"] as? String)
            let refused = try await app.delete("/admin_api_keys/\(only)")
            refused.expectError(.badRequest, param: "key_id", code: "last_admin_key")
            #expect((refused.error["message"] as? String)?.contains(only) == true)
            #expect(try await app.get("/admin_api_keys").data.count == 1)

            // With a second key, the first can go; then the second is the last.
            let second = try await app.post("/admin_api_keys", #"{"name":"successor"}"#)
            let secondID = try #require(second["id"] as? String)
            let secondValue = try #require(second["value"] as? String)
            #expect(try await app.delete("/admin_api_keys/\(only)", key: secondValue).status == .ok)
            try await app.delete("/admin_api_keys/\(secondID)", key: secondValue).expectError(.badRequest, param: "key_id", code: "last_admin_key")
            #expect(try await app.get("/projects", key: secondValue).status == .ok)
        }
    }
}
