import ArgumentParser
import Foundation
import KeysmithClient
import KeysmithCore

// Remote commands on the organization: its users, invites and audit log, and key verification.

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, add, show, update and delete the organization's users.",
        subcommands: [List.self, Create.self, Show.self, Update.self, Delete.self]
    )

    static func show(_ user: KeysmithClient.User, _ output: Output) {
        output.object(
            user.json,
            [("id", user.id), ("email", user.email), ("name", user.name ?? ""), ("role", user.role.rawValue), ("added", output.time(user.addedAt))]
        )
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the organization's users, in the order they joined.")

        @Option(help: "Only the user with this email (repeatable).")
        var email: [String] = []

        @Flag(help: "List every user, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let (users, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listUsers(emails: self.email) },
                    every: client.users(emails: self.email)
                )
                output.list(users, json: \.json, columns: ["id", "email", "name", "role", "added"]) {
                    [$0.id, $0.email, $0.name ?? "", $0.role.rawValue, output.time($0.addedAt)]
                }
                output.more(more)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user to the organization directly (no invitation).")

        @Option(help: "Their email, unique in the organization.")
        var email: String

        @Option(help: "Their name.")
        var name: String?

        @Option(help: "Their organization role.")
        var role: OrganizationRole = .reader

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Users.show(try await client.createUser(email: self.email, name: self.name, role: self.role), output)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one user.")

        @Argument(help: ArgumentHelp("The user: an id or an email.", valueName: "user"))
        var user: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Users.show(try await client.retrieveUser(id: try await resolveUser(self.user, client)), output)
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's organization role.")

        @Argument(help: ArgumentHelp("The user: an id or an email.", valueName: "user"))
        var user: String

        @Option(help: "The new role; the last owner stays an owner.")
        var role: OrganizationRole

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Users.show(try await client.modifyUser(id: try await resolveUser(self.user, client), role: self.role), output)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user from the organization; their keys stop verifying.")

        @Argument(help: ArgumentHelp("The user: an id or an email.", valueName: "user"))
        var user: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let deleted = try await client.deleteUser(id: try await resolveUser(self.user, client))
                output.object(deleted.json, [("deleted", deleted.id)])
            }
        }
    }
}

/// `--project proj_…:owner`: a project an invitee joins, and their role there (member unless given).
struct ProjectGrantArgument: ExpressibleByArgument {
    var grant: KeysmithClient.Invite.ProjectGrant

    init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        guard let id = parts.first, !id.isEmpty else { return nil }
        let role = parts.count == 2 ? ProjectRole(rawValue: parts[1]) : .member
        guard let role else { return nil }
        self.grant = .init(id: id, role: role)
    }
}

struct Invites: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, create, show, delete and accept invitations to the organization.",
        subcommands: [List.self, Create.self, Show.self, Delete.self, Accept.self]
    )

    static func show(_ invite: KeysmithClient.Invite, _ output: Output) {
        let projects = invite.projects.map { "\($0.id) (\($0.role.rawValue))" }.joined(separator: ", ")
        output.object(
            invite.json,
            [
                ("id", invite.id), ("email", invite.email), ("role", invite.role.rawValue), ("status", invite.status.rawValue),
                ("projects", projects.isEmpty ? "none" : projects), ("created", output.time(invite.createdAt)),
                ("expires", output.time(invite.expiresAt)),
            ]
        )
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the organization's invites, oldest first.")

        @Flag(help: "List every invite, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let (invites, more) = try await fetch(all: self.all, page: { try await client.listInvites() }, every: client.invites())
                output.list(invites, json: \.json, columns: ["id", "email", "role", "status", "expires"]) {
                    [$0.id, $0.email, $0.role.rawValue, $0.status.rawValue, output.time($0.expiresAt)]
                }
                output.more(more)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Invite a person; accept it for them with `keysmith invites accept` (Keysmith sends no email)."
        )

        @Option(help: "Their email.")
        var email: String

        @Option(help: "Their organization role.")
        var role: OrganizationRole = .reader

        @Option(
            help: ArgumentHelp(
                "A project they join, as ID or ID:ROLE (repeatable); without it they join the default project.",
                valueName: "project"
            )
        )
        var project: [ProjectGrantArgument] = []

        @Flag(name: .customLong("no-project"), help: "They join no project.")
        var noProject = false

        @OptionGroup var remote: RemoteOptions

        func validate() throws {
            if self.noProject, !self.project.isEmpty {
                throw ValidationError("give --project or --no-project, not both")
            }
        }

        func run() async throws {
            try await self.remote.run { client, output in
                let projects: [KeysmithClient.Invite.ProjectGrant]? = self.noProject ? [] : (self.project.isEmpty ? nil : self.project.map(\.grant))
                Invites.show(try await client.createInvite(email: self.email, role: self.role, projects: projects), output)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one invite.")

        @Argument(help: ArgumentHelp("The invite's id.", valueName: "invite-id"))
        var id: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Invites.show(try await client.retrieveInvite(id: self.id), output)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a pending or expired invite.")

        @Argument(help: ArgumentHelp("The invite's id.", valueName: "invite-id"))
        var id: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let deleted = try await client.deleteInvite(id: self.id)
                output.object(deleted.json, [("deleted", deleted.id)])
            }
        }
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Accept a pending invite for the invitee: they become a user, in the invite's projects."
        )

        @Argument(help: ArgumentHelp("The invite's id.", valueName: "invite-id"))
        var id: String

        @Option(help: "The new user's name.")
        var name: String?

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Users.show(try await client.acceptInvite(id: self.id, name: self.name), output)
            }
        }
    }
}

