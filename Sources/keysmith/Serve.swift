import ArgumentParser
import Foundation
import Hummingbird
import KeysmithCore
import KeysmithServer
import Logging
import NIOCore
import NIOPosix

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Keysmith server.",
        discussion: """
            Applies pending database migrations, then serves the API. On an empty database it creates the default
            organization and prints its first admin key on standard output, once. SIGTERM or SIGINT shut it down
            gracefully. Logs go to standard error (level: KEYSMITH_LOG_LEVEL, default info).
            KEYSMITH_SECRET (at least 32 characters) overrides the hashing secret kept in the database.
            """
    )

    @Option(help: ArgumentHelp("Address to listen on. Environment: KEYSMITH_HOST.", valueName: "host"))
    var host: String?

    @Option(help: ArgumentHelp("Port to listen on (0 picks a free one). Environment: KEYSMITH_PORT.", valueName: "port"))
    var port: Int?

    @OptionGroup var databaseOptions: DatabaseOptions

    func run() async throws {
        let logger = Logs.bootstrap()
        try await reportingErrors {
            let host = self.host ?? Environment.value("KEYSMITH_HOST") ?? "127.0.0.1"
            let port = try self.port ?? Environment.value("KEYSMITH_PORT").map(Self.parsePort) ?? 8080
            guard (0...65535).contains(port) else { throw ValidationError("port \(port) is not between 0 and 65535") }
            try await Self.checkAddressIsFree(host: host, port: port)
            let configuration = KeysmithConfiguration(
                host: host,
                port: port,
                database: try self.databaseOptions.url(),
                secret: try self.databaseOptions.secret()
            )
            let built = try await buildApplication(configuration, logger: logger)
            if let bootstrap = built.bootstrap, let adminKey = bootstrap.adminKey {
                let notice = """
                    Created the default organization \(bootstrap.organization.id) and its first admin key.
                    This key will not be shown again; store it now:

                        \(adminKey)


                    """
                FileHandle.standardOutput.write(Data(notice.utf8))
            }
            try await built.application.runService()
        }
    }

    /// Fails early, before the database is touched, when the address cannot be bound: a port in use is then one
    /// clear error line rather than a failure after migrations and bootstrap ran.
    static func checkAddressIsFree(host: String, port: Int) async throws {
        guard port != 0 else { return }
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port)
                .get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ListenError(host: host, port: port, reason: "the address is already in use")
        } catch {
            throw ListenError(host: host, port: port, reason: "\(error)")
        }
        try await channel.close()
    }

    static func parsePort(_ text: String) throws -> Int {
        guard let port = Int(text) else { throw ValidationError("KEYSMITH_PORT '\(text)' is not a port number") }
        return port
    }
}

struct ListenError: Error, CustomStringConvertible {
    var host: String
    var port: Int
    var reason: String

    var description: String { "cannot listen on \(self.host):\(self.port): \(self.reason)" }
}
