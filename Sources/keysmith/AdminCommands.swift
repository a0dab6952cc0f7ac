import ArgumentParser
import KeysmithClient
import KeysmithCore
import KeysmithDomain
import KeysmithServer

struct AdminKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-keys",
        abstract: "List, create and delete admin keys; or create one directly in the database (bootstrap and recovery).",
        subcommands: [List.self, Create.self, Delete.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an admin key; its plaintext is printed this once.",
            discussion: """
                Through the API of a running Keysmith (--url, --admin-key), like the other commands. With --database \
                it works on the database directly instead, whether or not the server runs, and prints only the key \
                on standard output: the way to make the first key, or one more when every key is lost. On an empty \
                database it applies migrations and creates the default organization first.
                """
        )

        @Option(help: "A name for the key, shown in lists.")
        var name: String

        @Option(name: .customLong("expires-in"), help: ArgumentHelp("The key's lifetime: 90d, 12h (default: none).", valueName: "duration"))
        var expiresIn: DurationArgument?

        @Option(
            help: ArgumentHelp(
                "With --database: the organization the key belongs to (default: the default organization).",
                valueName: "org-id"
            )
        )
        var organization: String?

        @OptionGroup var databaseOptions: DatabaseOptions
        @OptionGroup var remote: RemoteOptions

        func validate() throws {
            if self.databaseOptions.database == nil, self.organization != nil {
                throw ValidationError("--organization works on the database directly: give --database too")
            }
            if self.databaseOptions.database != nil, self.expiresIn != nil {
                throw ValidationError("--expires-in is for keys made through the API: leave out --database")
            }
        }

        func run() async throws {
            guard self.databaseOptions.database != nil else {
                try await self.remote.run { client, output in
                    let issued = try await client.createAdminKey(name: self.name, expiresInSeconds: self.expiresIn?.seconds)
                    output.object(issued.json, [("key", issued.value)] + AdminKeys.fields(issued.key, output))
                    output.storeKeyWarning()
                }
                return
            }
            try await reportingErrors {
                let logger = try Logs.bootstrap()
                let (keysmith, database) = try await Keysmith.open(
                    try self.databaseOptions.url(),
                    secret: try self.databaseOptions.secret(),
                    logger: logger,
                    command: "keysmith admin-keys create"
                )
                let created: (key: AdminKey, plaintext: String)
                do {
                    created = try await keysmith.createAdminKey(
                        name: self.name,
                        organizationID: self.organization.map(OrganizationID.init(rawValue:))
                    )
                } catch {
                    try? await database.close()
                    throw error
                }
                try await database.close()
                print(created.plaintext)
            }
        }
    }
}

struct Organizations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage organizations (tenants) directly in the database.",
        subcommands: [Create.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an organization and print its id (only it) on standard output."
        )

        @Option(help: "The organization's name.")
        var name: String

        @OptionGroup var databaseOptions: DatabaseOptions

        func run() async throws {
            try await reportingErrors {
                let logger = try Logs.bootstrap()
                let (keysmith, database) = try await Keysmith.open(
                    try self.databaseOptions.url(),
                    secret: try self.databaseOptions.secret(),
                    logger: logger,
                    command: "keysmith organizations create"
                )
                let organization: Organization
                do {
                    organization = try await keysmith.createOrganization(name: self.name)
                } catch {
                    try? await database.close()
                    throw error
                }
                try await database.close()
                print(organization.id)
            }
        }
    }
}
