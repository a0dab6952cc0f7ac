import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import KeysmithClient
import KeysmithCore
import KeysmithTestSupport
import NIOCore
import NIOPosix
import Testing

@Suite("KeysmithClient against a live server")
struct ClientTests {
    @Test("Projects: create, retrieve, modify, list a page and every page, archive", arguments: TestEngine.available)
    func projects(engine: TestEngine) async throws {
        try await LiveServer.run(engine) { server in
            let client = server.client
            let created = try await client.createProject(name: "Gateway", externalKeyID: "ext-1")
            #expect(created.id.hasPrefix("proj_"))
            #expect(created.name == "Gateway")
            #expect(created.status == .active)
            #expect(created.externalKeyID == "ext-1")
            #expect(created.archivedAt == nil)
            // Each object keeps the JSON it came from, fields the type does not model included.
            #expect(created.json["object"] == .string("organization.project"))
            #expect(created.json["archived_at"] == .null)
            #expect(try await client.retrieveProject(id: created.id) == created)

            let renamed = try await client.modifyProject(id: created.id, name: "Renamed")
            #expect(renamed.name == "Renamed" && renamed.externalKeyID == "ext-1")
            let cleared = try await client.modifyProject(id: created.id, externalKeyID: .some(nil))
            #expect(cleared.name == "Renamed" && cleared.externalKeyID == nil)

            var ids = [created.id]
            for index in 0..<4 { ids.append(try await client.createProject(name: "P\(index)").id) }
            let first = try await client.listProjects(limit: 2)
            #expect(first.data.map(\.id) == Array(ids[0..<2]) && first.hasMore)
            #expect(first.firstID == ids[0] && first.lastID == ids[1])
            let second = try await client.listProjects(limit: 2, after: first.lastID)
            #expect(second.data.map(\.id) == Array(ids[2..<4]) && second.hasMore)
            let last = try await client.listProjects(limit: 2, after: second.lastID)
            #expect(last.data.map(\.id) == [ids[4]] && !last.hasMore)
            #expect(try await client.projects(pageSize: 2).collect().map(\.id) == ids)

            let archived = try await client.archiveProject(id: ids[4])
            #expect(archived.status == .archived && archived.archivedAt != nil)
            #expect(try await client.projects().collect().map(\.id) == Array(ids[0..<4]))
            #expect(try await client.projects(includeArchived: true).collect().map(\.id) == ids)
        }
    }