extension AdminKeys {
    static func fields(_ key: AdminAPIKey, _ output: Output) -> [(String, String)] {
        [
            ("id", key.id), ("name", key.name), ("redacted", key.redactedValue), ("created", output.time(key.createdAt)),
            ("last used", output.time(key.lastUsedAt)), ("expires", output.time(key.expiresAt)),
        ]
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the organization's admin keys, oldest first.")

        @Flag(help: "List every admin key, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let (keys, more) = try await fetch(all: self.all, page: { try await client.listAdminKeys() }, every: client.adminKeys())
                output.list(keys, json: \.json, columns: ["id", "name", "key", "last used", "expires", "created"]) {
                    [
                        $0.id, $0.name, KeySecret.shortened(redacted: $0.redactedValue), output.time($0.lastUsedAt), output.time($0.expiresAt),
                        output.time($0.createdAt),
                    ]
                }
                output.more(more)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete an admin key; it stops working at once. The organization keeps at least one."
        )

        @Argument(help: ArgumentHelp("The admin key's id.", valueName: "key-id"))
        var id: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let deleted = try await client.deleteAdminKey(id: self.id)
                output.object(deleted.json, [("deleted", deleted.id)])
            }
        }
    }
}

struct AuditLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-logs",
        abstract: "Read the audit log: who changed what, and when.",
        subcommands: [List.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit log entries, newest first.")

        @Option(help: ArgumentHelp("Only events of this type, such as api_key.created (repeatable).", valueName: "type"))
        var type: [AuditEventType] = []

        @Option(help: ArgumentHelp("Only events in the last DURATION: 1h, 7d.", valueName: "duration"))
        var since: DurationArgument?

        @Option(help: ArgumentHelp("Only events in this project (repeatable).", valueName: "project-id"))
        var project: [String] = []

        @Flag(help: "List every matching entry, not only the newest 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            let now = Int(Date().timeIntervalSince1970)
            let filter = AdminClient.AuditLogFilter(eventTypes: self.type, since: self.since.map { now - $0.seconds }, projectIDs: self.project)
            try await self.remote.run { client, output in
                let (entries, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listAuditLogs(filter) },
                    every: client.auditLogs(filter)
                )
                output.list(entries, json: \.json, columns: ["when", "type", "actor", "resource", "project"]) {
                    [
                        output.time($0.effectiveAt), $0.type.rawValue, AuditLogs.actor($0.actor), $0.details["id"]?.stringValue ?? "",
                        $0.project?.id ?? "",
                    ]
                }
                output.more(more)
            }
        }
    }

    /// An admin key's id, or the `keysmith` command that made the change on the database.
    static func actor(_ actor: JSONValue) -> String {
        if let id = actor["api_key"]?["id"]?.stringValue { return id }
        if let agent = actor["session"]?["user_agent"]?.stringValue { return agent }
        return actor["type"]?.stringValue ?? ""
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say whether a key is valid, and whose it is.",
        discussion:
            "Exits 0 when the key is valid and 1 when it is not. Give - to read the key from standard input, so that it stays out of shell history."
    )

    @Argument(help: ArgumentHelp("The key, or - to read it from standard input.", valueName: "key"))
    var key: String

    @OptionGroup var remote: RemoteOptions

    func run() async throws {
        let key = try readKey(self.key)
        try await self.remote.run { client, output in
            let verification = try await client.verify(key: key)
            var fields = [("valid", verification.valid ? "yes" : "no"), ("code", verification.code.rawValue)]
            if let details = verification.key {
                fields += [
                    ("id", details.id), ("name", details.name), ("redacted", details.redactedValue), ("project", details.projectID),
                    ("owner", "\(details.owner.type.rawValue) \(details.owner.id)"), ("scopes", Keys.scopes(details.scopes)),
                    ("expires", output.time(details.expiresAt)),
                ]
            }
            output.object(verification.json, fields)
            if !verification.valid {
                throw CLIExit(message: "the key is not valid: \(verification.code.rawValue)", code: 1)
            }
        }
    }
}
