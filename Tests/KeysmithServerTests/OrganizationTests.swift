import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain
@testable import KeysmithServer

@Suite("Organization users, invites and the audit log")
struct OrganizationTests {
    @Test("Modifying a user's role; deleting a user ends their memberships and their keys stop verifying", arguments: TestEngine.available)
    func usersModifyAndDelete(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "leaving@example.com")
            let key = try await app.userKey(projectID: projectID, userID: userID)
            #expect(try await app.check(key.value).status == .ok)

            let promoted = try await app.post("/users/\(userID)", #"{"role":"owner"}"#)
            #expect(promoted.status == .ok)
            #expect(promoted["role"] as? String == "owner")
            #expect(try await app.get("/users/\(userID)")["role"] as? String == "owner")
            try await app.post("/users/\(userID)", #"{"role":"admin"}"#).expectError(.badRequest, param: "role")
            try await app.post("/users/\(userID)", "{}").expectError(.badRequest, param: "role")
            try await app.post("/users/user-nobody", #"{"role":"reader"}"#).expectError(.notFound)

            // The last owner can be neither demoted nor deleted.
            try await app.post("/users/\(userID)", #"{"role":"reader"}"#).expectError(.badRequest, param: "user_id", code: "last_owner")
            try await app.delete("/users/\(userID)").expectError(.badRequest, param: "user_id", code: "last_owner")
            let other = try #require(try await app.post("/users", #"{"email":"boss@example.com","role":"owner"}"#)["id"] as? String)
            #expect(try await app.post("/users/\(userID)", #"{"role":"reader"}"#)["role"] as? String == "reader")

            let deleted = try await app.delete("/users/\(userID)")
            #expect(deleted.status == .ok)
            #expect(deleted.json["object"] as? String == "organization.user.deleted")
            #expect(deleted.json["id"] as? String == userID)
            #expect(deleted.json["deleted"] as? Bool == true)
            try await app.get("/users/\(userID)").expectError(.notFound)
            try await app.delete("/users/\(userID)").expectError(.notFound)
            #expect(try await app.get("/users").data.map { $0["id"] as? String } == [other])
            #expect(try await app.get("/projects/\(projectID)/users").data.isEmpty)
            // The key stays, inactive, and no longer verifies.
            let inactive = try await app.get("/projects/\(projectID)/api_keys?owner_project_access=inactive").data
            #expect(inactive.map { $0["id"] as? String } == [key.id])
            #expect(try await app.check(key.value).status == .unauthorized)
            // The email is free again.
            #expect(try await app.post("/users", #"{"email":"leaving@example.com"}"#).status == .ok)
        }
    }

    @Test("Invites: create, list, retrieve, accept into their projects, delete; each refusal says why", arguments: TestEngine.available)
    func invites(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let defaultProject = try await app.project("Default project")
            let second = try await app.project("Second")

            let invite = try await app.post("/invites", #"{"email":"New@Example.com","role":"reader"}"#)
            #expect(invite.status == .ok)
            let inviteID = try #require(invite["id"] as? String)
            #expect(inviteID.hasPrefix("invite-"))
            #expect(invite["object"] as? String == "organization.invite")
            #expect(invite["email"] as? String == "New@Example.com")
            #expect(invite["status"] as? String == "pending")
            #expect(invite["created_at"] as? Int == app.clock.now)
            #expect(invite["expires_at"] as? Int == app.clock.now + 7 * 24 * 3600)
            #expect(invite.json.keys.contains("accepted_at") && invite["accepted_at"] is NSNull)
            // `projects` omitted: the default project (the oldest active one), as a member.
            let grants = try #require(invite["projects"] as? [[String: Any]])
            #expect(grants.count == 1 && grants[0]["id"] as? String == defaultProject && grants[0]["role"] as? String == "member")

            #expect(try await app.get("/invites/\(inviteID)").text == invite.text)
            #expect(try await app.get("/invites").data.map { $0["id"] as? String } == [inviteID])

            try await app.post("/invites", #"{"email":"new@example.com","role":"owner"}"#)
                .expectError(.badRequest, param: "email", code: "invite_already_exists")
            try await app.post("/invites", #"{"email":"x@example.com","role":"member"}"#).expectError(.badRequest, param: "role")
            try await app.post("/invites", #"{"email":"x@example.com"}"#).expectError(.badRequest, param: "role")
            try await app.post("/invites", #"{"email":"not-an-email","role":"reader"}"#).expectError(.badRequest, param: "email")
            try await app.post("/invites", #"{"email":"x@example.com","role":"reader","projects":[{"id":"proj_nope","role":"member"}]}"#)
                .expectError(.badRequest, param: "projects")
            try await app.post("/invites", #"{"email":"x@example.com","role":"reader","projects":[{"id":"\#(second)","role":"boss"}]}"#)
                .expectError(.badRequest, param: "projects")
            try await app.post("/invites", #"{"email":"x@example.com","role":"reader","projects":"all"}"#)
                .expectError(.badRequest, param: "projects")

            let explicit = try await app.post(
                "/invites",
                #"{"email":"two@example.com","role":"owner","projects":[{"id":"\#(second)","role":"owner"}]}"#
            )
            let explicitID = try #require(explicit["id"] as? String)
            let none = try await app.post("/invites", #"{"email":"none@example.com","role":"reader","projects":[]}"#)
            #expect((none["projects"] as? [Any])?.isEmpty == true)

            // Accepting creates the user with the invite's email and role, in its projects.
            app.clock.advance(by: 60)
            let user = try await app.post("/invites/\(explicitID)/accept", #"{"name":"Two"}"#)
            #expect(user.status == .ok)
            #expect(user["object"] as? String == "organization.user")
            #expect(user["email"] as? String == "two@example.com")
            #expect(user["role"] as? String == "owner")
            #expect(user["name"] as? String == "Two")
            let userID = try #require(user["id"] as? String)
            let membership = try await app.get("/projects/\(second)/users/\(userID)")
            #expect(membership["role"] as? String == "owner")
            let accepted = try await app.get("/invites/\(explicitID)")
            #expect(accepted["status"] as? String == "accepted")
            #expect(accepted["accepted_at"] as? Int == app.clock.now)
            try await app.post("/invites/\(explicitID)/accept", "{}").expectError(.badRequest, param: "invite_id", code: "invite_already_accepted")
            try await app.delete("/invites/\(explicitID)").expectError(.badRequest, param: "invite_id", code: "invite_already_accepted")
            // A member's email cannot be invited.
            try await app.post("/invites", #"{"email":"TWO@example.com","role":"reader"}"#)
                .expectError(.badRequest, param: "email", code: "user_already_exists")

            // Invites expire; an expired one cannot be accepted, and can be deleted.
            app.clock.advance(by: 7 * 24 * 3600)
            #expect(try await app.get("/invites/\(inviteID)")["status"] as? String == "expired")
            try await app.post("/invites/\(inviteID)/accept", "{}").expectError(.badRequest, param: "invite_id", code: "invite_expired")
            let removed = try await app.delete("/invites/\(inviteID)")
            #expect(removed.json["object"] as? String == "organization.invite.deleted")
            #expect(removed.json["deleted"] as? Bool == true)
            try await app.get("/invites/\(inviteID)").expectError(.notFound)
            try await app.delete("/invites/\(inviteID)").expectError(.notFound)
            // Once expired, the email can be invited again.
            #expect(try await app.post("/invites", #"{"email":"none@example.com","role":"reader"}"#).status == .ok)
        }
    }

    @Test("Each mutating endpoint leaves exactly one audit event of its type; a refused request leaves none", arguments: TestEngine.available)
    func oneEventPerWrite(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            var seen = try await app.get("/audit_logs?limit=100").data.count

            /// Runs `request`, then expects exactly one new event, of `type`, about `resource` (nil: the one the
            /// response names), in `project` (or, `inItsProject`, in the resource itself), returning it.
            func expectEvent(
                _ type: String,
                resource: String? = nil,
                project: String? = nil,
                inItsProject: Bool = false,
                sourceLocation: SourceLocation = #_sourceLocation,
                _ request: () async throws -> Reply
            ) async throws -> [String: Any] {
                let reply = try await request()
                #expect(reply.status == .ok, "\(reply.text)", sourceLocation: sourceLocation)
                let events = try await app.get("/audit_logs?limit=100").data
                #expect(events.count == seen + 1, "\(type): \(events.count - seen) new events", sourceLocation: sourceLocation)
                seen = events.count
                let event = try #require(events.first, sourceLocation: sourceLocation)
                #expect(event["type"] as? String == type, sourceLocation: sourceLocation)
                let details = try #require(event[type] as? [String: Any], sourceLocation: sourceLocation)
                let expectedResource = resource ?? (reply.json["id"] as? String)
                #expect(details["id"] as? String == expectedResource, sourceLocation: sourceLocation)
                let expectedProject = inItsProject ? expectedResource : project
                #expect((event["project"] as? [String: Any])?["id"] as? String == expectedProject, sourceLocation: sourceLocation)
                let actor = try #require(event["actor"] as? [String: Any], sourceLocation: sourceLocation)
                #expect(actor["type"] as? String == "api_key", sourceLocation: sourceLocation)
                #expect((actor["api_key"] as? [String: Any])?["id"] as? String != nil, sourceLocation: sourceLocation)
                // Never a secret: no plaintext key in any event.
                if let value = reply.json["value"] as? String {
                    #expect(!(try await app.get("/audit_logs?limit=100").text.contains(value)), sourceLocation: sourceLocation)
                }
                return event
            }
            func expectNoEvent(sourceLocation: SourceLocation = #_sourceLocation, _ request: () async throws -> Reply) async throws {
                let reply = try await request()
                #expect(reply.status != .ok, sourceLocation: sourceLocation)
                #expect(try await app.get("/audit_logs?limit=100").data.count == seen, sourceLocation: sourceLocation)
            }

            let created = try await expectEvent("project.created", inItsProject: true) { try await app.post("/projects", #"{"name":"Audited"}"#) }
            let projectID = try #require((created["project"] as? [String: Any])?["id"] as? String)
            #expect((created["project"] as? [String: Any])?["name"] as? String == "Audited")
            _ = try await expectEvent("project.updated", resource: projectID, project: projectID) {
                try await app.post("/projects/\(projectID)", #"{"name":"Renamed"}"#)
            }
            let user = try await expectEvent("user.added") { try await app.post("/users", #"{"email":"a@example.com"}"#) }
            let userID = try #require((user["user.added"] as? [String: Any])?["id"] as? String)
            _ = try await expectEvent("user.added", resource: userID, project: projectID) {
                try await app.post("/projects/\(projectID)/users", #"{"user_id":"\#(userID)","role":"member"}"#)
            }
            _ = try await expectEvent("user.updated", resource: userID, project: projectID) {
                try await app.post("/projects/\(projectID)/users/\(userID)", #"{"role":"owner"}"#)
            }
            let keyEvent = try await expectEvent("api_key.created", project: projectID) {
                try await app.post("/projects/\(projectID)/api_keys", #"{"name":"k","user_id":"\#(userID)","scopes":["api.model.read"]}"#)
            }
            let keyDetails = try #require(keyEvent["api_key.created"] as? [String: Any])
            let keyID = try #require(keyDetails["id"] as? String)
            #expect((keyDetails["data"] as? [String: Any])?["scopes"] as? [String] == ["api.model.read"])
            _ = try await expectEvent("api_key.updated", resource: keyID, project: projectID) {
                try await app.post("/projects/\(projectID)/api_keys/\(keyID)", #"{"scopes":[]}"#)
            }
            let rotation = try await expectEvent("api_key.updated", resource: keyID, project: projectID) {
                try await app.post("/projects/\(projectID)/api_keys/\(keyID)/rotate", #"{"grace_period_seconds":60}"#)
            }
            let requested = (rotation["api_key.updated"] as? [String: Any])?["changes_requested"] as? [String: Any]
            #expect((requested?["rotated"] as? [String: Any])?["previous_secret_expires_at"] as? Int == app.clock.now + 60)
            _ = try await expectEvent("api_key.deleted", resource: keyID, project: projectID) {
                try await app.delete("/projects/\(projectID)/api_keys/\(keyID)")
            }
            let account = try await expectEvent("service_account.created", project: projectID) {
                try await app.post("/projects/\(projectID)/service_accounts", #"{"name":"bot"}"#)
            }
            let accountID = try #require((account["service_account.created"] as? [String: Any])?["id"] as? String)
            _ = try await expectEvent("service_account.updated", resource: accountID, project: projectID) {
                try await app.post("/projects/\(projectID)/service_accounts/\(accountID)", #"{"name":"robot"}"#)
            }
            _ = try await expectEvent("service_account.deleted", resource: accountID, project: projectID) {
                try await app.delete("/projects/\(projectID)/service_accounts/\(accountID)")
            }
            _ = try await expectEvent("user.deleted", resource: userID, project: projectID) {
                try await app.delete("/projects/\(projectID)/users/\(userID)")
            }
            _ = try await expectEvent("user.updated", resource: userID) { try await app.post("/users/\(userID)", #"{"role":"reader"}"#) }
            _ = try await expectEvent("user.deleted", resource: userID) { try await app.delete("/users/\(userID)") }
            let invite = try await expectEvent("invite.sent") { try await app.post("/invites", #"{"email":"i@example.com","role":"reader"}"#) }
            let inviteID = try #require((invite["invite.sent"] as? [String: Any])?["id"] as? String)
            _ = try await expectEvent("invite.deleted", resource: inviteID) { try await app.delete("/invites/\(inviteID)") }
            let second = try await app.post("/invites", #"{"email":"j@example.com","role":"reader","projects":[]}"#)
            seen += 1
            let secondID = try #require(second["id"] as? String)
            _ = try await expectEvent("invite.accepted", resource: secondID) { try await app.post("/invites/\(secondID)/accept", "{}") }
            let adminKey = try await expectEvent("tenant.admin_api_key.created") {
                try await app.post("/admin_api_keys", #"{"name":"second"}"#)
            }
            let adminKeyID = try #require((adminKey["tenant.admin_api_key.created"] as? [String: Any])?["id"] as? String)
            _ = try await expectEvent("tenant.admin_api_key.deleted", resource: adminKeyID) { try await app.delete("/admin_api_keys/\(adminKeyID)") }
            _ = try await expectEvent("project.archived", resource: projectID, project: projectID) {
                try await app.post("/projects/\(projectID)/archive", nil)
            }

            // Refused requests leave nothing.
            try await expectNoEvent { try await app.post("/projects", #"{"name":""}"#) }
            try await expectNoEvent { try await app.post("/projects/\(projectID)", #"{"name":"archived"}"#) }
            try await expectNoEvent { try await app.post("/users", #"{"email":"J@example.com"}"#) }
            try await expectNoEvent { try await app.delete("/projects/\(projectID)/api_keys/key_missing") }
            try await expectNoEvent {
                try await app.post("/invites", #"{"email":"i2@example.com","role":"reader","projects":[{"id":"proj_x","role":"member"}]}"#)
            }
        }
    }

    @Test("Audit log filters and both cursors", arguments: TestEngine.available)
    func auditFilters(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let first = try await app.project("one")
            app.clock.advance(by: 100)
            let secondTime = app.clock.now
            let second = try await app.project("two")
            app.clock.advance(by: 100)
            _ = try await app.post("/projects/\(first)/archive", nil)
            let all = try await app.get("/audit_logs").data
            // Newest first; the oldest is the first start's admin key, made by the offline bootstrap.
            #expect(all.map { $0["type"] as? String } == ["project.archived", "project.created", "project.created", "tenant.admin_api_key.created"])
            let ids = all.compactMap { $0["id"] as? String }
            let bootstrap = try #require(all.last?["actor"] as? [String: Any])
            #expect(bootstrap["type"] as? String == "session")
            #expect(((bootstrap["session"] as? [String: Any])?["user"] as? [String: Any])?["id"] as? String == "keysmith-cli")

            func types(_ query: String) async throws -> [String] {
                try await app.get("/audit_logs?\(query)").data.compactMap { $0["type"] as? String }
            }
            #expect(try await types("event_types[]=project.created").count == 2)
            #expect(try await types("event_types[]=project.archived&event_types[]=api_key.created") == ["project.archived"])
            #expect(try await types("project_ids[]=\(first)") == ["project.archived", "project.created"])
            #expect(try await types("resource_ids[]=\(second)") == ["project.created"])
            #expect(try await types("effective_at[gte]=\(secondTime)").count == 2)
            #expect(try await types("effective_at[gt]=\(secondTime)") == ["project.archived"])
            #expect(try await types("effective_at[lt]=\(secondTime)").count == 2)
            #expect(try await types("effective_at[lte]=\(secondTime)").count == 3)
            #expect(try await types("actor_ids[]=keysmith-cli") == ["tenant.admin_api_key.created"])
            let actor = try #require(((all[0]["actor"] as? [String: Any])?["api_key"] as? [String: Any])?["id"] as? String)
            #expect(try await types("actor_ids[]=\(actor)").count == 3)
            #expect(try await types("actor_ids[]=key_someone_else").isEmpty)
            #expect(try await types("actor_emails[]=a@example.com").isEmpty)

            let page = try await app.get("/audit_logs?limit=2")
            #expect(page.data.compactMap { $0["id"] as? String } == Array(ids.prefix(2)))
            #expect(page["has_more"] as? Bool == true)
            #expect(page["first_id"] as? String == ids[0] && page["last_id"] as? String == ids[1])
            let rest = try await app.get("/audit_logs?limit=2&after=\(ids[1])")
            #expect(rest.data.compactMap { $0["id"] as? String } == [ids[2], ids[3]])
            #expect(rest["has_more"] as? Bool == false)
            let newer = try await app.get("/audit_logs?limit=1&before=\(ids[2])")
            #expect(newer.data.compactMap { $0["id"] as? String } == [ids[1]])
            #expect(newer["has_more"] as? Bool == true)

            try await app.get("/audit_logs?after=audit_log-nope").expectError(.badRequest, param: "after")
            try await app.get("/audit_logs?before=audit_log-nope").expectError(.badRequest, param: "before")
            try await app.get("/audit_logs?after=\(ids[0])&before=\(ids[2])").expectError(.badRequest, param: "before")
            try await app.get("/audit_logs?event_types[]=project.exploded").expectError(.badRequest, param: "event_types")
            // OpenAI's, never recorded here: nothing, not a refusal, and not everything.
            #expect(try await app.get("/audit_logs?event_types[]=login.succeeded").data.isEmpty)
            #expect(try await types("event_types[]=login.failed&event_types[]=project.archived") == ["project.archived"])
            try await app.get("/audit_logs?effective_at[gt]=soon").expectError(.badRequest, param: "effective_at[gt]")
            try await app.get("/audit_logs?limit=0").expectError(.badRequest, param: "limit")
        }
    }

    @Test(
        "A NUL or other control character in a query parameter or an invite's project is a 400 naming it, on both engines",
        arguments: TestEngine.available
    )
    func controlCharacters(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            try await app.get("/users?emails=%00").expectError(.badRequest, param: "emails")
            try await app.get("/projects?after=proj%00x").expectError(.badRequest, param: "after")
            try await app.get("/audit_logs?resource_ids[]=%1B").expectError(.badRequest, param: "resource_ids")
            // Path parameters arrive percent-encoded, as sent: an unknown id, not a 500.
            try await app.get("/projects/proj%00x").expectError(.notFound)
            try await app.post("/invites", #"{"email":"a@example.com","role":"reader","projects":[{"id":"p\u0000","role":"member"}]}"#)
                .expectError(.badRequest, param: "projects")
        }
    }
}