    @Test("Users, project users and user keys: the whole life of a key", arguments: TestEngine.available)
    func keys(engine: TestEngine) async throws {
        try await LiveServer.run(engine) { server in
            let client = server.client
            let project = try await client.createProject(name: "Gateway")
            let user = try await client.createUser(email: "ada@example.com", name: "Ada", role: .reader)
            #expect(user.email == "ada@example.com" && user.name == "Ada" && user.role == .reader)
            #expect(try await client.retrieveUser(id: user.id) == user)
            #expect(try await client.modifyUser(id: user.id, role: .owner).role == .owner)
            #expect(try await client.users(emails: ["ada@example.com"]).collect().map(\.id) == [user.id])

            let member = try await client.addProjectUser(project: project.id, userID: user.id, role: .member)
            #expect(member.id == user.id && member.role == .member)
            #expect(try await client.modifyProjectUser(project: project.id, userID: user.id, role: .owner).role == .owner)
            #expect(try await client.retrieveProjectUser(project: project.id, userID: user.id).role == .owner)
            let grace = try await client.createUser(email: "grace@example.com")
            let byEmail = try await client.addProjectUser(project: project.id, email: "grace@example.com", role: .member)
            #expect(byEmail.id == grace.id)
            #expect(try await client.projectUsers(project: project.id, pageSize: 1).collect().map(\.id) == [user.id, grace.id])

            let issued = try await client.createAPIKey(
                project: project.id,
                userID: user.id,
                name: "ci",
                scopes: ["model.request"],
                expiresInSeconds: 3600
            )
            #expect(issued.value.hasPrefix("sk-proj-"))
            #expect(issued.key.name == "ci" && issued.key.scopes == ["model.request"])
            #expect(issued.key.expiresAt != nil && issued.previousSecretExpiresAt == nil)
            #expect(issued.key.ownerProjectAccess == .active)
            guard case .user(let owner) = issued.key.owner else {
                Issue.record("owner is not the user: \(issued.key.owner)")
                return
            }
            #expect(owner.id == user.id && owner.role == .owner && owner.email == "ada@example.com")
            // The plaintext is in the creation's JSON, not in the key's.
            #expect(issued.json["value"] == .string(issued.value))
            #expect(issued.key.json["value"] == nil && issued.key.json["object"] == .string("organization.project.api_key"))
            #expect(try await client.retrieveAPIKey(project: project.id, id: issued.key.id) == issued.key)

            let verified = try await client.verify(key: issued.value)
            #expect(verified.valid && verified.code == .valid)
            #expect(verified.key?.id == issued.key.id && verified.key?.projectID == project.id)

            let updated = try await client.updateAPIKey(project: project.id, id: issued.key.id, scopes: [])
            #expect(updated.scopes.isEmpty && updated.expiresAt == issued.key.expiresAt)

            let rotated = try await client.rotateAPIKey(project: project.id, id: issued.key.id, gracePeriodSeconds: 60)
            #expect(rotated.value != issued.value && rotated.key.id == issued.key.id)
            #expect(rotated.previousSecretExpiresAt != nil)
            #expect(try await client.verify(key: rotated.value).valid)

            for index in 0..<3 {
                _ = try await client.createAPIKey(project: project.id, userID: grace.id, name: "k\(index)")
            }
            let page = try await client.listAPIKeys(project: project.id, limit: 3)
            #expect(page.data.count == 3 && page.hasMore)
            #expect(page.data.allSatisfy { $0.json["id"] == .string($0.id) })
            #expect(try await client.apiKeys(project: project.id, pageSize: 3).collect().count == 4)

            // Grace leaves the project: her keys become inactive and stop verifying.
            let removed = try await client.removeProjectUser(project: project.id, userID: grace.id)
            #expect(removed.deleted && removed.id == grace.id && removed.object == "organization.project.user.deleted")
            #expect(try await client.apiKeys(project: project.id).collect().count == 1)
            let inactive = try await client.apiKeys(project: project.id, ownerProjectAccess: .inactive).collect()
            #expect(inactive.count == 3 && inactive.allSatisfy { $0.ownerProjectAccess == .inactive })
            if case .user(let owner) = inactive[0].owner {
                #expect(owner.role == nil)
            }

            let deleted = try await client.deleteAPIKey(project: project.id, id: issued.key.id)
            #expect(deleted.deleted && deleted.id == issued.key.id)
            let revoked = try await client.verify(key: rotated.value)
            #expect(!revoked.valid && revoked.code == .revoked && revoked.key == nil)
            #expect(try await client.verify(key: "sk-proj-nonsense").code == .malformed)

            #expect(try await client.deleteUser(id: grace.id).deleted)
        }
    }

    @Test("Service accounts: with and without a key, another key, update, delete", arguments: TestEngine.available)
    func serviceAccounts(engine: TestEngine) async throws {
        try await LiveServer.run(engine) { server in
            let client = server.client
            let project = try await client.createProject(name: "Gateway")
            let created = try await client.createServiceAccount(project: project.id, name: "bot")
            #expect(created.account.name == "bot" && created.account.role == .member)
            let firstKey = try #require(created.apiKey)
            #expect(firstKey.value.hasPrefix("sk-svcacct-"))
            let bare = try await client.createServiceAccount(project: project.id, name: "bare", withoutKey: true)
            #expect(bare.apiKey == nil && bare.account.role == ServiceAccountRole.none)

            let another = try await client.createServiceAccountKey(
                project: project.id,
                serviceAccount: created.account.id,
                name: "second",
                scopes: ["model.request"]
            )
            #expect(another.name == "second" && another.scopes == ["model.request"])
            let keys = try await client.apiKeys(project: project.id).collect()
            #expect(Set(keys.map(\.id)) == [firstKey.id, another.id])
            #expect(keys.allSatisfy { $0.owner.type == .serviceAccount && $0.owner.id == created.account.id })

            #expect(try await client.retrieveServiceAccount(project: project.id, id: created.account.id) == created.account)
            let updated = try await client.updateServiceAccount(project: project.id, id: created.account.id, name: "robot", role: .owner)
            #expect(updated.name == "robot" && updated.role == .owner)
            #expect(try await client.serviceAccounts(project: project.id, pageSize: 1).collect().map(\.id) == [created.account.id, bare.account.id])
            #expect(try await client.listServiceAccounts(project: project.id, limit: 1).hasMore)

            #expect(try await client.deleteServiceAccount(project: project.id, id: created.account.id).deleted)
            #expect(try await client.verify(key: firstKey.value).code == .revoked)
        }
    }

