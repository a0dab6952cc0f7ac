import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Errors")
struct ErrorTests {
    @Test("Unknown routes are 404 and wrong methods 405, both in OpenAI's envelope", arguments: TestEngine.available)
    func routing(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let unknown = try await app.request(.get, "/v1/organization/nothing")
            unknown.expectError(.notFound)
            #expect(unknown.error["message"] as? String == "Invalid URL (GET /v1/organization/nothing)")
            try await app.request(.get, "/").expectError(.notFound)

            let wrongMethod = try await app.request(.put, "/v1/organization/projects")
            wrongMethod.expectError(.methodNotAllowed)
            #expect(wrongMethod.headers[.allow] == "GET, POST")
            try await app.request(.patch, "/v1/organization/projects/proj_x").expectError(.methodNotAllowed)
            try await app.request(.delete, "/v1/organization/projects/proj_x/archive").expectError(.methodNotAllowed)
        }
    }

    @Test("Malformed JSON, a non-object body and wrong types are 400s; nothing changes", arguments: TestEngine.available)
    func badBodies(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            try await app.post("/projects", #"{"name":"#).expectError(.badRequest, code: "invalid_json")
            try await app.post("/projects", "[1,2]").expectError(.badRequest, code: "invalid_json")
            try await app.post("/projects", "\"text\"").expectError(.badRequest)
            try await app.post("/projects", #"{"name":["a"]}"#).expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":true}"#).expectError(.badRequest, param: "name")
            try await app.post("/projects", #"{"name":null}"#).expectError(.badRequest, param: "name")
            #expect(try await app.get("/projects").data.isEmpty)
        }
    }

    @Test("A body over 1 MiB is a 413", arguments: TestEngine.available)
    func bodyTooLarge(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let big = #"{"name":"\#(String(repeating: "x", count: 1 << 20))"}"#
            try await app.post("/projects", big).expectError(.contentTooLarge)
            #expect(try await app.get("/projects").data.isEmpty)
        }
    }

    @Test("Unknown body fields are ignored so newer SDKs keep working", arguments: TestEngine.available)
    func unknownFields(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let reply = try await app.post("/projects", #"{"name":"x","geography":"EU","something_new":{"a":1}}"#)
            #expect(reply.status == .ok)
        }
    }

    @Test("GET /healthz answers 200 without authentication", arguments: TestEngine.available)
    func health(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let reply = try await app.request(.get, "/healthz", key: "")
            #expect(reply.status == .ok)
            #expect(reply.text == "ok")
        }
    }
}
