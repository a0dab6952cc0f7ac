import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Service accounts")
struct ServiceAccountTests {
    @Test("Creating a service account returns its first key's value once", arguments: TestEngine.available)
    func create(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let created = try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"Production App"}"#)
            #expect(created.status == .ok)
            #expect(created["object"] as? String == "organization.project.service_account")
            #expect((created["id"] as? String)?.hasPrefix("svc_acct_") == true)
            #expect(created["role"] as? String == "member")
            #expect(created["created_at"] as? Int == app.clock.now)
            let key = try #require(created["api_key"] as? [String: Any])
            #expect(key["object"] as? String == "organization.project.service_account.api_key")
            let value = try #require(key["value"] as? String)
            #expect(KeySecret.parse(value) == .serviceAccount)

            let accountID = try #require(created["id"] as? String)
            let retrieved = try await app.get("/projects/\(projectID)/service_accounts/\(accountID)")
            #expect(retrieved["api_key"] == nil)
            #expect(retrieved["name"] as? String == "Production App")

            let keys = try await app.get("/projects/\(projectID)/api_keys")
            #expect(!keys.text.contains(value))
            let owner = try #require(keys.data.first?["owner"] as? [String: Any])
            #expect(owner["type"] as? String == "service_account")
            #expect((owner["service_account"] as? [String: Any])?["id"] as? String == accountID)
        }
    }

    @Test("create_service_account_only makes an account with role none and no key", arguments: TestEngine.available)
    func createOnly(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let created = try await app.post(
                "/projects/\(projectID)/service_accounts",
                #"{"name":"terraform","create_service_account_only":true}"#
            )
            #expect(created["role"] as? String == "none")
            #expect(created.json.keys.contains("api_key") && created["api_key"] is NSNull)
            #expect(try await app.get("/projects/\(projectID)/api_keys").data.isEmpty)
            try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"x","create_service_account_only":"yes"}"#)
                .expectError(.badRequest, param: "create_service_account_only")
        }
    }

    @Test("expires_in_seconds is the first key's lifetime, refused beside create_service_account_only", arguments: TestEngine.available)
    func firstKeyExpiry(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let path = "/projects/\(projectID)/service_accounts"
            let created = try await app.post(path, #"{"name":"expiring","expires_in_seconds":600}"#)
            #expect(created.status == .ok, "\(created.text)")
            let key = try #require(created["api_key"] as? [String: Any])
            #expect(key["expires_at"] as? Int == app.clock.now + 600)
            let value = try #require(key["value"] as? String)
            #expect(
                try await app.get("/projects/\(projectID)/api_keys/\(try #require(key["id"] as? String))")["expires_at"] as? Int == app.clock.now
                    + 600
            )
            #expect(try await app.check(value).status == .ok)
            app.clock.advance(by: 600)
            try await app.check(value).expectError(.unauthorized, code: "api_key_expired")

            try await app.post(path, #"{"name":"x","create_service_account_only":true,"expires_in_seconds":60}"#)
                .expectError(.badRequest, param: "expires_in_seconds")
            try await app.post(path, #"{"name":"x","expires_in_seconds":0}"#).expectError(.badRequest, param: "expires_in_seconds")
            try await app.post(path, #"{"name":"x","expires_in_seconds":"soon"}"#).expectError(.badRequest, param: "expires_in_seconds")
            // Refused requests made nothing; null is as good as absent.
            #expect(try await app.get(path).data.count == 1)
            let never = try await app.post(path, #"{"name":"forever","create_service_account_only":true,"expires_in_seconds":null}"#)
            #expect(never.status == .ok)
        }
    }

    @Test("Update changes name and role; bad roles are refused", arguments: TestEngine.available)
    func update(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let path = "/projects/\(projectID)/service_accounts/\(account.id)"
            let updated = try await app.post(path, #"{"name":"renamed","role":"owner"}"#)
            #expect(updated["name"] as? String == "renamed")
            #expect(updated["role"] as? String == "owner")
            try await app.post(path, #"{"role":"admin"}"#).expectError(.badRequest, param: "role")
            #expect(try await app.get(path)["role"] as? String == "owner")
        }
    }

    @Test("More keys for a service account, each shown once; deleting the account deletes them all", arguments: TestEngine.available)
    func keysAndDelete(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let extra = try await app.post(
                "/projects/\(projectID)/service_accounts/\(account.id)/api_keys",
                #"{"name":"second","scopes":["api.responses.write"]}"#
            )
            #expect(extra.status == .ok)
            #expect(extra["object"] as? String == "organization.project.service_account.api_key")
            #expect(extra["name"] as? String == "second")
            #expect(KeySecret.parse(try #require(extra["value"] as? String)) == .serviceAccount)
            // The body is optional.
            let unnamed = try await app.post("/projects/\(projectID)/service_accounts/\(account.id)/api_keys", nil)
            #expect(unnamed.status == .ok)
            #expect(try await app.get("/projects/\(projectID)/api_keys").data.count == 3)

            let deleted = try await app.delete("/projects/\(projectID)/service_accounts/\(account.id)")
            #expect(deleted["object"] as? String == "organization.project.service_account.deleted")
            #expect(deleted["deleted"] as? Bool == true)
            #expect(try await app.get("/projects/\(projectID)/api_keys?owner_project_access=any").data.isEmpty)
            try await app.get("/projects/\(projectID)/service_accounts/\(account.id)").expectError(.notFound)
            try await app.post("/projects/\(projectID)/service_accounts/\(account.id)/api_keys", "{}").expectError(.notFound)
        }
    }

    @Test("An archived project refuses new service accounts and new keys", arguments: TestEngine.available)
    func archivedProject(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let userID = try await app.member(of: projectID, email: "m@example.com")
            _ = try await app.post("/projects/\(projectID)/archive", nil)
            try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"late"}"#).expectError(.badRequest)
            try await app.post("/projects/\(projectID)/service_accounts/\(account.id)/api_keys", "{}").expectError(.badRequest)
            try await app.post("/projects/\(projectID)/api_keys", #"{"name":"k","user_id":"\#(userID)"}"#).expectError(.badRequest)
            #expect(try await app.get("/projects/\(projectID)/api_keys").data.count == 1)
        }
    }

    @Test("Service account lists page like every list", arguments: TestEngine.available)
    func list(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            var ids: [String] = []
            for index in 0..<3 { ids.append(try await app.serviceAccount(projectID: projectID, name: "bot\(index)").id) }
            let first = try await app.get("/projects/\(projectID)/service_accounts?limit=2")
            #expect(first.data.compactMap { $0["id"] as? String } == Array(ids.prefix(2)))
            #expect(first["has_more"] as? Bool == true)
            let second = try await app.get("/projects/\(projectID)/service_accounts?limit=2&after=\(ids[1])")
            #expect(second.data.compactMap { $0["id"] as? String } == [ids[2]])
            #expect(second["has_more"] as? Bool == false)
        }
    }
}