    @Test("Invites, admin keys and the audit log", arguments: TestEngine.available)
    func organization(engine: TestEngine) async throws {
        try await LiveServer.run(engine) { server in
            let client = server.client
            let project = try await client.createProject(name: "Gateway")
            let invite = try await client.createInvite(
                email: "lin@example.com",
                role: .reader,
                projects: [Invite.ProjectGrant(id: project.id, role: .owner)]
            )
            #expect(invite.status == .pending && invite.acceptedAt == nil)
            #expect(invite.projects == [Invite.ProjectGrant(id: project.id, role: .owner)])
            #expect(try await client.retrieveInvite(id: invite.id) == invite)
            let other = try await client.createInvite(email: "max@example.com", role: .owner, projects: [])
            #expect(try await client.invites(pageSize: 1).collect().map(\.id) == [invite.id, other.id])
            #expect(try await client.listInvites(limit: 1).hasMore)

            let joined = try await client.acceptInvite(id: invite.id, name: "Lin")
            #expect(joined.email == "lin@example.com" && joined.name == "Lin" && joined.role == .reader)
            #expect(try await client.retrieveInvite(id: invite.id).status == .accepted)
            #expect(try await client.retrieveProjectUser(project: project.id, userID: joined.id).role == .owner)
            #expect(try await client.deleteInvite(id: other.id).deleted)

            let admin = try await client.createAdminKey(name: "ops", expiresInSeconds: 86_400)
            #expect(admin.value.hasPrefix("sk-admin-") && admin.key.name == "ops" && admin.key.expiresAt != nil)
            #expect(try await client.retrieveAdminKey(id: admin.key.id) == admin.key)
            let adminKeys = try await client.adminKeys(pageSize: 1).collect()
            #expect(adminKeys.count == 2 && adminKeys.last?.id == admin.key.id)
            #expect(try await client.listAdminKeys(limit: 1, descending: true).data.first?.id == admin.key.id)
            // The new key works on its own.
            let withNewKey = try AdminClient(baseURL: server.client.baseURL, adminKey: admin.value)
            #expect(try await withNewKey.retrieveProject(id: project.id) == project)
            #expect(try await client.deleteAdminKey(id: admin.key.id).deleted)

            let entries = try await client.auditLogs().collect()
            #expect(entries.first?.type == .adminKeyDeleted)
            #expect(entries.contains { $0.type == .projectCreated && $0.project?.id == project.id })
            let sent = try await client.auditLogs(.init(eventTypes: [.inviteSent])).collect()
            #expect(sent.count == 2)
            #expect(sent.allSatisfy { $0.actor["type"]?.stringValue == "api_key" })
            #expect(sent.compactMap { $0.details["id"]?.stringValue } == [other.id, invite.id])
            let paged = try await client.auditLogs(pageSize: 2).collect()
            #expect(paged.map(\.id) == entries.map(\.id))
            #expect(try await client.listAuditLogs(.init(since: Int(Date().timeIntervalSince1970) + 3600)).data.isEmpty)
        }
    }

    @Test("An error answer is one typed error with status, type, code, param and message", arguments: TestEngine.available)
    func apiErrors(engine: TestEngine) async throws {
        try await LiveServer.run(engine) { server in
            let client = server.client
            let notFound = await apiError { try await client.retrieveProject(id: "proj_missing") }
            #expect(notFound?.status == 404 && notFound?.type == "invalid_request_error")
            #expect(notFound?.message.contains("proj_missing") == true)

            let badLimit = await apiError { try await client.listProjects(limit: 101) }
            #expect(badLimit?.status == 400 && badLimit?.param == "limit")

            let lastAdminKey = try await client.listAdminKeys().data[0]
            let last = await apiError { try await client.deleteAdminKey(id: lastAdminKey.id) }
            #expect(last?.status == 400 && last?.code == "last_admin_key" && last?.param == "key_id")

            let project = try await client.createProject(name: "P")
            _ = try await client.archiveProject(id: project.id)
            let archived = await apiError { try await client.createServiceAccount(project: project.id, name: "bot") }
            #expect(archived?.code == "project_archived")

            // Ids travel percent-encoded: a slash cannot reach another route.
            let slash = await apiError { try await client.retrieveProject(id: "../users") }
            #expect(slash?.status == 404)

            let wrongKey = try AdminClient(baseURL: client.baseURL, adminKey: "sk-admin-not-a-key")
            let unauthorized = await apiError { try await wrongKey.listProjects() }
            #expect(unauthorized?.status == 401 && unauthorized?.code == "invalid_api_key")
        }
    }

