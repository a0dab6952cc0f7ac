import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Projects")
struct ProjectTests {
    @Test("Create, retrieve, modify and archive return the spec's Project with explicit nulls", arguments: TestEngine.available)
    func lifecycle(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let created = try await app.post("/projects", #"{"name":"Gateway","external_key_id":"ext-1"}"#)
            #expect(created.status == .ok)
            let id = try #require(created["id"] as? String)
            #expect(id.hasPrefix("proj_"))
            #expect(created["object"] as? String == "organization.project")
            #expect(created["name"] as? String == "Gateway")
            #expect(created["created_at"] as? Int == app.clock.now)
            #expect(created["status"] as? String == "active")
            #expect(created["external_key_id"] as? String == "ext-1")
            #expect(created.json.keys.contains("archived_at") && created["archived_at"] is NSNull)

            let retrieved = try await app.get("/projects/\(id)")
            #expect(retrieved.text == created.text)

            let renamed = try await app.post("/projects/\(id)", #"{"name":"Renamed","external_key_id":null}"#)
            #expect(renamed["name"] as? String == "Renamed")
            #expect(renamed["external_key_id"] is NSNull)

            app.clock.advance(by: 10)
            let archived = try await app.post("/projects/\(id)/archive", nil)
            #expect(archived["status"] as? String == "archived")
            #expect(archived["archived_at"] as? Int == app.clock.now)

            try await app.post("/projects/\(id)", #"{"name":"again"}"#).expectError(.badRequest, code: "project_archived")
            try await app.post("/projects/\(id)/service_accounts", #"{"name":"bot"}"#).expectError(.badRequest, code: "project_archived")
        }
    }

    @Test("Lists skip archived projects unless include_archived=true", arguments: TestEngine.available)
    func includeArchived(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let kept = try await app.project("kept")
            let gone = try await app.project("gone")
            _ = try await app.post("/projects/\(gone)/archive", nil)
            #expect(try await app.get("/projects").data.map { $0["id"] as? String } == [kept])
            #expect(try await app.get("/projects?include_archived=false").data.count == 1)
            #expect(try await app.get("/projects?include_archived=true").data.map { $0["id"] as? String } == [kept, gone])
            try await app.get("/projects?include_archived=maybe").expectError(.badRequest, param: "include_archived")
        }
    }

    @Test("Bad project bodies are 400s naming the field and change nothing", arguments: TestEngine.available)
    func validation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            try await app.post("/projects", "{}").expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":""}"#).expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":"   "}"#).expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":42}"#).expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":"x","residency":"MARS"}"#).expectError(.badRequest, param: "residency")
            try await app.post("/projects", #"{"name":"\#(String(repeating: "n", count: 300))"}"#).expectError(.badRequest, param: "name")
            #expect(try await app.get("/projects").data.isEmpty)

            let residency = try await app.post("/projects", #"{"name":"eu","residency":"EU_STORAGE_PROCESSING"}"#)
            #expect(residency["residency"] as? String == "EU_STORAGE_PROCESSING")
        }
    }

    @Test("Unknown projects are 404s", arguments: TestEngine.available)
    func notFound(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let reply = try await app.get("/projects/proj_missing")
            reply.expectError(.notFound)
            #expect(reply.error["message"] as? String == "No such project: proj_missing")
            try await app.post("/projects/proj_missing/archive", nil).expectError(.notFound)
            try await app.get("/projects/proj_missing/api_keys").expectError(.notFound)
            try await app.get("/projects/proj_missing/service_accounts").expectError(.notFound)
            try await app.get("/projects/proj_missing/users").expectError(.notFound)
        }
    }
}
