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
    @Test("Every page the router serves under /dashboard needs a session, and every form a session's CSRF token")
    func everyPageIsBehindSignIn() async throws {
        try await Harness.run(.sqlite) { app in
            let open =
                ["GET /dashboard", "GET /dashboard/sign-in", "POST /dashboard/sign-in", "GET /dashboard/assets/style.css"]
                + ["GET /dashboard/assets/dashboard.js", "GET /dashboard/**"]
            let pages = app.routes.filter { $0.contains(" /dashboard") && !open.contains($0) }
            #expect(pages.count >= 30, "\(pages)")
            var visitor = DashboardVisitor(app)
            var signedIn = DashboardVisitor(app)
            _ = try await signedIn.signIn(app.adminKey)
            for route in pages {
                let parts = route.split(separator: " ")
                let method = HTTPRequest.Method(String(parts[0]))!
                let path = parts[1].split(separator: "/").map { $0.hasPrefix(":") ? "x" : String($0) }.joined(separator: "/")
                let anonymous = try await visitor.request(method, "/" + path, form: method == .post ? [("name", "x")] : nil)
                #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/dashboard/sign-in", "\(route)")
                if method == .post {
                    let forged = try await signedIn.request(method, "/" + path, form: [("csrf_token", String(repeating: "0", count: 64))])
                    #expect(forged.status == .forbidden && forged.text.contains("This form has expired"), "\(route)")
                }
            }
        }
    }

    @Test("Sign-in starts a session the pages need; 30 idle minutes end it", arguments: TestEngine.available)
    func sessions(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            var visitor = DashboardVisitor(app)
            let anonymous = try await visitor.request(.get, "/dashboard/projects")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/dashboard/sign-in")
            let root = try await visitor.request(.get, "/dashboard")
            #expect(root.status == .seeOther && root.headers[.location] == "/dashboard/sign-in")
            #expect(root.headers[.contentSecurityPolicy]?.hasPrefix("default-src 'none'") == true)

            let signedIn = try await visitor.signIn(app.adminKey)
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/dashboard/projects")
            #expect(visitor.cookies["keysmith_session"]?.count == 64)
            #expect(try await visitor.request(.get, "/dashboard").headers[.location] == "/dashboard/projects")
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

    @Test("A sign-in cookie that is not one of ours is replaced, never echoed")
    func foreignSignInCookie() async throws {
        try await Harness.run(.sqlite) { app in
            var visitor = DashboardVisitor(app)
            visitor.cookies["keysmith_sign_in"] = "\"><script>x</script>"
            let page = try await visitor.request(.get, "/dashboard/sign-in")
            #expect(page.status == .ok && !page.text.contains("<script>x"))
            let token = try #require(DashboardVisitor.token(page))
            #expect(visitor.cookies["keysmith_sign_in"] == token)
            let signedIn = try await visitor.request(.post, "/dashboard/sign-in", form: [("csrf_token", token), ("admin_key", app.adminKey)])
            #expect(signedIn.status == .seeOther && signedIn.headers[.location] == "/dashboard/projects")
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
            let described: HTTPFields = [.init("X-Original-Method")!: "POST", .init("X-Original-URI")!: "/v1/chat/completions"]
            #expect(try await app.check(String(plaintext), headers: described).status == .ok)

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

    @Test("Every other form: rotate, service accounts, members, people, invites, admin keys, rename, archive", arguments: TestEngine.available)
    func everyForm(engine: TestEngine) async throws {
        try await Harness.run(engine) { app in
            let projectID = try await app.project("Gateway")
            let userID = try await app.member(of: projectID, email: "ada@example.com")
            let key = try await app.userKey(projectID: projectID, userID: userID, name: "laptop")
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let project = "/dashboard/projects/\(projectID)"

            // Rotation behind a confirmation that names the key, with a grace period: both secrets verify for now.
            let confirm = try await visitor.request(.get, "\(project)/keys/\(key.id)/rotate")
            #expect(confirm.text.contains("Rotate the key “laptop”?") && confirm.text.contains("grace_period_seconds"))
            let rotated = try await visitor.post("\(project)/keys/\(key.id)/rotate", [("grace_period_seconds", "3600")], from: project)
            let secret = try #require(rotated.text.firstMatch(of: /value="(sk-proj-[A-Za-z0-9]+)"/)?.1)
            #expect(secret != key.value && rotated.text.contains("The old secret stops working in 60 minutes."))
            #expect(try await app.check(String(secret)).status == .ok)
            #expect(try await app.check(key.value).status == .ok)

            // A service account, its key shown once; then deleted, and its key stops.
            let created = try await visitor.post("\(project)/service-accounts", [("name", "bot")], from: "\(project)/service-accounts")
            let botKey = try #require(created.text.firstMatch(of: /value="(sk-svcacct-[A-Za-z0-9]+)"/)?.1)
            #expect(try await app.check(String(botKey)).status == .ok)
            let accountID = try #require(try await app.get("/projects/\(projectID)/service_accounts").data.first?["id"] as? String)
            let deleted = try await visitor.post("\(project)/service-accounts/\(accountID)/delete", [], from: "\(project)/service-accounts")
            #expect(deleted.status == .seeOther)
            #expect(try await app.check(String(botKey)).status == .unauthorized)

            // Members: change a role, remove one (their keys stop).
            #expect(try await visitor.post("\(project)/members/\(userID)/role", [("role", "owner")], from: "\(project)/members").status == .seeOther)
            #expect(try await app.get("/projects/\(projectID)/users/\(userID)")["role"] as? String == "owner")
            #expect(try await visitor.post("\(project)/members/\(userID)/remove", [], from: "\(project)/members").status == .seeOther)
            #expect(try await app.check(String(secret)).status == .unauthorized)

            // People: an invite, then revoked.
            #expect(
                try await visitor.post("/dashboard/people/invites", [("email", "lin@example.com"), ("role", "reader")], from: "/dashboard/people")
                    .status == .seeOther
            )
            let inviteID = try #require(try await app.get("/invites").data.first?["id"] as? String)
            let people = try await visitor.request(.get, "/dashboard/people")
            #expect(people.text.contains("lin@example.com") && people.text.contains("pending"))
            #expect(try await visitor.post("/dashboard/people/invites/\(inviteID)/revoke", [], from: "/dashboard/people").status == .seeOther)
            #expect(try await app.get("/invites").data.isEmpty)

            // Admin keys: one made (shown once) and deleted.
            let admin = try await visitor.post("/dashboard/admin-keys", [("name", "ops"), ("expires_in_seconds", "")], from: "/dashboard/admin-keys")
            let adminKey = try #require(admin.text.firstMatch(of: /value="(sk-admin-[A-Za-z0-9]+)"/)?.1)
            let adminID = try #require(try await app.get("/admin_api_keys").data.last?["id"] as? String)
            #expect(try await app.get("/projects", key: String(adminKey)).status == .ok)
            #expect(try await visitor.post("/dashboard/admin-keys/\(adminID)/delete", [], from: "/dashboard/admin-keys").status == .seeOther)
            #expect(try await app.get("/projects", key: String(adminKey)).status == .unauthorized)

            // Rename, then archive: every key of the project stops.
            #expect(try await visitor.post("\(project)/rename", [("name", "Renamed")], from: "\(project)/settings").status == .seeOther)
            #expect(try await visitor.post("\(project)/archive", [], from: "\(project)/settings").status == .seeOther)
            let archived = try await app.get("/projects/\(projectID)")
            #expect(archived["name"] as? String == "Renamed" && archived["status"] as? String == "archived")

            // The audit log page shows the changes, filtered by type.
            let log = try await visitor.request(.get, "/dashboard/audit-log?type=project.archived")
            #expect(log.text.contains("<code>project.archived</code>") && !log.text.contains("<code>api_key.created</code>"))
            let everything = try await visitor.request(.get, "/dashboard/audit-log")
            #expect(everything.text.contains("<code>invite.deleted</code>") && everything.text.contains("<code>service_account.deleted</code>"))
        }
    }

    @Test("Unknown pages and ids are pages that say so, not JSON")
    func notFound() async throws {
        try await Harness.run(.sqlite) { app in
            var visitor = DashboardVisitor(app)
            _ = try await visitor.signIn(app.adminKey)
            let unknownID = try await visitor.request(.get, "/dashboard/projects/proj_missing")
            #expect(unknownID.status == .notFound && unknownID.text.contains("No such project: proj_missing"))
            #expect(unknownID.headers[.contentType] == "text/html; charset=utf-8")
            let unknownPage = try await visitor.request(.get, "/dashboard/nowhere")
            #expect(unknownPage.status == .notFound && unknownPage.text.contains("There is no dashboard page at /dashboard/nowhere."))
        }
    }
}
