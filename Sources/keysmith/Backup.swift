import ArgumentParser
import Foundation
import KeysmithCore
import KeysmithDomain
import Logging

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a SQLite database, safely while the server runs.",
        discussion: """
            Uses SQLite's online backup API: the copy is one consistent snapshot, taken without stopping the \
            server or blocking its writes. The copy is a single file (no -wal or -shm beside it), written next to \
            FILE and moved into place only when complete. It holds the hashing secret unless the server runs with \
            KEYSMITH_SECRET. To restore, stop the server and start it with --database sqlite:FILE (see \
            docs/deployment.md).
            """
    )

    @OptionGroup var databaseOptions: DatabaseOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("Where to write the copy; it must not exist yet.", valueName: "file"))
    var destination: String

    func run() async throws {
        try await reportingErrors {
            let logger = try Logs.bootstrap()
            let url = try self.databaseOptions.url()
            guard case .sqliteFile(let path, _) = url else {
                throw ValidationError("backup copies a SQLite database file (--database sqlite:PATH), not \(url)")
            }
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("there is no database at \(path)")
            }
            guard !FileManager.default.fileExists(atPath: self.destination) else {
                throw ValidationError("\(self.destination) already exists; choose a new file")
            }
            try await KeysmithDatabase.backUpSQLite(url, to: self.destination, logger: logger)
            logger.info("Backed up the database", metadata: ["from": "\(url)", "to": "\(self.destination)"])
        }
    }
}
