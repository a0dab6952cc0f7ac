import ArgumentParser
import KeysmithClient
import KeysmithCore

// Remote commands on projects and what lives in them: keys, service accounts and members.

struct Projects: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, create, show, rename and archive projects.",
        subcommands: [List.self, Create.self, Show.self, Rename.self, Archive.self]
    )

    static let columns = ["id", "name", "status", "created"]

    static func row(_ output: Output) -> (KeysmithClient.Project) -> [String] {
        { [$0.id, $0.name, $0.status.rawValue, output.time($0.createdAt)] }
    }

    static func show(_ project: KeysmithClient.Project, _ output: Output) {
        output.object(
            project.json,
            [
                ("id", project.id), ("name", project.name), ("status", project.status.rawValue),
                ("created", output.time(project.createdAt)), ("archived", output.time(project.archivedAt, none: "no")),
                ("external key id", project.externalKeyID ?? "none"),
            ]
        )
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the organization's projects, oldest first.")

        @Flag(help: "Include archived projects.")
        var archived = false

        @Flag(help: "List every project, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let (projects, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listProjects(includeArchived: self.archived) },
                    every: client.projects(includeArchived: self.archived)
                )
                output.list(projects, json: \.json, columns: Projects.columns, row: Projects.row(output))
                output.more(more)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a project.")

        @Option(help: "The project's name.")
        var name: String

        @Option(name: .customLong("external-key-id"), help: "An id of your own to keep with the project.")
        var externalKeyID: String?

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Projects.show(try await client.createProject(name: self.name, externalKeyID: self.externalKeyID), output)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one project.")

        @Argument(help: ArgumentHelp("The project's id.", valueName: "project-id"))
        var id: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Projects.show(try await client.retrieveProject(id: self.id), output)
            }
        }
    }

    struct Rename: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename a project.")

        @Argument(help: ArgumentHelp("The project's id.", valueName: "project-id"))
        var id: String

        @Option(help: "The new name.")
        var name: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Projects.show(try await client.modifyProject(id: self.id, name: self.name), output)
            }
        }
    }

    struct Archive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Archive a project: its keys stop verifying at once, and it takes no new keys or members."
        )

        @Argument(help: ArgumentHelp("The project's id.", valueName: "project-id"))
        var id: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                Projects.show(try await client.archiveProject(id: self.id), output)
            }
        }
    }
}

/// What a new key gets: a name, scopes and a lifetime (`keys create`, `service-accounts add-key`).
struct NewKeyOptions: ParsableArguments {
    @Option(help: "A name for the key, shown in lists.")
    var name = "Secret Key"

    @Option(help: ArgumentHelp("What the key may call, comma-separated (default: everything).", valueName: "a,b"))
    var scopes: ListArgument?

    @Option(name: .customLong("expires-in"), help: ArgumentHelp("The key's lifetime: 30d, 12h, 90m (default: none).", valueName: "duration"))
    var expiresIn: DurationArgument?
}

