import ArgumentParser
import AsyncHTTPClient
import Foundation
import KeysmithClient
import NIOCore
import NIOPosix

/// What every command that talks to a running Keysmith shares: where it is, the admin key, and the output form.
struct RemoteOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Keysmith's address. Environment: KEYSMITH_URL, then OPENAI_BASE_URL; default http://127.0.0.1:8080.",
            valueName: "url"
        )
    )
    var url: String?

    @Option(
        name: .customLong("admin-key"),
        help: ArgumentHelp(
            "An admin key (sk-admin-…). Environment: KEYSMITH_ADMIN_KEY, then OPENAI_ADMIN_KEY; prefer them to this option, which shell history keeps.",
            valueName: "key"
        )
    )
    var adminKey: String?

    @Flag(help: "Print the API's JSON objects (one JSON document) instead of a table.")
    var json = false

    static let defaultURL = "http://127.0.0.1:8080"

    var resolvedURL: String {
        self.url ?? Environment.value("KEYSMITH_URL") ?? Environment.value("OPENAI_BASE_URL") ?? Self.defaultURL
    }

    /// Runs `body` with a client of the server, and turns what goes wrong into the documented exit codes: 1 for an
    /// error the API answered (its message on standard error), 2 for a usage error, 3 when the server cannot be
    /// reached (naming the URL tried).
    func run(_ body: (AdminClient, Output) async throws -> Void) async throws {
        guard let key = self.adminKey ?? Environment.value("KEYSMITH_ADMIN_KEY") ?? Environment.value("OPENAI_ADMIN_KEY") else {
            throw CLIExit.usage("no admin key: set KEYSMITH_ADMIN_KEY (or OPENAI_ADMIN_KEY), or give --admin-key")
        }
        // A refused connection is an answer for a command line: fail at once rather than retry until the timeout.
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(5)
        configuration.connectionPool.retryConnectionEstablishment = false
        let httpClient = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
        var failure: (any Error)?
        do {
            let client = try AdminClient(baseURL: self.resolvedURL, adminKey: key, httpClient: httpClient)
            try await body(client, Output(json: self.json))
        } catch {
            failure = error
        }
        try? await httpClient.shutdown()
        guard let failure else { return }
        throw CLIExit(failure)
    }
}

/// How a remote command ends when it does not succeed: a message for standard error and an exit code.
struct CLIExit: Error {
    var message: String
    var code: Int32

    static func usage(_ message: String) -> CLIExit {
        CLIExit(message: message, code: 2)
    }

    init(message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    init(_ error: any Error) {
        switch error {
        case let exit as CLIExit:
            self = exit
        case let error as KeysmithClientError:
            switch error {
            case .api(let api):
                let reason = [String(api.status), api.code, api.param.map { "param \($0)" }].compactMap { $0 }.joined(separator: ", ")
                self.init(message: "\(api.message) (\(reason))", code: 1)
            case .connection(let url, let underlying):
                self.init(message: "cannot connect to Keysmith at \(url): \(Self.describe(underlying))", code: 3)
            case .invalidResponse:
                self.init(message: error.description, code: 1)
            case .invalidBaseURL:
                self.init(message: error.description, code: 2)
            }
        default:
            self.init(message: String(describing: error), code: 1)
        }
    }

    /// AsyncHTTPClient's and NIO's errors, as one phrase.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "the connection timed out"
            case .deadlineExceeded: return "no answer in time"
            case .remoteConnectionClosed: return "the server closed the connection"
            default: break
            }
        }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return Self.describe(first.error)
        }
        if let error = error as? IOError {
            if error.errnoCode == ECONNREFUSED { return "connection refused (is `keysmith serve` running there?)" }
            return error.description
        }
        return String(describing: error)
    }

    /// Prints the message and exits with the code.
    func exit() -> Never {
        FileHandle.standardError.write(Data("keysmith: error: \(self.message)\n".utf8))
        Foundation.exit(self.code)
    }
}

/// A length of time as people write it: `90s`, `15m`, `1h`, `30d`, `2w`, or plain seconds.
struct DurationArgument: ExpressibleByArgument {
    var seconds: Int

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Int)] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)]
        var multiplier = 1
        var number = Substring(text)
        if let unit = units.first(where: { text.hasSuffix($0.0) }) {
            multiplier = unit.1
            number = number.dropLast()
        }
        guard let value = Int(number), value >= 0 else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        self.seconds = product
    }

    static var defaultCompletionKind: CompletionKind { .list(["1h", "1d", "30d", "90d"]) }
}

/// A comma-separated list: `--scopes model.request,files.read`.
struct ListArgument: ExpressibleByArgument {
    var items: [String]

    init?(argument: String) {
        self.items = argument.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

/// Reads a key from the argument, or from standard input when the argument is `-` (so that it stays out of shell
/// history and process lists).
func readKey(_ argument: String) throws -> String {
    guard argument == "-" else { return argument }
    let data = FileHandle.standardInput.readDataToEndOfFile()
    let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !key.isEmpty else { throw CLIExit.usage("no key on standard input") }
    return key
}
