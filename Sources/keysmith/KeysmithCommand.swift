import ArgumentParser
import Foundation
import Hummingbird
import KeysmithCore
import KeysmithServer
import KeysmithStore
import Logging
import NIOCore

@main
struct KeysmithCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keysmith",
        abstract: "A self-hosted, OpenAI-compatible API key service.",
        discussion: """
            Keysmith serves OpenAI's Administration API (organizations, projects, service accounts, users and API
            keys) so that the official OpenAI SDKs can manage keys for your own model gateways.
            """,
        subcommands: [Serve.self, AdminKeys.self, Organizations.self],
        defaultSubcommand: nil
    )
}

/// Options every command that opens the database shares.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Database URL: sqlite:PATH, sqlite:///ABSOLUTE/PATH or sqlite::memory:. Environment: KEYSMITH_DATABASE_URL.",
            valueName: "url"
        )
    )
    var database: String?

    func url() throws -> DatabaseURL {
        guard let text = self.database ?? Environment.value("KEYSMITH_DATABASE_URL") else { return .default }
        return try DatabaseURL(parsing: text)
    }

    func secret() throws -> [UInt8]? {
        try KeysmithConfiguration.secret(fromEnvironment: Environment.value("KEYSMITH_SECRET"))
    }
}

enum Environment {
    static func value(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }
}

/// Logs go to standard error; standard output carries only what a command prints for scripts (ids, keys).
enum Logs {
    static func bootstrap() -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Environment.value("KEYSMITH_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info
            return handler
        }
        return Logger(label: "keysmith")
    }
}

/// Runs a command body, turning any error into one line on standard error and a non-zero exit.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("keysmith: error: \(describe(error))\n".utf8))
        throw ExitCode.failure
    }
}

func describe(_ error: any Error) -> String {
    if let error = error as? IOError, error.errnoCode == EADDRINUSE {
        return "the address is already in use (another process is listening on that port)"
    }
    if let error = error as? KeysmithError {
        return error.description
    }
    return String(describing: error)
}
