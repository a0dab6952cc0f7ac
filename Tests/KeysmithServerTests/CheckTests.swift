import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain
@testable import KeysmithServer

extension HTTPField.Name {
    static let projectIDHeader = Self("X-Keysmith-Project-Id")!
}

@Suite("Forward auth: /v1/auth/check")
struct CheckTests {
    @Test("A good key gets 200 and the identity headers; a service account key too", arguments: TestEngine.available, Transport.checkPaths)
    func validKeys(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let userKey = try await app.userKey(projectID: projectID, userID: userID)
            let account = try await app.serviceAccount(projectID: projectID)

            let reply = try await app.check(userKey.value)
            #expect(reply.status == .ok)
            #expect(reply.text.isEmpty)
            let organizationID = try #require(reply.headers[HTTPField.Name("X-Keysmith-Organization-Id")!])
            #expect(organizationID.hasPrefix("org-"))
            #expect(reply.headers[.projectIDHeader] == projectID)
            #expect(reply.headers[HTTPField.Name("X-Keysmith-Key-Id")!] == userKey.id)
            #expect(reply.headers[HTTPField.Name("X-Keysmith-Owner-Type")!] == "user")
            #expect(reply.headers[HTTPField.Name("X-Keysmith-Owner-Id")!] == userID)
            #expect(reply.headers[HTTPField.Name("X-Keysmith-Scopes")!] == "")

            let bot = try await app.check(account.value, method: .post)
            #expect(bot.status == .ok)
            #expect(bot.headers[HTTPField.Name("X-Keysmith-Owner-Type")!] == "service_account")
            #expect(bot.headers[HTTPField.Name("X-Keysmith-Owner-Id")!] == account.id)

            // Azure-style clients send api-key.
            let azure = try await app.check(nil, headers: [HTTPField.Name("api-key")!: account.value])
            #expect(azure.status == .ok)
        }
    }

    @Test(
        "Missing, malformed, unknown and admin keys get 401 with OpenAI's body and WWW-Authenticate",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func badKeys(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let missing = try await app.check(nil)
            missing.expectError(.unauthorized)
            #expect(missing.headers[.wwwAuthenticate] == "Bearer")

            for key in ["sk-proj-garbage", KeySecret.generate(.project), KeySecret.generate(.serviceAccount), app.adminKey] {
                let reply = try await app.check(key)
                reply.expectError(.unauthorized, code: "invalid_api_key")
                #expect(reply.headers[.wwwAuthenticate] == "Bearer")
                #expect((reply.error["message"] as? String)?.hasPrefix("Incorrect API key provided: ") == true)
                #expect(!reply.text.contains(key) || key.count < 13)
            }
        }
    }

    @Test(
        "Deleting a key, archiving its project, removing its owner or their service account takes effect on the next request",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func changesTakeEffectAtOnce(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let deleted = try await app.userKey(projectID: projectID, userID: userID, name: "deleted")
            let orphaned = try await app.userKey(projectID: projectID, userID: userID, name: "orphaned")
            let account = try await app.serviceAccount(projectID: projectID)
            // Every key is verified (and so remembered) first.
            for key in [deleted.value, orphaned.value, account.value] {
                #expect(try await app.check(key).status == .ok)
            }

            #expect(try await app.delete("/projects/\(projectID)/api_keys/\(deleted.id)").status == .ok)
            try await app.check(deleted.value).expectError(.unauthorized, code: "invalid_api_key")

            #expect(try await app.delete("/projects/\(projectID)/users/\(userID)").status == .ok)
            try await app.check(orphaned.value).expectError(.unauthorized, code: "invalid_api_key")
            _ = try await app.post("/projects/\(projectID)/users", #"{"user_id":"\#(userID)","role":"member"}"#)
            #expect(try await app.check(orphaned.value).status == .ok)

            #expect(try await app.delete("/projects/\(projectID)/service_accounts/\(account.id)").status == .ok)
            try await app.check(account.value).expectError(.unauthorized, code: "invalid_api_key")

            let other = try await app.serviceAccount(projectID: projectID, name: "other")
            #expect(try await app.check(other.value).status == .ok)
            _ = try await app.post("/projects/\(projectID)/archive", nil)
            try await app.check(other.value).expectError(.unauthorized, code: "invalid_api_key")
            try await app.check(orphaned.value).expectError(.unauthorized, code: "invalid_api_key")
        }
    }

    @Test(
        "A key expires by the clock, with its own code, and an update of its expiry applies at once",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func expiry(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let key = try await app.userKey(projectID: projectID, userID: userID, extra: #","expires_in_seconds":600"#)
            #expect(try await app.check(key.value).status == .ok)
            app.clock.advance(by: 599)
            #expect(try await app.check(key.value).status == .ok)
            app.clock.advance(by: 1)
            try await app.check(key.value).expectError(.unauthorized, code: "api_key_expired")

            let other = try await app.userKey(projectID: projectID, userID: userID)
            #expect(try await app.check(other.value).status == .ok)
            _ = try await app.post("/projects/\(projectID)/api_keys/\(other.id)", #"{"expires_in_seconds":1}"#)
            app.clock.advance(by: 1)
            try await app.check(other.value).expectError(.unauthorized, code: "api_key_expired")
        }
    }

    @Test(
        "Scopes are enforced from Traefik's, nginx's and Envoy's view of the original request; a scoped key without one is refused",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func scopes(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let reader = try await app.userKey(projectID: projectID, userID: userID, extra: #","scopes":["api.model.read"]"#)

            // Without the original request a scoped key cannot be judged: refused, saying what the gateway must send.
            let unjudged = try await app.check(reader.value)
            unjudged.expectError(.forbidden, code: "original_request_required")
            #expect((unjudged.error["message"] as? String)?.contains("X-Original-Method") == true)

            func traefik(_ method: String, _ uri: String) async throws -> Reply {
                try await app.check(
                    reader.value,
                    headers: [HTTPField.Name("X-Forwarded-Method")!: method, HTTPField.Name("X-Forwarded-Uri")!: uri]
                )
            }
            #expect(try await traefik("GET", "/v1/models").status == .ok)
            #expect(try await traefik("GET", "/v1/models/llama-3?x=1").status == .ok)
            let denied = try await traefik("POST", "/v1/chat/completions")
            denied.expectError(.forbidden, code: "missing_scope")
            #expect((denied.error["message"] as? String)?.contains("Missing scopes: api.model.request") == true)
            // Dot segments are resolved as the upstream would: this is GET /v1/files, which the scope does not cover.
            try await traefik("GET", "/v1/models/../files").expectError(.forbidden, code: "missing_scope")
            try await traefik("GET", "/v1/models/%2e%2e/files").expectError(.forbidden, code: "missing_scope")

            let nginx = try await app.check(
                reader.value,
                headers: [HTTPField.Name("X-Original-Method")!: "POST", HTTPField.Name("X-Original-URI")!: "/v1/embeddings"]
            )
            nginx.expectError(.forbidden, code: "missing_scope")

            // Envoy appends the original path and keeps the method.
            try await app.check(reader.value, method: .post, path: "/v1/auth/check/v1/chat/completions")
                .expectError(.forbidden, code: "missing_scope")
            #expect(try await app.check(reader.value, method: .get, path: "/v1/auth/check/v1/models").status == .ok)
            // Empty segments and a query, as Hummingbird's router splits them.
            try await app.check(reader.value, method: .post, path: "/v1/auth/check//v1//chat/completions?stream=true")
                .expectError(.forbidden, code: "missing_scope")
            #expect(try await app.check(reader.value, path: "/v1/auth/check//v1/models/?x=/v1/files").status == .ok)

            // An unrestricted key passes everything; api.all.read passes reads only.
            let unrestricted = try await app.userKey(projectID: projectID, userID: userID)
            #expect(
                try await app.check(unrestricted.value, method: .post, path: "/v1/auth/check/v1/chat/completions").status == .ok
            )
            let readOnly = try await app.userKey(projectID: projectID, userID: userID, extra: #","scopes":["api.all.read"]"#)
            #expect(try await app.check(readOnly.value, method: .get, path: "/v1/auth/check/v1/files").status == .ok)
            try await app.check(readOnly.value, method: .post, path: "/v1/auth/check/v1/responses")
                .expectError(.forbidden, code: "missing_scope")

            // Changing the scopes applies at once.
            _ = try await app.post("/projects/\(projectID)/api_keys/\(reader.id)", #"{"scopes":["api.model.request"]}"#)
            #expect(try await traefik("POST", "/v1/chat/completions").status == .ok)

            // An unrestricted key needs no original request: it may make any request.
            let reported = try await app.check(unrestricted.value)
            #expect(reported.status == .ok)
            #expect(reported.headers[HTTPField.Name("X-Keysmith-Scopes")!] == "")
        }
    }

    static let forwardedMethod = HTTPField.Name("X-Forwarded-Method")!
    static let forwardedURI = HTTPField.Name("X-Forwarded-Uri")!
    static let originalMethod = HTTPField.Name("X-Original-Method")!
    static let originalURI = HTTPField.Name("X-Original-URI")!

    @Test(
        "Two descriptions of the original request that disagree, or half of one, are refused whatever the key",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func forgedDescriptions(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let reader = try await app.userKey(projectID: projectID, userID: userID, extra: #","scopes":["api.model.read"]"#)
            let unrestricted = try await app.userKey(projectID: projectID, userID: userID)

            // The review's replay: behind nginx, the client adds Traefik's headers claiming a read.
            let spoofed: HTTPFields = [
                Self.originalMethod: "POST", Self.originalURI: "/v1/chat/completions",
                Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models",
            ]
            for key in [reader.value, unrestricted.value] {
                let refused = try await app.check(key, headers: spoofed)
                refused.expectError(.forbidden, code: "conflicting_original_request")
                let message = try #require(refused.error["message"] as? String)
                #expect(message.contains("X-Original-Method") && message.contains("X-Forwarded-Method"), "\(message)")
            }
            // Envoy's path against a header: the same.
            try await app.check(
                reader.value,
                method: .post,
                path: "/v1/auth/check/v1/chat/completions",
                headers: [Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models"]
            ).expectError(.forbidden, code: "conflicting_original_request")
            // Half of a description is no description to trust.
            try await app.check(unrestricted.value, headers: [Self.forwardedURI: "/v1/models"])
                .expectError(.forbidden, code: "conflicting_original_request")
            try await app.check(unrestricted.value, headers: [Self.originalMethod: "GET"])
                .expectError(.forbidden, code: "conflicting_original_request")
            // A header sent twice (the gateway's and the client's, where a gateway appends rather than replaces) is two
            // descriptions, whatever they say.
            var twice: HTTPFields = [Self.originalMethod: "GET", Self.originalURI: "/v1/models"]
            twice.append(HTTPField(name: Self.originalURI, value: "/v1/models"))
            try await app.check(reader.value, headers: twice).expectError(.forbidden, code: "conflicting_original_request")
            var twiceMethod: HTTPFields = [Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models"]
            twiceMethod.append(HTTPField(name: Self.forwardedMethod, value: "POST"))
            try await app.check(unrestricted.value, headers: twiceMethod).expectError(.forbidden, code: "conflicting_original_request")

            // Descriptions that agree (the same request, however spelled) are one description.
            let agreeing: HTTPFields = [
                Self.originalMethod: "get", Self.originalURI: "/v1/models?limit=1",
                Self.forwardedMethod: "GET", Self.forwardedURI: "/v1//models/",
            ]
            #expect(try await app.check(reader.value, headers: agreeing).status == .ok)
            #expect(try await app.check(reader.value, method: .get, path: "/v1/auth/check/v1/models", headers: agreeing).status == .ok)
            // A bad key is still a bad key first.
            try await app.check("sk-proj-garbage", headers: spoofed).expectError(.unauthorized, code: "invalid_api_key")
        }
    }

    @Test(
        "With a trusted source named, only its description counts; without it a scoped key is refused",
        arguments: TestEngine.available,
        [RequestDescriptionSource.nginx, .traefik, .envoy]
    )
    func trustedSource(engine: TestEngine, source: RequestDescriptionSource) async throws {
        try await Harness.run(engine, transport: .checksOnEventLoop, configure: { $0.trustedRequestHeaders = source }) { app in
            let projectID = try await app.project()
            let userID = try await app.member(of: projectID, email: "dev@example.com")
            let reader = try await app.userKey(projectID: projectID, userID: userID, extra: #","scopes":["api.model.read"]"#)
            let read: (method: HTTPRequest.Method, path: String, headers: HTTPFields)
            let write: (method: HTTPRequest.Method, path: String, headers: HTTPFields)
            // Everything but the trusted source claims the opposite of the truth.
            switch source {
            case .nginx:
                read = (
                    .get, "/v1/auth/check/v1/chat/completions",
                    [
                        Self.originalMethod: "GET", Self.originalURI: "/v1/models",
                        Self.forwardedMethod: "POST", Self.forwardedURI: "/v1/chat/completions",
                    ]
                )
                write = (
                    .get, "/v1/auth/check/v1/models",
                    [
                        Self.originalMethod: "POST", Self.originalURI: "/v1/chat/completions",
                        Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models",
                    ]
                )
            case .traefik:
                read = (
                    .post, "/v1/auth/check/v1/chat/completions",
                    [
                        Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models",
                        Self.originalMethod: "POST", Self.originalURI: "/v1/chat/completions",
                    ]
                )
                write = (
                    .get, "/v1/auth/check/v1/models",
                    [
                        Self.forwardedMethod: "POST", Self.forwardedURI: "/v1/chat/completions",
                        Self.originalMethod: "GET", Self.originalURI: "/v1/models",
                    ]
                )
            case .envoy:
                read = (
                    .get, "/v1/auth/check/v1/models",
                    [
                        Self.forwardedMethod: "POST", Self.forwardedURI: "/v1/chat/completions",
                        Self.originalMethod: "POST", Self.originalURI: "/v1/chat/completions",
                    ]
                )
                write = (
                    .post, "/v1/auth/check/v1/chat/completions",
                    [
                        Self.forwardedMethod: "GET", Self.forwardedURI: "/v1/models",
                        Self.originalMethod: "GET", Self.originalURI: "/v1/models",
                    ]
                )
            }
            #expect(try await app.check(reader.value, method: read.method, path: read.path, headers: read.headers).status == .ok)
            try await app.check(reader.value, method: write.method, path: write.path, headers: write.headers)
                .expectError(.forbidden, code: "missing_scope")
            // The other sources alone are not the trusted one: no original request, so a scoped key is refused.
            var others = read.headers
            switch source {
            case .nginx: (others[Self.originalMethod], others[Self.originalURI]) = (nil, nil)
            case .traefik: (others[Self.forwardedMethod], others[Self.forwardedURI]) = (nil, nil)
            case .envoy: break
            }
            let path = source == .envoy ? "/v1/auth/check" : read.path
            try await app.check(reader.value, method: read.method, path: path, headers: others)
                .expectError(.forbidden, code: "original_request_required")
        }
    }

    @Test(
        "Every method a gateway forwards is a check, with Date, a request id and the body's length; HEAD gets no body",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func wire(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let account = try await app.serviceAccount(projectID: try await app.project())
            for method in [HTTPRequest.Method.get, .head, .post, .put, .patch, .delete, .options] {
                for path in ["/v1/auth/check", "/v1/auth/check/", "/v1/auth/check?x=1"] {
                    let good = try await app.check(account.value, method: method, path: path)
                    #expect(good.status == .ok, "\(method) \(path)")
                    #expect(good.headers[.contentLength] == "0" && good.text.isEmpty)
                    #expect(good.headers[.date]?.hasSuffix(" GMT") == true)
                    #expect(good.headers[.init("X-Request-Id")!]?.isEmpty == false)

                    let bad = try await app.check("sk-proj-garbage", method: method, path: path)
                    #expect(bad.status == .unauthorized, "\(method) \(path)")
                    #expect(bad.headers[.wwwAuthenticate] == "Bearer" && bad.headers[.contentType] == "application/json")
                    let length = try #require(bad.headers[.contentLength].flatMap(Int.init))
                    if method == .head {
                        #expect(bad.text.isEmpty && length > 100)
                    } else {
                        #expect(bad.text.utf8.count == length)
                        bad.expectError(.unauthorized, code: "invalid_api_key")
                    }
                }
            }
            // A body is dropped up to 8 KiB.
            let small = try await app.request(.post, "/v1/auth/check", key: account.value, body: String(repeating: "x", count: 8192))
            #expect(small.status == .ok)
            // Not a check: another method, or a path that only starts like one.
            try await app.check(account.value, method: .init("TRACE")!).expectError(.notFound, code: "unknown_url")
            try await app.check(account.value, path: "/v1/auth/checks").expectError(.notFound, code: "unknown_url")
            // The admin API goes on as before on the same connection.
            #expect(try await app.get("/projects").status == .ok)
            // A body past 8 KiB is refused, and the connection closed: last, since the test client's connection ends.
            let large = try await app.request(.post, "/v1/auth/check", key: account.value, body: String(repeating: "x", count: 9000))
            large.expectError(.contentTooLarge, code: "request_too_large")
        }
    }

    @Test("A new key verifies at once, and a refused request records no use", arguments: TestEngine.available, Transport.checkPaths)
    func newKeysAndUsage(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let projectID = try await app.project()
            let account = try await app.serviceAccount(projectID: projectID)
            #expect(try await app.check(account.value).status == .ok)
            let second = try await app.post("/projects/\(projectID)/service_accounts/\(account.id)/api_keys", "{}")
            #expect(try await app.check(try #require(second["value"] as? String)).status == .ok)
        }
    }
}

@Suite("Scope map")
struct ScopeMapTests {
    @Test("Paths are judged as an upstream resolves them")
    func normalize() {
        #expect(ScopeMap.normalize("/v1/models/../files?x=/v1/models") == "/v1/files")
        #expect(ScopeMap.normalize("//v1//chat/completions/") == "/v1/chat/completions")
        #expect(ScopeMap.normalize("/v1/%6dodels") == "/v1/models")
        #expect(ScopeMap.normalize("/../../etc") == "/etc")
    }

    func required(_ method: String, _ path: String) -> String? {
        ScopeMap.requiredScope(method: method, path: path)
    }

    @Test("Routes map to the documented scopes")
    func requiredScopes() {
        #expect(required("GET", "/v1/models") == "api.model.read")
        #expect(required("POST", "/v1/chat/completions") == "api.model.request")
        #expect(required("POST", "/v1/responses") == "api.model.request")
        #expect(required("GET", "/v1/responses/resp_1") == "api.responses.read")
        #expect(required("POST", "/v1/embeddings") == "api.model.request")
        #expect(required("post", "/v1/embeddingsX") == nil)
        #expect(required("DELETE", "/v1/models") == nil)
    }
}

@Suite("The Date header")
struct HTTPDateTests {
    @Test("IMF-fixdate, as RFC 9110 gives it, across a leap day and the turn of a century")
    func format() {
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(HTTPDate.format(1_795_764_646) == "Fri, 27 Nov 2026 07:30:46 GMT")
        #expect(HTTPDate.format(4_102_444_799) == "Thu, 31 Dec 2099 23:59:59 GMT")
    }
}
