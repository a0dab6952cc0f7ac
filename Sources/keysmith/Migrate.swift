import ArgumentParser
import Foundation
import KeysmithCore
import KeysmithDomain
import KeysmithServer
import Logging

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations, without serving.",
        discussion: """
            Prints the name of each migration it applies on standard output, one a line (nothing when the \
            database is up to date). Several replicas or commands migrating one database at once take turns. \
            A database migrated by a newer Keysmith is refused. `keysmith serve` migrates on start too; run this \
            first when rolling out a new version to several replicas (see docs/deployment.md).
            """
    )

    @OptionGroup var databaseOptions: DatabaseOptions

    func run() async throws {
        try await reportingErrors {
            let logger = try Logs.bootstrap()
            let applied = try await KeysmithDatabase.migrate(try self.databaseOptions.url(), logger: logger)
            for name in applied {
                print(name)
            }
        }
    }
}