    @Test("A server that is not there is a connection error naming the URL")
    func connectionRefused() async throws {
        // A port that was free a moment ago: bind, read the port, close.
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()

        // The shared HTTP client retries refused connections until the call's timeout; one that does not retry
        // (as the CLI's) fails at once.
        var retrying = try AdminClient(baseURL: "http://127.0.0.1:\(port)/v1/", adminKey: "sk-admin-x")
        retrying.timeout = .seconds(1)
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        let httpClient = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        let immediate = try AdminClient(baseURL: "http://127.0.0.1:\(port)", adminKey: "sk-admin-x", httpClient: httpClient)
        #expect(retrying.baseURL == "http://127.0.0.1:\(port)")

        for client in [retrying, immediate] {
            let started = ContinuousClock.now
            do {
                _ = try await client.listProjects()
                Issue.record("expected a connection error")
            } catch {
                guard case .connection(let url, _) = error else {
                    Issue.record("expected a connection error, got \(error)")
                    continue
                }
                #expect(url == "http://127.0.0.1:\(port)")
                #expect(error.description.contains("cannot connect to Keysmith at http://127.0.0.1:\(port)"))
            }
            #expect(ContinuousClock.now - started < .seconds(5))
        }
        try await httpClient.shutdown()
    }

    @Test("A slow server is a connection error after the timeout; a foreign answer is an invalid response")
    func timeoutAndForeignAnswers() async throws {
        let router = Router()
        router.get("/v1/organization/projects") { _, _ -> Response in
            try await Task.sleep(for: .seconds(5))
            return Response(status: .ok)
        }
        router.get("/v1/organization/users") { _, _ in
            Response(status: .badGateway, headers: [.contentType: "text/html"], body: .init(byteBuffer: ByteBuffer(string: "<h1>502</h1>")))
        }
        router.get("/v1/organization/invites") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"object":"list"}"#)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { testClient in
            let port = try #require(testClient.port)
            let client = try AdminClient(baseURL: "http://127.0.0.1:\(port)", adminKey: "sk-admin-x")
            var impatient = client
            impatient.timeout = .milliseconds(300)
            let started = ContinuousClock.now
            do {
                _ = try await impatient.listProjects()
                Issue.record("expected a timeout")
            } catch {
                guard case .connection? = error as? KeysmithClientError else {
                    Issue.record("expected a connection error, got \(error)")
                    return
                }
            }
            #expect(ContinuousClock.now - started < .seconds(4))

            do {
                _ = try await client.listUsers()
                Issue.record("expected an invalid response")
            } catch {
                guard case .invalidResponse(let status, let reason)? = error as? KeysmithClientError else {
                    Issue.record("expected an invalid response, got \(error)")
                    return
                }
                #expect(status == 502 && reason.contains("<h1>502</h1>"))
            }

            do {
                _ = try await client.listInvites()
                Issue.record("expected an invalid response")
            } catch {
                guard case .invalidResponse(let status, _)? = error as? KeysmithClientError else {
                    Issue.record("expected an invalid response, got \(error)")
                    return
                }
                #expect(status == 200)
            }
        }
    }

    @Test("A base URL that is not http(s)://host is refused before any request")
    func invalidBaseURL() {
        for url in ["ftp://example.com", "127.0.0.1:8080", "http://", "http://host:8080?x=1", ""] {
            #expect(throws: KeysmithClientError.self, "\(url)") { try AdminClient(baseURL: url, adminKey: "k") }
        }
        #expect((try? AdminClient(baseURL: "https://keys.example.com/v1", adminKey: "k"))?.baseURL == "https://keys.example.com")
    }
}