/// `--project P`, which every command under a project takes.
struct ProjectOption: ParsableArguments {
    @Option(help: ArgumentHelp("The project's id.", valueName: "project-id"))
    var project: String
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, create, show, update, rotate and revoke a project's API keys.",
        subcommands: [List.self, Create.self, Show.self, Update.self, Rotate.self, Delete.self]
    )

    static func owner(_ key: ProjectAPIKey) -> String {
        switch key.owner {
        case .user(let user): user.email
        case .serviceAccount(let account): "service account \(account.name)"
        }
    }

    static func scopes(_ scopes: [String]) -> String {
        scopes.isEmpty ? "all" : scopes.joined(separator: ",")
    }

    static func fields(_ key: ProjectAPIKey, _ output: Output) -> [(String, String)] {
        [
            ("id", key.id), ("name", key.name), ("redacted", key.redactedValue), ("owner", Self.owner(key)),
            ("owner access", key.ownerProjectAccess.rawValue), ("scopes", Self.scopes(key.scopes)),
            ("created", output.time(key.createdAt)), ("last used", output.time(key.lastUsedAt)),
            ("expires", output.time(key.expiresAt)),
        ]
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a project's API keys, oldest first.")

        @OptionGroup var project: ProjectOption

        @Option(help: "Keys whose owner is in the project (active), has left it (inactive), or any.")
        var access: OwnerProjectAccess?

        @Flag(help: "List every key, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let project = self.project.project
                let (keys, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listAPIKeys(project: project, ownerProjectAccess: self.access) },
                    every: client.apiKeys(project: project, ownerProjectAccess: self.access)
                )
                output.list(keys, json: \.json, columns: ["id", "name", "key", "owner", "scopes", "last used", "expires", "created"]) {
                    [
                        $0.id, $0.name, KeySecret.shortened(redacted: $0.redactedValue), Keys.owner($0), Keys.scopes($0.scopes),
                        output.time($0.lastUsedAt),
                        output.time($0.expiresAt), output.time($0.createdAt),
                    ]
                }
                output.more(more)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a key to a member of the project; its plaintext is printed this once.",
            discussion: "Service accounts get theirs with `keysmith service-accounts create` and `add-key`."
        )

        @OptionGroup var project: ProjectOption

        @Option(help: ArgumentHelp("The member who holds the key: a user id or an email.", valueName: "user"))
        var user: String

        @OptionGroup var key: NewKeyOptions

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let issued = try await client.createAPIKey(
                    project: self.project.project,
                    userID: try await resolveUser(self.user, client),
                    name: self.key.name,
                    scopes: self.key.scopes?.items ?? [],
                    expiresInSeconds: self.key.expiresIn?.seconds
                )
                output.object(issued.json, [("key", issued.value)] + Keys.fields(issued.key, output))
                output.storeKeyWarning()
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one key (redacted).")

        @Argument(help: ArgumentHelp("The key's id.", valueName: "key-id"))
        var id: String

        @OptionGroup var project: ProjectOption
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let key = try await client.retrieveAPIKey(project: self.project.project, id: self.id)
                output.object(key.json, Keys.fields(key, output))
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a key's scopes or lifetime.")

        @Argument(help: ArgumentHelp("The key's id.", valueName: "key-id"))
        var id: String

        @OptionGroup var project: ProjectOption

        @Option(help: ArgumentHelp("The key's scopes, comma-separated; '' makes it unrestricted.", valueName: "a,b"))
        var scopes: ListArgument?

        @Option(name: .customLong("expires-in"), help: ArgumentHelp("A new lifetime, from now: 30d, 12h, 90m.", valueName: "duration"))
        var expiresIn: DurationArgument?

        @OptionGroup var remote: RemoteOptions

        func validate() throws {
            if self.scopes == nil, self.expiresIn == nil {
                throw ValidationError("nothing to change: give --scopes or --expires-in")
            }
        }

        func run() async throws {
            try await self.remote.run { client, output in
                let key = try await client.updateAPIKey(
                    project: self.project.project,
                    id: self.id,
                    scopes: self.scopes?.items,
                    expiresInSeconds: self.expiresIn?.seconds
                )
                output.object(key.json, Keys.fields(key, output))
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a key a new secret, printed this once; the old one stops verifying after --grace."
        )

        @Argument(help: ArgumentHelp("The key's id.", valueName: "key-id"))
        var id: String

        @OptionGroup var project: ProjectOption

        @Option(help: ArgumentHelp("How long the old secret keeps verifying: 0 (default) to 7d.", valueName: "duration"))
        var grace: DurationArgument?

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let rotated = try await client.rotateAPIKey(
                    project: self.project.project,
                    id: self.id,
                    gracePeriodSeconds: self.grace?.seconds ?? 0
                )
                let old = rotated.previousSecretExpiresAt.map { "verifies until \(output.time($0))" } ?? "revoked"
                output.object(rotated.json, [("key", rotated.value), ("previous secret", old)] + Keys.fields(rotated.key, output))
                output.storeKeyWarning()
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a member's key: it stops verifying at once.")

        @Argument(help: ArgumentHelp("The key's id.", valueName: "key-id"))
        var id: String

        @OptionGroup var project: ProjectOption
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let deleted = try await client.deleteAPIKey(project: self.project.project, id: self.id)
                output.object(deleted.json, [("deleted", deleted.id)])
            }
        }
    }
}

