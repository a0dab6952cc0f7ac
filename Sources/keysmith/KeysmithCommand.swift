import ArgumentParser
import Foundation
import Hummingbird
import KeysmithCore
import KeysmithDomain
import KeysmithServer
import Logging
import NIOCore

@main
struct KeysmithCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keysmith",
        abstract: "A self-hosted, OpenAI-compatible API key service.",
        // One line per paragraph: ArgumentParser wraps it at the terminal's width.
        discussion: """
            Keysmith serves OpenAI's Administration API (organizations, projects, service accounts, users, invites, \
            audit logs and API keys) so that the official OpenAI SDKs can manage keys for your own model gateways, \
            and answers gateways' forward-auth checks from memory.

            The commands from projects to verify work on a running Keysmith through that API (--url and --admin-key, or KEYSMITH_URL and KEYSMITH_ADMIN_KEY). They print tables, or with --json the API's objects, and exit with 0 on success, 1 when the API answers with an error, 2 on a usage error and 3 when Keysmith cannot be reached.
            """,
        version: KeysmithVersion.current,
        subcommands: [
            Serve.self, Migrate.self, Backup.self, Projects.self, Keys.self, ServiceAccounts.self, ProjectUsers.self,
            Users.self, Invites.self, AdminKeys.self, AuditLogs.self, Verify.self, Organizations.self,
        ],
        defaultSubcommand: nil
    )

    /// ArgumentParser's own run, but with the exit codes the CLI documents: 0 success, 1 an error the API answered
    /// (or a command's failure), 2 a usage error (ArgumentParser's own is 64), 3 cannot connect.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let exit as CLIExit {
            exit.exit()
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            self.exit(withError: error)
        }
    }
}

/// Options every command that opens the database shares.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Database URL: sqlite:PATH, sqlite:///ABSOLUTE/PATH, sqlite::memory:, or postgres://USER:PASSWORD@HOST:PORT/DB with ?sslmode=MODE. Environment: KEYSMITH_DATABASE_URL.",
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
    /// How log lines look: `text` for people, `json` (one object per line) for log shippers.
    enum Format: String, CaseIterable, ExpressibleByArgument {
        case text
        case json
    }

    /// Sets up logging from `KEYSMITH_LOG_LEVEL` and the format (`--log-format`, else `KEYSMITH_LOG_FORMAT`);
    /// an unknown level or format is an error, never silently the default.
    static func bootstrap(format: Format? = nil) throws -> Logger {
        let level: Logger.Level
        if let text = Environment.value("KEYSMITH_LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: text.lowercased()) else {
                let choices = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
                throw ValidationError("KEYSMITH_LOG_LEVEL '\(text)' is not a log level; use one of \(choices)")
            }
            level = parsed
        } else {
            level = .info
        }
        let chosen: Format
        if let format {
            chosen = format
        } else if let text = Environment.value("KEYSMITH_LOG_FORMAT") {
            guard let parsed = Format(rawValue: text.lowercased()) else {
                throw ValidationError("KEYSMITH_LOG_FORMAT '\(text)' is not a log format; use text or json")
            }
            chosen = parsed
        } else {
            chosen = .text
        }
        LoggingSystem.bootstrap { label in
            switch chosen {
            case .text:
                var handler = TextLogHandler(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
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
    if let error = error as? ValidationError {
        return error.message
    }
    return String(describing: error)
}
