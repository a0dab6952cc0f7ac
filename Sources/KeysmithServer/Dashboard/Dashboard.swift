import Foundation
import HTTPTypes
import Hummingbird
import KeysmithCore
import KeysmithDomain
import Logging
import Mustache
import NIOCore

/// The web dashboard at `/dashboard`: server-rendered pages and ordinary forms over the same domain operations as
/// the API (``Keysmith``, acting as the signed-in admin key), so the audit log, the verification index and the
/// other replicas see its changes exactly as they see the API's.
///
/// Sign-in takes an admin key and starts a server-side session (``DashboardSessions``); the key never goes back to
/// the browser. Every state-changing form carries the session's CSRF token; every response carries a strict
/// Content-Security-Policy and is never cached.
struct Dashboard: Sendable {
    let keysmith: Keysmith
    let index: VerificationIndex
    let authenticator: AdminAuthenticator
    let usage: UsageRecorder
    let sessions: DashboardSessions
    let limiter: SignInLimiter
    let templates: MustacheLibrary
    /// Whether the server itself speaks TLS; behind a proxy, `X-Forwarded-Proto: https` says the same.
    let servesTLS: Bool

    static let sessionCookie = "keysmith_session"
    static let signInCookie = "keysmith_sign_in"
    static let maximumFormSize = 64 * 1024
    /// The sign-in form is read before anyone is known: an admin key and a token fit in far less.
    static let maximumSignInFormSize = 4 * 1024

    init(
        keysmith: Keysmith,
        index: VerificationIndex,
        authenticator: AdminAuthenticator,
        usage: UsageRecorder,
        sessionIdleTimeout: Int,
        servesTLS: Bool
    ) throws {
        self.keysmith = keysmith
        self.index = index
        self.authenticator = authenticator
        self.usage = usage
        self.sessions = DashboardSessions(idleTimeout: sessionIdleTimeout, clock: keysmith.clock)
        self.limiter = SignInLimiter(clock: keysmith.clock)
        self.templates = try DashboardAssets.templates()
        self.servesTLS = servesTLS
    }

    func register(on router: Router<KeysmithRequestContext>) {
        let group = router.group("dashboard").add(middleware: DashboardHeaders())
        group.get { request, _ in
            Self.redirect(self.activeSession(request) == nil ? "/dashboard/sign-in" : "/dashboard/projects")
        }
        group.get("assets/style.css") { _, _ in DashboardAssets.stylesheet }
        group.get("assets/dashboard.js") { _, _ in DashboardAssets.script }
        group.get("sign-in") { request, context in try await self.guarded(context) { try self.signInPage(request) } }
        group.post("sign-in") { request, context in try await self.guarded(context) { try await self.signIn(request, context) } }
        // Everything else is behind sign-in: the pages' own group, whose middleware finds the session (or redirects
        // to the sign-in page) and checks every form's CSRF token before any handler runs, and whose handlers take a
        // context that holds both. A page cannot be added anywhere else by mistake: its handler would not fit.
        let pages = group.group()
            .add(middleware: DashboardSessionMiddleware(dashboard: self))
            .group(context: DashboardRequestContext.self)
        pages.post("sign-out") { request, context in self.signOut(request, context.session) }
        self.registerPages(on: pages)
        // Anything else under /dashboard is a page that does not exist, said in HTML.
        group.get("**") { request, _ in
            self.errorPage(
                .notFound,
                heading: "Not found",
                message: "There is no dashboard page at \(request.uri.path).",
                session: self.activeSession(request)
            )
        }
    }

    // MARK: Sessions and forms

    func sessionToken(_ request: Request) -> String? {
        request.cookies[Self.sessionCookie]?.value
    }

    /// A signed-in request's session, after checking that its admin key still exists and has not expired.
    func activeSession(_ request: Request) -> DashboardSession? {
        guard let token = self.sessionToken(request), let session = self.sessions.resume(token) else { return nil }
        guard let key = self.index.adminKey(id: session.adminKeyID),
            key.expiresAt.map({ $0 > self.keysmith.clock.now() }) ?? true
        else {
            self.sessions.end(token)
            return nil
        }
        self.usage.recordAdminKeyUse(key.id)
        return session
    }

