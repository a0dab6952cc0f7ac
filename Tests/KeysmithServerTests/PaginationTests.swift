import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Lists and pagination")
struct PaginationTests {
    @Test("The key list pages with limit and after; first_id, last_id and has_more are exact", arguments: TestEngine.available)
    func keyListPaging(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "a@example.com")
            var created: [String] = []
            for index in 0..<45 {
                created.append(try await app.userKey(projectID: projectID, userID: userID, name: "k\(index)").id)
                if index % 7 == 0 { app.clock.advance(by: 1) }
            }

            let first = try await app.get("/projects/\(projectID)/api_keys")
            #expect(first.data.count == 20)
            #expect(first["object"] as? String == "list")
            #expect(first["first_id"] as? String == created[0])
            #expect(first["last_id"] as? String == created[19])
            #expect(first["has_more"] as? Bool == true)

            var seen: [String] = []
            var after: String?
            repeat {
                let page = try await app.get("/projects/\(projectID)/api_keys?limit=20" + (after.map { "&after=\($0)" } ?? ""))
                let ids = page.data.compactMap { $0["id"] as? String }
                seen += ids
                #expect(page["first_id"] as? String == ids.first)
                #expect(page["last_id"] as? String == ids.last)
                after = (page["has_more"] as? Bool == true) ? ids.last : nil
            } while after != nil
            #expect(seen == created)

            let exact = try await app.get("/projects/\(projectID)/api_keys?limit=5&after=\(created[39])")
            #expect(exact.data.count == 5)
            #expect(exact["has_more"] as? Bool == false)
        }
    }

    @Test("Empty lists have null first_id and last_id", arguments: TestEngine.available)
    func emptyList(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            for path in ["/projects/\(projectID)/api_keys", "/projects/\(projectID)/service_accounts", "/projects/\(projectID)/users"] {
                let reply = try await app.get(path)
                #expect(reply.status == .ok)
                #expect(reply.data.isEmpty)
                #expect(reply["first_id"] is NSNull && reply["last_id"] is NSNull)
                #expect(reply["has_more"] as? Bool == false)
            }
        }
    }

    @Test("limit outside 1-100 or not an integer, and unknown after cursors, are 400s naming the parameter", arguments: TestEngine.available)
    func badParameters(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project()
            for limit in ["0", "101", "-1", "abc", "1.5", ""] {
                try await app.get("/projects/\(projectID)/api_keys?limit=\(limit)").expectError(.badRequest, param: "limit")
                try await app.get("/projects?limit=\(limit)").expectError(.badRequest, param: "limit")
            }
            #expect(try await app.get("/projects/\(projectID)/api_keys?limit=1").status == .ok)
            #expect(try await app.get("/projects/\(projectID)/api_keys?limit=100").status == .ok)
            try await app.get("/projects/\(projectID)/api_keys?after=key_nope").expectError(.badRequest, param: "after")
            try await app.get("/projects?after=proj_nope").expectError(.badRequest, param: "after")
            try await app.get("/projects/\(projectID)/api_keys?owner_project_access=all")
                .expectError(.badRequest, param: "owner_project_access")
        }
    }

    @Test("Bracketed array parameters and percent-encoding are understood as the SDKs send them", arguments: TestEngine.available)
    func sdkEncodings(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            for email in ["a@example.com", "b+tag@example.com", "c@example.com"] {
                #expect(try await app.post("/users", #"{"email":"\#(email)"}"#).status == .ok)
            }
            let filtered = try await app.get("/users?emails%5B%5D=a%40example.com&emails%5B%5D=b%2Btag%40example.com")
            #expect(Set(filtered.data.compactMap { $0["email"] as? String }) == ["a@example.com", "b+tag@example.com"])
            let plain = try await app.get("/users?emails=c%40example.com")
            #expect(plain.data.compactMap { $0["email"] as? String } == ["c@example.com"])
            #expect(try await app.get("/users").data.count == 3)
        }
    }
}
