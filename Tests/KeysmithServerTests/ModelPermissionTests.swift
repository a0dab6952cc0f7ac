import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithServer

@Suite("Model permissions")
struct ModelPermissionTests {
    @Test("Retrieve, update and delete answer the spec's shapes; no policy reads as an empty deny list", arguments: TestEngine.available)
    func lifecycle(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let project = try await app.project()
            let path = "/projects/\(project)/model_permissions"

            let none = try await app.get(path)
            #expect(none.status == .ok)
            #expect(none.text == #"{"object":"project.model_permissions","mode":"deny_list","model_ids":[]}"#)

            let set = try await app.post(path, #"{"mode":"allow_list","model_ids":["gemma-3-270m","llama-3.1-8b","gemma-3-270m"]}"#)
            #expect(set.status == .ok, "\(set.text)")
            #expect(set.text == #"{"object":"project.model_permissions","mode":"allow_list","model_ids":["gemma-3-270m","llama-3.1-8b"]}"#)
            #expect(try await app.get(path).text == set.text)

            let replaced = try await app.post(path, #"{"mode":"deny_list","model_ids":["o3"]}"#)
            #expect(replaced["mode"] as? String == "deny_list" && replaced["model_ids"] as? [String] == ["o3"])

            let deleted = try await app.delete(path)
            #expect(deleted.status == .ok)
            #expect(deleted.text == #"{"object":"project.model_permissions.deleted","deleted":true}"#)
            #expect(try await app.get(path).text == none.text)
            // Deleting what is not there is no error: the project is left with none, as asked.
            #expect(try await app.delete(path).status == .ok)
        }
    }

    @Test("Bad bodies are 400s naming the field and change nothing; unknown and archived projects are refused", arguments: TestEngine.available)
    func validation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let project = try await app.project()
            let path = "/projects/\(project)/model_permissions"
            _ = try await app.post(path, #"{"mode":"deny_list","model_ids":["o3"]}"#)
            let before = try await app.get(path).text

            try await app.post(path, #"{"model_ids":[]}"#).expectError(.badRequest, param: "mode")
            try await app.post(path, #"{"mode":"block_list","model_ids":[]}"#).expectError(.badRequest, param: "mode")
            try await app.post(path, #"{"mode":"allow_list"}"#).expectError(.badRequest, param: "model_ids")
            try await app.post(path, #"{"mode":"allow_list","model_ids":"o3"}"#).expectError(.badRequest, param: "model_ids")
            try await app.post(path, #"{"mode":"allow_list","model_ids":["o3",7]}"#).expectError(.badRequest, param: "model_ids")
            try await app.post(path, #"{"mode":"allow_list","model_ids":[""]}"#).expectError(.badRequest, param: "model_ids")
            try await app.post(path, #"{"mode":"allow_list","model_ids":["a\nb"]}"#).expectError(.badRequest, param: "model_ids")
            let long = String(repeating: "m", count: 257)
            try await app.post(path, #"{"mode":"allow_list","model_ids":["\#(long)"]}"#).expectError(.badRequest, param: "model_ids")
            let many = (0...1000).map { "\"m\($0)\"" }.joined(separator: ",")
            try await app.post(path, #"{"mode":"allow_list","model_ids":[\#(many)]}"#).expectError(.badRequest, param: "model_ids")
            try await app.post(path, "[]").expectError(.badRequest, code: "invalid_json")
            #expect(try await app.get(path).text == before)

            for method in [HTTPRequest.Method.get, .post, .delete] {
                let reply = try await app.request(
                    method,
                    "/v1/organization/projects/proj_missing/model_permissions",
                    body: method == .post ? #"{"mode":"allow_list","model_ids":[]}"# : nil
                )
                reply.expectError(.notFound)
            }
            _ = try await app.post("/projects/\(project)/archive", nil)
            try await app.post(path, #"{"mode":"allow_list","model_ids":[]}"#).expectError(.badRequest, code: "project_archived")
            #expect(try await app.get(path).text == before)
        }
    }

    @Test(
        "A check refuses a model the project may not use, read from the forwarded body or the path",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func checks(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let project = try await app.project()
            let account = try await app.serviceAccount(projectID: project)
            let other = try await app.serviceAccount(projectID: try await app.project("Other"))
            let chat: HTTPFields = [.originalMethod: "POST", .originalURI: "/v1/chat/completions"]
            func check(_ key: String, _ headers: HTTPFields, body: String? = nil) async throws -> ModelPermissionTests.Reply {
                let reply = try await app.request(.post, "/v1/auth/check", key: key, body: body, headers: headers)
                return Reply(status: reply.status, code: reply.error["code"] as? String, message: reply.error["message"] as? String)
            }

            // No policy: everything passes, model or not.
            #expect(try await check(account.value, chat, body: #"{"model":"o3"}"#).status == .ok)
            #expect(try await check(account.value, chat).status == .ok)

            _ = try await app.post("/projects/\(project)/model_permissions", #"{"mode":"allow_list","model_ids":["gemma-3"]}"#)
            #expect(try await check(account.value, chat, body: #"{"model":"gemma-3","messages":[]}"#).status == .ok)
            let refused = try await check(account.value, chat, body: #"{"messages":[],"model":"o3"}"#)
            #expect(refused.status == .forbidden && refused.code == "model_not_found")
            #expect(refused.message == "Project `\(project)` does not have access to model `o3`")
            // Exact ids: case counts.
            #expect(try await check(account.value, chat, body: #"{"model":"Gemma-3"}"#).code == "model_not_found")
            // A model that cannot be told is refused under an allow list: no body (nginx sends none), no model, two
            // models (an upstream may take the second), a body cut short by Envoy, a body that is not JSON.
            for body in [nil, "{}", #"{"model":"gemma-3","model":"o3"}"#, #"{"model":"gemma-3","mod\u0065l":"o3"}"#, "model=gemma-3"] {
                let reply = try await check(account.value, chat, body: body)
                #expect(reply.status == .forbidden && reply.code == "model_required", "\(body ?? "no body")")
            }
            var partial = chat
            partial[HTTPField.Name("X-Envoy-Auth-Partial-Body")!] = "true"
            #expect(try await check(account.value, partial, body: #"{"model":"gemma-3"}"#).code == "model_required")
            // A nested "model" is not the request's.
            #expect(try await check(account.value, chat, body: #"{"model":"gemma-3","tools":[{"model":"o3"}],"x":{"model":"o3"}}"#).status == .ok)
            // Without a description of the request, nothing says which model it uses.
            #expect(try await check(account.value, [:]).code == "model_required")
            // A request without a body uses no model; a model named in the path is judged.
            #expect(try await check(account.value, [.originalMethod: "GET", .originalURI: "/v1/files"]).status == .ok)
            #expect(try await check(account.value, [.originalMethod: "GET", .originalURI: "/v1/models/gemma-3"]).status == .ok)
            #expect(try await check(account.value, [.originalMethod: "GET", .originalURI: "/v1/models/o3"]).code == "model_not_found")
            // Another project's keys are not touched.
            #expect(try await check(other.value, chat, body: #"{"model":"o3"}"#).status == .ok)

            // A deny list refuses what it lists and, like an allow list, a request whose model it cannot tell.
            _ = try await app.post("/projects/\(project)/model_permissions", #"{"mode":"deny_list","model_ids":["o3"]}"#)
            #expect(try await check(account.value, chat, body: #"{"model":"o3"}"#).code == "model_not_found")
            #expect(try await check(account.value, chat, body: #"{"model":"gemma-3"}"#).status == .ok)
            #expect(try await check(account.value, chat).code == "model_required")
            // The path is judged as the upstream resolves it: a dot segment does not make a completion a model lookup.
            for uri in ["/v1/models/../chat/completions", "/v1/models/%2e%2e/chat/completions", "/v1/models/x/../../chat/completions"] {
                let dotted: HTTPFields = [.originalMethod: "POST", .originalURI: uri]
                #expect(try await check(account.value, dotted, body: #"{"model":"o3"}"#).code == "model_not_found", "\(uri)")
            }
            #expect(try await check(account.value, [.originalMethod: "GET", .originalURI: "/v1/models/o3?x=1"]).code == "model_not_found")
            #expect(try await check(account.value, [.originalMethod: "GET", .originalURI: "/v1/models/org%2Fo3"]).status == .ok)
            // An empty deny list refuses nothing.
            _ = try await app.post("/projects/\(project)/model_permissions", #"{"mode":"deny_list","model_ids":[]}"#)
            #expect(try await check(account.value, chat).status == .ok)

            // Deleted: every model again, at once.
            _ = try await app.post("/projects/\(project)/model_permissions", #"{"mode":"allow_list","model_ids":[]}"#)
            #expect(try await check(account.value, chat, body: #"{"model":"gemma-3"}"#).code == "model_not_found")
            _ = try await app.delete("/projects/\(project)/model_permissions")
            #expect(try await check(account.value, chat, body: #"{"model":"o3"}"#).status == .ok)
        }
    }

    struct Reply {
        var status: HTTPResponse.Status
        var code: String?
        var message: String?
    }

    @Test("The top-level key count sees through escapes and ignores nested objects and string values")
    func topLevelKeys() {
        func count(_ json: String) -> Int { ModelAccess.countTopLevelKeys(named: "model", in: Array(json.utf8)) }
        #expect(count(#"{"model":"a"}"#) == 1)
        #expect(count(#"{ "model" : "a" , "model":"b"}"#) == 2)
        #expect(count(#"{"m\u006fdel":"a","model":"b"}"#) == 2)
        #expect(count(#"{"x":"model","y":["model"],"z":{"model":"a"}}"#) == 0)
        #expect(count(#"{"x":"\"model\":","model":"a"}"#) == 1)
        #expect(count(#"{"modelx":"a","model\\":"b"}"#) == 0)
    }
}