struct ServiceAccounts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service-accounts",
        abstract: "List, create, show, update and delete a project's service accounts, and give them more keys.",
        subcommands: [List.self, Create.self, Show.self, Update.self, AddKey.self, Delete.self]
    )

    static func fields(_ account: ProjectServiceAccount, _ output: Output) -> [(String, String)] {
        [("id", account.id), ("name", account.name), ("role", account.role.rawValue), ("created", output.time(account.createdAt))]
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a project's service accounts, oldest first.")

        @OptionGroup var project: ProjectOption

        @Flag(help: "List every service account, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let project = self.project.project
                let (accounts, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listServiceAccounts(project: project) },
                    every: client.serviceAccounts(project: project)
                )
                output.list(accounts, json: \.json, columns: ["id", "name", "role", "created"]) {
                    [$0.id, $0.name, $0.role.rawValue, output.time($0.createdAt)]
                }
                output.more(more)
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a service account and its first key, whose plaintext is printed this once."
        )

        @OptionGroup var project: ProjectOption

        @Option(help: "The service account's name.")
        var name: String

        @Flag(name: .customLong("without-key"), help: "Create the account with no key and no project role.")
        var withoutKey = false

        @Option(
            name: .customLong("expires-in"),
            help: ArgumentHelp("The first key's lifetime: 30d, 12h, 90m (default: none).", valueName: "duration")
        )
        var expiresIn: DurationArgument?

        @OptionGroup var remote: RemoteOptions

        func validate() throws {
            if self.withoutKey, self.expiresIn != nil {
                throw ValidationError("--expires-in is the first key's lifetime; --without-key makes no key")
            }
        }

        func run() async throws {
            try await self.remote.run { client, output in
                let created = try await client.createServiceAccount(
                    project: self.project.project,
                    name: self.name,
                    withoutKey: self.withoutKey,
                    expiresInSeconds: self.expiresIn?.seconds
                )
                var fields = ServiceAccounts.fields(created.account, output)
                if let key = created.apiKey {
                    fields = [("key", key.value)] + fields + [("key id", key.id)]
                }
                output.object(created.json, fields)
                if created.apiKey != nil { output.storeKeyWarning() }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one service account.")

        @Argument(help: ArgumentHelp("The service account's id.", valueName: "service-account-id"))
        var id: String

        @OptionGroup var project: ProjectOption
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let account = try await client.retrieveServiceAccount(project: self.project.project, id: self.id)
                output.object(account.json, ServiceAccounts.fields(account, output))
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename a service account or change its project role.")

        @Argument(help: ArgumentHelp("The service account's id.", valueName: "service-account-id"))
        var id: String

        @OptionGroup var project: ProjectOption

        @Option(help: "The new name.")
        var name: String?

        @Option(help: "The new project role.")
        var role: ProjectRole?

        @OptionGroup var remote: RemoteOptions

        func validate() throws {
            if self.name == nil, self.role == nil {
                throw ValidationError("nothing to change: give --name or --role")
            }
        }

        func run() async throws {
            try await self.remote.run { client, output in
                let account = try await client.updateServiceAccount(project: self.project.project, id: self.id, name: self.name, role: self.role)
                output.object(account.json, ServiceAccounts.fields(account, output))
            }
        }
    }

    struct AddKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-key",
            abstract: "Give a service account another key; its plaintext is printed this once."
        )

        @Argument(help: ArgumentHelp("The service account's id.", valueName: "service-account-id"))
        var id: String

        @OptionGroup var project: ProjectOption

        @OptionGroup var key: NewKeyOptions

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let key = try await client.createServiceAccountKey(
                    project: self.project.project,
                    serviceAccount: self.id,
                    name: self.key.name,
                    scopes: self.key.scopes?.items ?? [],
                    expiresInSeconds: self.key.expiresIn?.seconds
                )
                output.object(
                    key.json,
                    [
                        ("key", key.value), ("id", key.id), ("name", key.name), ("scopes", Keys.scopes(key.scopes)),
                        ("created", output.time(key.createdAt)), ("expires", output.time(key.expiresAt)),
                    ]
                )
                output.storeKeyWarning()
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a service account; its keys stop verifying at once.")

        @Argument(help: ArgumentHelp("The service account's id.", valueName: "service-account-id"))
        var id: String

        @OptionGroup var project: ProjectOption
        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let deleted = try await client.deleteServiceAccount(project: self.project.project, id: self.id)
                output.object(deleted.json, [("deleted", deleted.id)])
            }
        }
    }
}

struct ProjectUsers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "project-users",
        abstract: "List a project's members, add organization users to it and remove them.",
        subcommands: [List.self, Add.self, Remove.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a project's members, in the order they joined.")

        @OptionGroup var project: ProjectOption

        @Flag(help: "List every member, not only the first 20.")
        var all = false

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let project = self.project.project
                let (members, more) = try await fetch(
                    all: self.all,
                    page: { try await client.listProjectUsers(project: project) },
                    every: client.projectUsers(project: project)
                )
                output.list(members, json: \.json, columns: ["id", "email", "name", "role", "added"]) {
                    [$0.id, $0.email, $0.name ?? "", $0.role.rawValue, output.time($0.addedAt)]
                }
                output.more(more)
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an organization user to the project.")

        @OptionGroup var project: ProjectOption

        @Option(help: ArgumentHelp("The user: an id or an email.", valueName: "user"))
        var user: String

        @Option(help: "Their role in the project.")
        var role: ProjectRole = .member

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let member = try await client.addProjectUser(
                    project: self.project.project,
                    userID: try await resolveUser(self.user, client),
                    role: self.role
                )
                output.object(member.json, [("id", member.id), ("email", member.email), ("role", member.role.rawValue)])
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a user from the project; their keys there stay, inactive, and stop verifying."
        )

        @OptionGroup var project: ProjectOption

        @Option(help: ArgumentHelp("The user: an id or an email.", valueName: "user"))
        var user: String

        @OptionGroup var remote: RemoteOptions

        func run() async throws {
            try await self.remote.run { client, output in
                let removed = try await client.removeProjectUser(project: self.project.project, userID: try await resolveUser(self.user, client))
                output.object(removed.json, [("removed", removed.id)])
            }
        }
    }
}

/// A user named by id, or by email (anything with an `@`), as the id the API wants.
func resolveUser(_ text: String, _ client: AdminClient) async throws -> String {
    guard text.contains("@") else { return text }
    guard let user = try await client.listUsers(limit: 1, emails: [text]).data.first else {
        throw CLIExit(message: "no user of the organization has the email \(text)", code: 1)
    }
    return user.id
}

/// The first page (and whether more follow), or with `all` every page.
func fetch<Item>(
    all: Bool,
    page: () async throws -> ListPage<Item>,
    every: Pages<Item>
) async throws -> (items: [Item], more: Bool) {
    if all {
        return (try await every.collect(), false)
    }
    let first = try await page()
    return (first.data, first.hasMore)
}
