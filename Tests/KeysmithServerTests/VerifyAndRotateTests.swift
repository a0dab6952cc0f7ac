import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

extension Harness {
    func verify(_ key: String, as admin: String? = nil) async throws -> Reply {
        try await self.request(.post, "/v1/keys/verify", key: admin, body: #"{"key":"\#(key)"}"#)
    }

    func rotate(projectID: String, keyID: String, grace: Int? = nil) async throws -> Reply {
        try await self.post(
            "/projects/\(projectID)/api_keys/\(keyID)/rotate",
            grace.map { #"{"grace_period_seconds":\#($0)}"# } ?? nil
        )
    }
}

@Suite("Verify API")
struct VerifyTests {
    @Test("Each code: valid, malformed, not_found, expired, revoked, project_archived, owner_inactive", arguments: TestEngine.available)
    func codes(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let good = try await app.userKey(projectID: projectID, userID: userID, extra: #","scopes":["api.model.read"]"#)

            let valid = try await app.verify(good.value)
            #expect(valid.status == .ok)
            #expect(valid["valid"] as? Bool == true)
            #expect(valid["code"] as? String == "valid")
            let key = try #require(valid["key"] as? [String: Any])
            #expect(key["id"] as? String == good.id)
            #expect(key["project_id"] as? String == projectID)
            #expect(key["scopes"] as? [String] == ["api.model.read"])
            #expect((key["owner"] as? [String: Any])?["id"] as? String == userID)
            #expect(key["expires_at"] is NSNull)
            #expect(!valid.text.contains(good.value))

            func code(_ value: String) async throws -> (String?, Bool?, Any?) {
                let reply = try await app.verify(value)
                #expect(reply.status == .ok, "\(reply.text)")
                return (reply["code"] as? String, reply["valid"] as? Bool, reply["key"])
            }
            #expect(try await code("sk-proj-nope").0 == "malformed")
            #expect(try await code(KeySecret.generate(.project)).0 == "not_found")
            #expect(try await code(app.adminKey).0 == "not_found")

            let expiring = try await app.userKey(projectID: projectID, userID: userID, extra: #","expires_in_seconds":5"#)
            app.clock.advance(by: 5)
            let expired = try await code(expiring.value)
            #expect(expired.0 == "expired" && expired.1 == false && expired.2 is [String: Any])

            let deleted = try await app.userKey(projectID: projectID, userID: userID)
            _ = try await app.delete("/projects/\(projectID)/api_keys/\(deleted.id)")
            let revoked = try await code(deleted.value)
            #expect(revoked.0 == "revoked" && revoked.2 is NSNull)

            _ = try await app.delete("/projects/\(projectID)/users/\(userID)")
            #expect(try await code(good.value).0 == "owner_inactive")

            let account = try await app.serviceAccount(projectID: projectID)
            _ = try await app.post("/projects/\(projectID)/archive", nil)
            #expect(try await code(account.value).0 == "project_archived")
        }
    }

    @Test("Only admins of the key's organization learn about it", arguments: TestEngine.available)
    func authorization(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let other = try await app.keysmith.createOrganization(name: "Other")
            let otherAdmin = try await app.keysmith.createAdminKey(name: "other", organizationID: other.id).plaintext
            let foreign = try await app.verify(account.value, as: otherAdmin)
            #expect(foreign["code"] as? String == "not_found")
            #expect(foreign["key"] is NSNull)

            try await app.verify(account.value, as: account.value).expectError(.forbidden, code: "missing_scope")
            try await app.verify(account.value, as: "").expectError(.unauthorized)
            try await app.request(.post, "/v1/keys/verify", body: "{}").expectError(.badRequest, param: "key")
            try await app.request(.post, "/v1/keys/verify", body: #"{"key":5}"#).expectError(.badRequest, param: "key")
            try await app.request(.get, "/v1/keys/verify").expectError(.methodNotAllowed)
        }
    }
}

@Suite("Rotation")
struct RotationTests {
    @Test("Without a grace period the old secret stops at once; id, name, owner and scopes stay", arguments: TestEngine.available)
    func immediate(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let old = try await app.userKey(projectID: projectID, userID: userID, name: "laptop", extra: #","scopes":["api.model.read"]"#)
            // A scoped key is only let through on a check that says what the original request was.
            let listModels: HTTPFields = [.init("X-Original-Method")!: "GET", .init("X-Original-URI")!: "/v1/models"]
            #expect(try await app.check(old.value, headers: listModels).status == .ok)

            let rotated = try await app.rotate(projectID: projectID, keyID: old.id)
            #expect(rotated.status == .ok, "\(rotated.text)")
            let value = try #require(rotated["value"] as? String)
            #expect(value != old.value && KeySecret.parse(value) == .project)
            #expect(rotated["id"] as? String == old.id)
            #expect(rotated["name"] as? String == "laptop")
            #expect(rotated["scopes"] as? [String] == ["api.model.read"])
            #expect(rotated["previous_secret_expires_at"] is NSNull)
            #expect((rotated["redacted_value"] as? String)?.hasSuffix(String(value.suffix(4))) == true)

            try await app.check(old.value, headers: listModels).expectError(.unauthorized, code: "invalid_api_key")
            #expect(try await app.verify(old.value)["code"] as? String == "revoked")
            let fresh = try await app.check(value, headers: listModels)
            #expect(fresh.status == .ok)
            #expect(fresh.headers[HTTPField.Name("X-Keysmith-Key-Id")!] == old.id)
            let listed = try await app.get("/projects/\(projectID)/api_keys/\(old.id)")
            #expect(listed["redacted_value"] as? String == rotated["redacted_value"] as? String)
            #expect(!listed.text.contains(value))
        }
    }

    @Test("With a grace period both secrets verify until it ends; rotating again ends the first grace at once", arguments: TestEngine.available)
    func grace(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let first = try await app.rotate(projectID: projectID, keyID: account.keyID, grace: 3600)
            #expect(first["previous_secret_expires_at"] as? Int == app.clock.now + 3600)
            let second = try #require(first["value"] as? String)
            #expect(try await app.check(account.value).status == .ok)
            #expect(try await app.check(second).status == .ok)
            let during = try await app.verify(account.value)
            #expect(during["code"] as? String == "valid")
            #expect((during["key"] as? [String: Any])?["previous_secret_expires_at"] as? Int == app.clock.now + 3600)

            app.clock.advance(by: 3599)
            #expect(try await app.check(account.value).status == .ok)
            app.clock.advance(by: 1)
            try await app.check(account.value).expectError(.unauthorized, code: "invalid_api_key")
            #expect(try await app.verify(account.value)["code"] as? String == "revoked")
            #expect(try await app.check(second).status == .ok)

            // A second rotation during a grace period: the first previous secret ends now, the second gets the grace.
            let third = try await app.rotate(projectID: projectID, keyID: account.keyID, grace: 600)
            let thirdValue = try #require(third["value"] as? String)
            let fourth = try await app.rotate(projectID: projectID, keyID: account.keyID, grace: 600)
            let fourthValue = try #require(fourth["value"] as? String)
            try await app.check(second).expectError(.unauthorized, code: "invalid_api_key")
            #expect(try await app.check(thirdValue).status == .ok)
            #expect(try await app.check(fourthValue).status == .ok)
            #expect(try await app.verify(second)["code"] as? String == "revoked")
        }
    }

    @Test("Bad grace periods and expired keys are refused; unknown keys are 404", arguments: TestEngine.available)
    func validation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            try await app.rotate(projectID: projectID, keyID: account.keyID, grace: -1).expectError(.badRequest, param: "grace_period_seconds")
            try await app.rotate(projectID: projectID, keyID: account.keyID, grace: 604_801)
                .expectError(.badRequest, param: "grace_period_seconds")
            #expect(try await app.rotate(projectID: projectID, keyID: account.keyID, grace: 604_800).status == .ok)
            try await app.rotate(projectID: projectID, keyID: "key_missing").expectError(.notFound)
            _ = try await app.post("/projects/\(projectID)/api_keys/\(account.keyID)", #"{"expires_in_seconds":10}"#)
            app.clock.advance(by: 10)
            try await app.rotate(projectID: projectID, keyID: account.keyID).expectError(.badRequest, code: "api_key_expired")
        }
    }
}

@Suite("Last used")
struct LastUsedTests {
    @Test("Uses are batched: nothing is written per request, one flush writes them all", arguments: TestEngine.available)
    func batched(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            let path = "/projects/\(projectID)/api_keys/\(account.keyID)"
            #expect(try await app.get(path)["last_used_at"] is NSNull)
            for _ in 0..<50 {
                #expect(try await app.check(account.value).status == .ok)
            }
            // No write per request: the database has not seen the uses yet.
            #expect(try await app.get(path)["last_used_at"] is NSNull)
            app.clock.advance(by: 30)
            #expect(try await app.check(account.value).status == .ok)
            try await app.usage.flush()
            #expect(try await app.get(path)["last_used_at"] as? Int == app.clock.now)

            // Refused requests are not uses.
            let used = app.clock.now
            _ = try await app.post(path, #"{"scopes":["api.model.read"]}"#)
            app.clock.advance(by: 30)
            let refused = try await app.check(
                account.value,
                headers: [HTTPField.Name("X-Forwarded-Method")!: "POST", HTTPField.Name("X-Forwarded-Uri")!: "/v1/chat/completions"]
            )
            refused.expectError(.forbidden, code: "missing_scope")
            try await app.usage.flush()
            #expect(try await app.get(path)["last_used_at"] as? Int == used)
        }
    }

    @Test("Admin keys record their uses too", arguments: TestEngine.available)
    func adminKeys(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let list = try await app.get("/admin_api_keys")
            #expect(list.data.first?["last_used_at"] is NSNull)
            try await app.usage.flush()
            let after = try await app.get("/admin_api_keys")
            #expect(after.data.first?["last_used_at"] as? Int == app.clock.now)
        }
    }

    @Test("The recorder flushes on its own within its interval", arguments: TestEngine.available)
    func periodic(engine: TestEngine) async throws {
        try await Harness.run(engine, usageFlushInterval: .milliseconds(50)) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            #expect(try await app.check(account.value).status == .ok)
            var written: Int?
            for _ in 0..<100 where written == nil {
                try await Task.sleep(for: .milliseconds(20))
                written = try await app.get("/projects/\(projectID)/api_keys/\(account.keyID)")["last_used_at"] as? Int
            }
            #expect(written == app.clock.now)
        }
    }
}
