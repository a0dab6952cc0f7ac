import ArgumentParser
import KeysmithCore
import KeysmithServer
import KeysmithStore

struct AdminKeys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-keys",
        abstract: "Manage admin keys directly in the database (bootstrap and recovery).",
        subcommands: [Create.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an admin key and print it (only it) on standard output.",
            discussion: """
                Works on the database directly, whether or not the server runs. On an empty database it applies \
                migrations and creates the default organization first. The key is shown once.
                """
        )

        @Option(help: "A name for the key, shown in lists.")
        var name: String

        @Option(help: ArgumentHelp("The organization the key belongs to (default: the default organization).", valueName: "org-id"))
        var organization: String?

        @OptionGroup var databaseOptions: DatabaseOptions

        func run() async throws {
            try await reportingErrors {
                let logger = try Logs.bootstrap()
                let (keysmith, store) = try await Keysmith.open(
                    try self.databaseOptions.url(),
                    secret: try self.databaseOptions.secret(),
                    logger: logger,
                    command: "keysmith admin-keys create"
                )
                let created: (key: AdminKey, plaintext: String)
                do {
                    created = try await keysmith.createAdminKey(name: self.name, organizationID: self.organization)
                } catch {
                    try? await store.close()
                    throw error
                }
                try await store.close()
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
                let (keysmith, store) = try await Keysmith.open(
                    try self.databaseOptions.url(),
                    secret: try self.databaseOptions.secret(),
                    logger: logger,
                    command: "keysmith organizations create"
                )
                let organization: Organization
                do {
                    organization = try await keysmith.createOrganization(name: self.name)
                } catch {
                    try? await store.close()
                    throw error
                }
                try await store.close()
                print(organization.id)
            }
        }
    }
}
