import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KeysmithCore
import KeysmithServer
import KeysmithTestSupport
import Testing

/// A browser's part, for the router test client: the cookies the server set, and the CSRF token of the last page.
struct DashboardVisitor {
    let app: Harness
    var cookies: [String: String] = [:]

    init(_ app: Harness) {
        self.app = app
    }

    mutating func request(_ method: HTTPRequest.Method, _ path: String, form: [(String, String)]? = nil) async throws -> Reply {
        var headers: HTTPFields = [:]
        if !self.cookies.isEmpty {
            headers[.cookie] = self.cookies.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "; ")
        }
        var body: String?
        if let form {
            headers[.contentType] = "application/x-www-form-urlencoded"
            body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
        }
        let reply = try await self.app.request(method, path, key: "", body: body, headers: headers)
        for field in reply.headers where field.name == .setCookie {
            let pair = field.value.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
            let name = String(pair[0])
            let value = pair.count > 1 ? String(pair[1]) : ""
            if value.isEmpty || field.value.contains("Max-Age=0") { self.cookies[name] = nil } else { self.cookies[name] = value }
        }
        return reply
    }

    /// The CSRF token a page's forms carry.
    static func token(_ page: Reply) -> String? {
        guard let range = page.text.range(of: #"name="csrf_token" value="([0-9a-f]{64})""#, options: .regularExpression) else { return nil }
        return String(page.text[range].dropLast().suffix(64))
    }

    mutating func signIn(_ key: String) async throws -> Reply {
        let page = try await self.request(.get, "/dashboard/sign-in")
        return try await self.request(.post, "/dashboard/sign-in", form: [("csrf_token", Self.token(page) ?? ""), ("admin_key", key)])
    }

    mutating func post(_ path: String, _ form: [(String, String)], from page: String) async throws -> Reply {
        let source = try await self.request(.get, page)
        return try await self.request(.post, path, form: [("csrf_token", Self.token(source) ?? "")] + form)
    }
}

@Suite("Dashboard")
struct DashboardTests {
    @Test("Sign-in starts a session the pages need; 30 idle minutes end it", arguments: TestEngine.available)
    func sessions(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            var visitor = DashboardVisitor(app)
            let anonymous = try await visitor.request(.get, "/dashboard/projects")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/dashboard/sign-in")

            let signedIn = try await visitor.signIn(app.adminKey)
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/dashboard/projects")
            #expect(visitor.cookies["keysmith_session"]?.count == 64)
            #expect(try await visitor.request(.get, "/dashboard/projects").status == .ok)

            app.clock.advance(by: 29 * 60)
            #expect(try await visitor.request(.get, "/dashboard/projects").status == .ok)
            app.clock.advance(by: 29 * 60)  // 29 minutes after the last request: still within the idle time
            #expect(try await visitor.request(.get, "/dashboard/people").status == .ok)
            app.clock.advance(by: 30 * 60)
            let expired = try await visitor.request(.get, "/dashboard/projects")
            #expect(expired.status == .seeOther && expired.headers[.location] == "/dashboard/sign-in")
        }
    }

    @Test("A deleted admin key's session ends on its next request", arguments: TestEngine.available)
    func deletedAdminKey(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let created = try await app.post("/admin_api_keys", #"{"name":"browser"}"#)
            let key = try #require(created["value"] as? String)
            let id = try #require(created["id"] as? String)
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(key)
            #expect(try await visitor.request(.get, "/dashboard/admin-keys").status == .ok)
            #expect(try await app.delete("/admin_api_keys/\(id)").status == .ok)
            let after = try await visitor.request(.get, "/dashboard/admin-keys")
            #expect(after.status == .seeOther && after.headers[.location] == "/dashboard/sign-in")
        }
    }

    @Test("A form without the session's CSRF token is refused and changes nothing", arguments: TestEngine.available)
    func csrf(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let forged = try await visitor.request(.post, "/dashboard/projects", form: [("name", "Forged")])
            #expect(forged.status == .forbidden)
            let wrong = try await visitor.request(
                .post,
                "/dashboard/projects",
                form: [("csrf_token", String(repeating: "0", count: 64)), ("name", "Forged")]
            )
            #expect(wrong.status == .forbidden)
            #expect(try await app.get("/projects").data.isEmpty)

            let made = try await visitor.post("/dashboard/projects", [("name", "Real")], from: "/dashboard/projects")
            #expect(made.status == .seeOther)
            #expect(try await app.get("/projects").data.map { $0["name"] as? String } == ["Real"])
        }
    }

    @Test("What people typed is escaped: a name cannot inject markup", arguments: TestEngine.available)
    func escaping(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            _ = try await app.post("/projects", #"{"name":"<script>alert(\"x\")</script> & co"}"#)
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let page = try await visitor.request(.get, "/dashboard/projects")
            #expect(page.text.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"))
            #expect(!page.text.contains("<script>alert"))
            #expect(page.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true)
        }
    }

    @Test("A key's plaintext is on the page that creates it and on no other; a bad field is named beside its form", arguments: TestEngine.available)
    func keyCreation(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project("Gateway")
            let userID = try await app.member(of: projectID, email: "ada@example.com")
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let page = "/dashboard/projects/\(projectID)"

            let bad = try await visitor.post(
                "\(page)/keys",
                [("user_id", userID), ("name", "laptop"), ("scopes", "Not A Scope"), ("expires_in_seconds", "")],
                from: page
            )
            #expect(bad.status == .badRequest)
            #expect(bad.text.contains(#"id="key_scopes" name="scopes" value="Not A Scope" aria-invalid="true""#))
            #expect(bad.text.contains("scopes"))
            #expect(try await app.get("/projects/\(projectID)/api_keys").data.isEmpty)

            let created = try await visitor.post(
                "\(page)/keys",
                [("user_id", userID), ("name", "laptop"), ("scopes", "api.model.request"), ("expires_in_seconds", "2592000")],
                from: page
            )
            #expect(created.status == .ok)
            let plaintext = try #require(created.text.firstMatch(of: /value="(sk-proj-[A-Za-z0-9]+)"/)?.1)
            #expect(created.headers[.cacheControl] == "no-store")
            #expect(try await app.check(String(plaintext)).status == .ok)

            let keys = try await app.get("/projects/\(projectID)/api_keys")
            #expect(keys.data.first?["scopes"] as? [String] == ["api.model.request"])
            #expect(keys.data.first?["expires_at"] as? Int == app.clock.now + 2_592_000)
            let later = try await visitor.request(.get, page)
            #expect(!later.text.contains(String(plaintext)))
            #expect(later.text.contains("laptop"))
        }
    }

    @Test("Lists page 20 at a time with next and previous, as the API pages them")
    func paging() async throws {
        try await Harness.run(.sqlite) { app in
            for index in 0..<25 { _ = try await app.project(String(format: "P%02d", index)) }
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let first = try await visitor.request(.get, "/dashboard/projects")
            #expect(first.text.contains(">P19<") && !first.text.contains(">P20<"))
            let next = try #require(first.text.firstMatch(of: /href="(\/dashboard\/projects\?pages=[^"]+)" rel="next"/)?.1)
            #expect(!first.text.contains(#"rel="prev""#))
            let second = try await visitor.request(.get, String(next))
            #expect(second.text.contains(">P20<") && second.text.contains(">P24<") && !second.text.contains(">P19<"))
            #expect(!second.text.contains(#"rel="next""#))
            let previous = try #require(second.text.firstMatch(of: /href="([^"]+)" rel="prev"/)?.1)
            #expect(previous == "/dashboard/projects")
        }
    }
}