    typealias PageHandler = @Sendable (Request, DashboardRequestContext, DashboardSession, DashboardForm) async throws -> DashboardReply

    /// A page's handler, given the session and the form its middleware found; what it answers is rendered here, in
    /// the layout, with the session's CSRF token.
    func page(_ handler: @escaping PageHandler) -> @Sendable (Request, DashboardRequestContext) async throws -> Response {
        { request, context in
            switch try await handler(request, context, context.session, context.form) {
            case .view(let view):
                self.render(view.template, view.values, session: context.session, section: view.section, status: view.status, notice: view.notice)
            case .redirect(let location):
                Self.redirect(location)
            }
        }
    }

    /// Turns what a handler throws into a page: domain and request errors with their status and message, anything
    /// else a logged 500.
    func guarded(
        _ context: some RequestContext,
        session: DashboardSession? = nil,
        _ body: () async throws -> Response
    ) async throws -> Response {
        do {
            return try await body()
        } catch {
            let rendered = DashboardError(error)
            if rendered.status == .internalServerError {
                context.logger.error("Unexpected error in the dashboard", metadata: ["error": "\(String(reflecting: error))"])
            }
            return self.errorPage(rendered.status, heading: rendered.heading, message: rendered.message, session: session)
        }
    }

    // MARK: Rendering

    /// Renders `template` inside the layout, with what every page needs (the CSRF token, which section is current).
    func render(
        _ template: String,
        _ values: [String: Any],
        session: DashboardSession?,
        section: String? = nil,
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) -> Response {
        var context = values
        if let session {
            context["signedIn"] = true
            context["csrf"] = session.csrfToken
        }
        if let section { context[section] = true }
        if let notice { context["notice"] = notice }
        let html = self.templates.render(context, withTemplate: template) ?? ""
        return Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }

    func errorPage(_ status: HTTPResponse.Status, heading: String, message: String, session: DashboardSession?) -> Response {
        self.render(
            "error",
            [
                "heading": heading, "message": message, "back": session == nil ? "/dashboard" : "/dashboard/projects",
                "backLabel": session == nil ? "Go to the dashboard" : "Back to the projects",
            ],
            session: session,
            status: status
        )
    }

