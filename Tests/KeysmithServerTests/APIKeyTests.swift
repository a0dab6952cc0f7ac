import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Project API keys")
struct APIKeyTests {
    @Test("A user key is created with its value once and listed as the spec's ProjectApiKey", arguments: TestEngine.available)
    func userKeyShape(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com", role: "owner")
            let created = try await app.post("/projects/\(projectID)/api_keys", #"{"name":"laptop","user_id":"\#(userID)"}"#)
            #expect(created.status == .ok)
            let value = try #require(created["value"] as? String)
            let id = try #require(created["id"] as? String)
            #expect(KeySecret.parse(value) == .project)
            #expect(id.hasPrefix("key_"))

            let listed = try await app.get("/projects/\(projectID)/api_keys")
            #expect(!listed.text.contains(value))
            let key = try #require(listed.data.first)
            #expect(
                Set(key.keys).isSuperset(of: [
                    "object", "redacted_value", "name", "created_at", "last_used_at", "id", "owner_project_access", "owner", "expires_at",
                ])
            )
            #expect(key["object"] as? String == "organization.project.api_key")
            #expect(key["value"] == nil)
            #expect(key["last_used_at"] is NSNull)
            #expect(key["expires_at"] is NSNull)
            #expect(key["owner_project_access"] as? String == "active")
            let redacted = try #require(key["redacted_value"] as? String)
            #expect(redacted.hasPrefix("sk-proj-") && redacted.hasSuffix(String(value.suffix(4))))
            #expect(redacted.count == value.count)
            let owner = try #require(key["owner"] as? [String: Any])
            #expect(owner["type"] as? String == "user")
            let user = try #require(owner["user"] as? [String: Any])
            #expect(user["id"] as? String == userID)
            #expect(user["email"] as? String == "dev@example.com")
            #expect(user["name"] as? String == "Member")
            #expect(user["role"] as? String == "owner")
            #expect(user["created_at"] is Int)

            let retrieved = try await app.get("/projects/\(projectID)/api_keys/\(id)")
            #expect(retrieved["id"] as? String == id)
            #expect(retrieved["value"] == nil)
            #expect(!retrieved.text.contains(value))
        }
    }

    @Test("Creating a user key needs a project member and valid fields", arguments: TestEngine.available)
    func userKeyValidation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let memberID = try await app.member(of: projectID, email: "m@example.com")
            let outsider = try await app.post("/users", #"{"email":"out@example.com"}"#)
            let outsiderID = try #require(outsider["id"] as? String)
            let path = "/projects/\(projectID)/api_keys"

            try await app.post(path, #"{"name":"k","user_id":"\#(outsiderID)"}"#).expectError(.badRequest, param: "user_id")
            try await app.post(path, #"{"name":"k","user_id":"user-nobody"}"#).expectError(.badRequest, param: "user_id")
            try await app.post(path, #"{"user_id":"\#(memberID)"}"#).expectError(.badRequest, param: "name")
            try await app.post(path, #"{"name":"k"}"#).expectError(.badRequest, param: "user_id")
            try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","scopes":"api.model.read"}"#)
                .expectError(.badRequest, param: "scopes")
            try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","scopes":["Not A Scope"]}"#)
                .expectError(.badRequest, param: "scopes")
            // One form of `param` for every mistake in a field: its name; the message says which element.
            let badType = try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","scopes":["api.model.read",1]}"#)
            badType.expectError(.badRequest, param: "scopes")
            #expect((badType.error["message"] as? String)?.contains("'scopes[1]'") == true)
            // Names never hold control characters: a NUL, a newline, an escape.
            for name in [#"a\u0000b"#, #"line\nbreak"#, #"\u001b[31mred"#, #"tab\there"#] {
                try await app.post(path, #"{"name":"\#(name)","user_id":"\#(memberID)"}"#).expectError(.badRequest, param: "name")
            }
            try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","expires_in_seconds":0}"#)
                .expectError(.badRequest, param: "expires_in_seconds")
            try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","expires_in_seconds":1.5}"#)
                .expectError(.badRequest, param: "expires_in_seconds")
            try await app.post(path, #"{"name":"k","user_id":"\#(memberID)","expires_in_seconds":"60"}"#)
                .expectError(.badRequest, param: "expires_in_seconds")
            #expect(try await app.get("\(path)?owner_project_access=any").data.isEmpty)

            let scoped = try await app.post(
                path,
                #"{"name":"k","user_id":"\#(memberID)","scopes":["api.model.read","api.model.read"],"expires_in_seconds":3600}"#
            )
            #expect(scoped["scopes"] as? [String] == ["api.model.read"])
            #expect(scoped["expires_at"] as? Int == app.clock.now + 3600)
        }
    }

    @Test("Deleting a user key returns the deleted object; a service account key is refused with 400", arguments: TestEngine.available)
    func delete(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "m@example.com")
            let key = try await app.userKey(projectID: projectID, userID: userID)
            let account = try await app.serviceAccount(projectID: projectID)

            let deleted = try await app.delete("/projects/\(projectID)/api_keys/\(key.id)")
            #expect(deleted.status == .ok)
            #expect(deleted["object"] as? String == "organization.project.api_key.deleted")
            #expect(deleted["id"] as? String == key.id)
            #expect(deleted["deleted"] as? Bool == true)
            try await app.get("/projects/\(projectID)/api_keys/\(key.id)").expectError(.notFound)
            try await app.delete("/projects/\(projectID)/api_keys/\(key.id)").expectError(.notFound)

            try await app.delete("/projects/\(projectID)/api_keys/\(account.keyID)").expectError(.badRequest, param: "api_key_id")
            #expect(try await app.get("/projects/\(projectID)/api_keys/\(account.keyID)").status == .ok)
        }
    }

    @Test("Updating a key sets expiry from now and replaces scopes; an empty list removes restrictions", arguments: TestEngine.available)
    func update(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let path = "/projects/\(projectID)/api_keys/\(account.keyID)"

            let updated = try await app.post(path, #"{"expires_in_seconds":120,"scopes":["api.model.read"]}"#)
            #expect(updated.status == .ok, "\(updated.text)")
            #expect(updated["object"] as? String == "organization.project.api_key")
            #expect(updated["expires_at"] as? Int == app.clock.now + 120)
            #expect(updated["scopes"] as? [String] == ["api.model.read"])

            let cleared = try await app.post(path, #"{"scopes":[]}"#)
            #expect(cleared["scopes"] as? [String] == [])
            #expect(cleared["expires_at"] as? Int == app.clock.now + 120)

            try await app.post(path, #"{"expires_in_seconds":-5}"#).expectError(.badRequest, param: "expires_in_seconds")
            try await app.post(path, #"{"scopes":[""]}"#).expectError(.badRequest, param: "scopes")
            // OpenAI's reference: one of the two at least, and neither as null; a refused update changes nothing.
            try await app.post(path, "{}").expectError(.badRequest)
            try await app.post(path, #"{"name":"renamed"}"#).expectError(.badRequest)
            try await app.post(path, #"{"scopes":null}"#).expectError(.badRequest, param: "scopes")
            try await app.post(path, #"{"expires_in_seconds":null,"scopes":["api.model.read"]}"#)
                .expectError(.badRequest, param: "expires_in_seconds")
            let unchanged = try await app.get(path)
            #expect(unchanged["scopes"] as? [String] == [] && unchanged["expires_at"] as? Int == app.clock.now + 120)
            // The audit event says what was asked for, as OpenAI's does.
            let event = try #require(try await app.get("/audit_logs?event_types[]=api_key.updated&limit=1").data.first)
            let requested = (event["api_key.updated"] as? [String: Any])?["changes_requested"] as? [String: Any]
            #expect(requested?["scopes"] as? [String] == [])
            _ = try await app.post(path, #"{"expires_in_seconds":300}"#)
            let latest = try #require(try await app.get("/audit_logs?event_types[]=api_key.updated&limit=1").data.first)
            let asked = (latest["api_key.updated"] as? [String: Any])?["changes_requested"] as? [String: Any]
            #expect(asked?["expires_in_seconds"] as? Int == 300)
            #expect(asked?["expires_at"] as? Int == app.clock.now + 300)
            app.clock.advance(by: 301)
            try await app.post(path, #"{"scopes":[]}"#).expectError(.badRequest, code: "api_key_expired")
            try await app.post("/projects/\(projectID)/api_keys/key_missing", #"{"scopes":[]}"#).expectError(.notFound)
        }
    }

    @Test("owner_project_access separates keys of members who left the project", arguments: TestEngine.available)
    func ownerProjectAccess(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let leaverID = try await app.member(of: projectID, email: "leaver@example.com")
            let stayerID = try await app.member(of: projectID, email: "stayer@example.com")
            let leaverKey = try await app.userKey(projectID: projectID, userID: leaverID)
            let stayerKey = try await app.userKey(projectID: projectID, userID: stayerID)
            let removed = try await app.delete("/projects/\(projectID)/users/\(leaverID)")
            #expect(removed["object"] as? String == "organization.project.user.deleted")

            func ids(_ query: String) async throws -> [String] {
                try await app.get("/projects/\(projectID)/api_keys\(query)").data.compactMap { $0["id"] as? String }
            }
            #expect(try await ids("") == [stayerKey.id])
            #expect(try await ids("?owner_project_access=active") == [stayerKey.id])
            #expect(try await ids("?owner_project_access=inactive") == [leaverKey.id])
            #expect(try await ids("?owner_project_access=any") == [leaverKey.id, stayerKey.id])
            let inactive = try await app.get("/projects/\(projectID)/api_keys/\(leaverKey.id)")
            #expect(inactive["owner_project_access"] as? String == "inactive")
        }
    }
}
