import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Users and project users")
struct UserTests {
    @Test("Organization users are created (extension), listed and retrieved", arguments: TestEngine.available)
    func organizationUsers(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let created = try await app.post("/users", #"{"email":"ada@example.com","name":"Ada","role":"owner"}"#)
            #expect(created.status == .ok)
            let id = try #require(created["id"] as? String)
            #expect(id.hasPrefix("user-"))
            #expect(created["object"] as? String == "organization.user")
            #expect(created["role"] as? String == "owner")
            #expect(created["added_at"] as? Int == app.clock.now)
            #expect(try await app.get("/users/\(id)").text == created.text)

            let defaulted = try await app.post("/users", #"{"email":"bob@example.com"}"#)
            #expect(defaulted["role"] as? String == "reader")
            #expect(defaulted["name"] is NSNull)

            try await app.post("/users", #"{"email":"ADA@example.com"}"#).expectError(.badRequest, param: "email")
            try await app.post("/users", #"{"email":"not-an-email"}"#).expectError(.badRequest, param: "email")
            try await app.post("/users", #"{"name":"x"}"#).expectError(.badRequest, param: "email")
            try await app.post("/users", #"{"email":"c@example.com","role":"god"}"#).expectError(.badRequest, param: "role")
            #expect(try await app.get("/users").data.count == 2)
            try await app.get("/users/user-missing").expectError(.notFound)
        }
    }

    @Test("Project users are added by id or email, retrieved, modified and removed", arguments: TestEngine.available)
    func projectUsers(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let user = try await app.post("/users", #"{"email":"ada@example.com","name":"Ada"}"#)
            let userID = try #require(user["id"] as? String)
            let path = "/projects/\(projectID)/users"

            try await app.post(path, #"{"user_id":"\#(userID)"}"#).expectError(.badRequest, param: "role")
            try await app.post(path, #"{"user_id":"\#(userID)","role":"admin"}"#).expectError(.badRequest, param: "role")
            try await app.post(path, #"{"user_id":"user-missing","role":"member"}"#).expectError(.badRequest, param: "user_id")
            try await app.post(path, #"{"email":"nobody@example.com","role":"member"}"#).expectError(.badRequest, param: "email")

            let added = try await app.post(path, #"{"email":"ada@example.com","role":"member"}"#)
            #expect(added.status == .ok)
            #expect(added["object"] as? String == "organization.project.user")
            #expect(added["id"] as? String == userID)
            #expect(added["role"] as? String == "member")
            try await app.post(path, #"{"user_id":"\#(userID)","role":"member"}"#).expectError(.badRequest, param: "user_id")

            let modified = try await app.post("\(path)/\(userID)", #"{"role":"owner"}"#)
            #expect(modified["role"] as? String == "owner")
            #expect(try await app.get("\(path)/\(userID)")["role"] as? String == "owner")
            #expect(try await app.get(path).data.count == 1)

            let removed = try await app.delete("\(path)/\(userID)")
            #expect(removed["deleted"] as? Bool == true)
            try await app.get("\(path)/\(userID)").expectError(.notFound)
            try await app.delete("\(path)/\(userID)").expectError(.notFound)
        }
    }
}