    /// Runs a form's change; when the API refuses it, answers `refused` (the form's page again, the refusal beside
    /// the form). Anything else goes on to ``guarded(_:session:_:)``'s error page.
    func submitting(
        _ change: () async throws -> DashboardReply,
        refused: (OpenAIError) async throws -> DashboardReply
    ) async throws -> DashboardReply {
        do {
            return try await change()
        } catch {
            guard let refusal = DashboardError.refusal(error) else { throw error }
            return try await refused(refusal)
        }
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    // MARK: Sign-in and sign-out

    /// The sign-in form, with a token that the sign-in POST must echo from a cookie only this site can set.
    func signInPage(_ request: Request, error: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        // The browser's own token again when it has one of ours (so that two tabs agree), else a new one; a value
        // that is not one of ours is never echoed into a header or the page.
        let token =
            request.cookies[Self.signInCookie].map(\.value).flatMap { DashboardSessions.isToken($0) ? $0 : nil }
            ?? DashboardSessions.randomToken()
        var response = self.render("sign-in", ["signInToken": token, "error": error as Any], session: nil, status: status)
        response.setCookie(self.cookie(Self.signInCookie, token, request, maxAge: 3600))
        return response
    }

    /// Signs in with an admin key. Failures are limited per client address (``SignInLimiter``); a valid key always
    /// signs in, so that someone sending bad keys from the address a proxy gives everyone cannot lock real admins
    /// out. (A key is one HMAC and a lookup in memory to check, and 256 random bits to guess.)
    func signIn(_ request: Request, _ context: KeysmithRequestContext) async throws -> Response {
        let form = try await DashboardForm.parse(request, upTo: Self.maximumSignInFormSize)
        guard let expected = request.cookies[Self.signInCookie]?.value, let sent = form["csrf_token"], constantTimeEquals(expected, sent)
        else {
            return try self.signInPage(request, error: "The sign-in form expired. Enter the key again.", status: .forbidden)
        }
        let address = context.clientAddress
        let key = (form["admin_key"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let principal: AdminPrincipal
        do {
            guard !key.isEmpty else { throw OpenAIError.missingKey }
            principal = try self.authenticator.authenticate(token: key[...])
        } catch {
            if let wait = self.limiter.retryAfter(address) {
                let minutes = (wait + 59) / 60
                var response = try self.signInPage(
                    request,
                    error: "Too many failed sign-ins from your address. Try again in \(minutes) minute\(minutes == 1 ? "" : "s").",
                    status: .tooManyRequests
                )
                response.headers[.retryAfter] = String(wait)
                return response
            }
            self.limiter.recordFailure(address)
            let reason = (error as? OpenAIError)?.code == "api_key_expired" ? "That admin key has expired." : "That is not a valid admin key."
            return try self.signInPage(request, error: reason, status: .unauthorized)
        }
        let session = self.sessions.start(organizationID: principal.organizationID, adminKeyID: principal.keyID)
        context.logger.info("Dashboard sign-in", metadata: ["admin_key_id": "\(principal.keyID)", "client": "\(address)"])
        var response = Self.redirect("/dashboard/projects")
        response.setCookie(self.cookie(Self.sessionCookie, session.token, request, maxAge: nil))
        response.setCookie(self.cookie(Self.signInCookie, "", request, maxAge: 0))
        return response
    }

    func signOut(_ request: Request, _ session: DashboardSession) -> Response {
        self.sessions.end(session.token)
        var response = Self.redirect("/dashboard/sign-in")
        response.setCookie(self.cookie(Self.sessionCookie, "", request, maxAge: 0))
        return response
    }

    /// `HttpOnly`, `SameSite=Strict`, scoped to `/dashboard`, and `Secure` over TLS (or behind a proxy that says
    /// the client used HTTPS). A session cookie has no lifetime of its own: the server ends the session.
    func cookie(_ name: String, _ value: String, _ request: Request, maxAge: Int?) -> Cookie {
        let secure = self.servesTLS || request.headers[.forwardedProto]?.lowercased() == "https"
        return Cookie(name: name, value: value, maxAge: maxAge, path: "/dashboard", secure: secure, httpOnly: true, sameSite: .strict)
    }
}

/// A signed-in request's session and form, found by ``DashboardSessionMiddleware``.
final class DashboardPage: Sendable {
    let session: DashboardSession
    let form: DashboardForm

    init(session: DashboardSession, form: DashboardForm) {
        self.session = session
        self.form = form
    }
}

/// The context of a dashboard page: the session is there, not optional, so no page can be served without one.
struct DashboardRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let session: DashboardSession
    let form: DashboardForm

    init(context: KeysmithRequestContext) throws {
        guard let page = context.dashboardPage else {
            // A page's group always runs behind DashboardSessionMiddleware: this is a wiring bug.
            preconditionFailure("a dashboard page was registered without DashboardSessionMiddleware")
        }
        self.coreContext = context.coreContext
        self.session = page.session
        self.form = page.form
    }
}

/// Sign-in as middleware on the pages' group: without a live session, the sign-in page (a redirect); with one, a
/// POST whose CSRF token is not the session's is refused before any handler runs, and what a handler throws becomes
/// an error page.
struct DashboardSessionMiddleware: RouterMiddleware {
    typealias Context = KeysmithRequestContext

    let dashboard: Dashboard

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let session = self.dashboard.activeSession(request) else {
            return Dashboard.redirect("/dashboard/sign-in")
        }
        return try await self.dashboard.guarded(context, session: session) {
            let form: DashboardForm
            if request.method == .post {
                form = try await DashboardForm.parse(request)
                guard let token = form["csrf_token"], constantTimeEquals(token, session.csrfToken) else {
                    return self.dashboard.errorPage(
                        .forbidden,
                        heading: "This form has expired",
                        message:
                            "The form was not sent from this session's page (or the session changed since). Go back, reload the page and try again.",
                        session: session
                    )
                }
            } else {
                form = try DashboardForm(query: request.uri.query)
            }
            var context = context
            context.dashboardPage = DashboardPage(session: session, form: form)
            return try await next(request, context)
        }
    }
}

/// What a dashboard form or query string carries, as text fields.
struct DashboardForm: Sendable {
    private let values: [String: String]

    init(query: String?) throws {
        self.values = try QueryParameters(query).lastValues
    }

    init() {
        self.values = [:]
    }

    /// An `application/x-www-form-urlencoded` body of at most `limit` bytes (64 KiB unless given).
    static func parse(_ request: Request, upTo limit: Int = Dashboard.maximumFormSize) async throws -> DashboardForm {
        let buffer = try await request.body.collect(upTo: limit)
        return try DashboardForm(query: String(buffer: buffer))
    }

    /// A field's value; nil when absent.
    subscript(_ name: String) -> String? { self.values[name] }

    /// A field's value, trimmed; nil when absent or empty.
    func text(_ name: String) -> String? {
        guard let value = self.values[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else { return nil }
        return value
    }

    /// The fields as the API's JSON body would carry them, so that the API's own validation (lengths, control
    /// characters, emails, scopes, ranges) checks them, with its own messages: empty fields are left out,
    /// `integers` are numbers when they parse as one, `lists` are comma-separated arrays.
    func body(integers: Set<String> = [], lists: Set<String> = []) -> JSONBody {
        var fields: [String: JSONValue] = [:]
        for (name, value) in self.values where name != "csrf_token" {
            let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
            if lists.contains(name) {
                fields[name] = .array(
                    trimmed.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) }.filter {
                        if case .string(let text) = $0 { return !text.isEmpty } else { return true }
                    }
                )
            } else if trimmed.isEmpty {
                continue
            } else if integers.contains(name) {
                fields[name] = Int(trimmed).map(JSONValue.integer) ?? .string(trimmed)
            } else {
                fields[name] = .string(trimmed)
            }
        }
        return JSONBody(fields: fields)
    }
}

/// Headers on every dashboard response: nothing inline may run, nothing may frame it, no referrer leaves it, and no
/// page (which may hold a key shown once) is kept in a cache.
struct DashboardHeaders: RouterMiddleware {
    typealias Context = KeysmithRequestContext

    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.xContentTypeOptions] = "nosniff"
        if response.headers[.cacheControl] == nil {
            response.headers[.cacheControl] = "no-store"
        }
        return response
    }
}

/// An error as a page shows it: a status, a heading and the API's own message.
struct DashboardError {
    var status: HTTPResponse.Status
    var heading: String
    var message: String

    init(_ error: any Error) {
        guard let rendered = OpenAIError(error) else {
            self.status = .internalServerError
            self.heading = "Something went wrong"
            self.message = "The server had an error while processing your request. It has been logged."
            return
        }
        self.status = rendered.status
        self.message = rendered.message
        switch rendered.status {
        case .notFound: self.heading = "Not found"
        case .serviceUnavailable: self.heading = "Unavailable"
        default: self.heading = "That did not work"
        }
    }

    /// The API's refusal of what a form asked for, as the API would answer it (its message names the field, its
    /// `param` is the field); nil for anything that is not a refusal (a bug, the database down).
    static func refusal(_ error: any Error) -> OpenAIError? {
        guard !OpenAIError.isDatabaseFailure(error) else { return nil }
        return OpenAIError(error)
    }
}

extension HTTPField.Name {
    static let forwardedProto = Self("X-Forwarded-Proto")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}

/// What a dashboard page answers: a page, or after a form that worked, where to go next (303, so that a reload does
/// not post the form again). Handlers return these values; ``Dashboard/page(_:)`` turns them into responses.
enum DashboardReply {
    case view(DashboardView)
    case redirect(String)
}

/// A page: its template, the values it shows, the navigation section it belongs to, its status and a notice.
struct DashboardView {
    var template: String
    var values: [String: Any]
    var section: String?
    var status: HTTPResponse.Status
    var notice: String?

    init(
        _ template: String,
        _ values: [String: Any],
        section: String? = nil,
        status: HTTPResponse.Status = .ok,
        notice: String? = nil
    ) {
        self.template = template
        self.values = values
        self.section = section
        self.status = status
        self.notice = notice
    }
}
