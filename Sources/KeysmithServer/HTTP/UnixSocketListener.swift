import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

extension KeysmithConfiguration {
    /// A Unix domain socket to serve the same application on (`--unix-socket`), for a gateway on the same host.
    public struct UnixSocket: Sendable, Equatable {
        public var path: String
        /// The socket file's permission bits, set once it is bound: connecting needs write permission, so 0o660
        /// lets the process's user and group in (add the gateway's user to that group) and nobody else.
        public var mode: UInt16

        public static let defaultMode: UInt16 = 0o660

        public init(path: String, mode: UInt16 = Self.defaultMode) {
            self.path = path
            self.mode = mode
        }

        /// An octal mode such as `660` or `0660`, of the permission bits only.
        public static func mode(parsing text: String) throws -> UInt16 {
            guard !text.isEmpty, let mode = UInt16(text, radix: 8), mode <= 0o777 else { throw InvalidSocketModeError(text: text) }
            return mode
        }
    }
}

public struct InvalidSocketModeError: Error, CustomStringConvertible {
    public var text: String
    public var description: String {
        "'\(self.text)' is not a socket mode; expected octal permission bits such as 660 (owner and group) or 600 (owner only)"
    }
}

/// The Unix socket's path cannot be served.
public struct UnixSocketPathError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot serve on the Unix socket \(self.path): \(self.reason)" }
}

/// Serves an application's responder on a Unix domain socket beside its TCP listener: what a gateway on the same
/// host (nginx's `server unix:…`, Caddy's `unix//…`) connects to without the TCP stack. The socket gets ``mode``
/// once it is bound (until then it has the umask's, which for a socket without write permission for others lets no
/// one else connect), and is removed when the listener stops. Before anything else is opened, ``UnixSocketPath/prepare(_:)``
/// replaces a socket left behind by a process that died and refuses a live one or a path that is not a socket.
struct UnixSocketListener<Responder: HTTPResponder>: Service where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let socket: KeysmithConfiguration.UnixSocket
    let application: Application<Responder>

    init(
        socket: KeysmithConfiguration.UnixSocket,
        responder: Responder,
        server: HTTPServerBuilder,
        logger: Logger
    ) throws {
        self.socket = socket
        self.application = Application(
            responder: responder,
            server: server,
            configuration: .init(address: .unixDomainSocket(path: socket.path), serverName: nil),
            onServerRunning: { _ in
                do {
                    try FileManager.default.setAttributes([.posixPermissions: Int(socket.mode)], ofItemAtPath: socket.path)
                } catch {
                    logger.error(
                        "Could not set the Unix socket's mode",
                        metadata: ["path": "\(socket.path)", "mode": "\(String(socket.mode, radix: 8))", "error": "\(error)"]
                    )
                }
                logger.info(
                    "Keysmith is also listening on the Unix socket \(socket.path)",
                    metadata: ["path": "\(socket.path)", "mode": "0\(String(socket.mode, radix: 8))"]
                )
            },
            logger: logger
        )
    }

    func run() async throws {
        defer { try? FileManager.default.removeItem(atPath: self.socket.path) }
        try await self.application.run()
    }
}

/// The path a Unix socket is to be bound at.
enum UnixSocketPath {
    /// Makes way for binding `path`: nothing there, or a socket nobody answers on (removed).
    static func prepare(_ path: String) async throws {
        let type: FileAttributeType
        do {
            guard let found = try FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType else { return }
            type = found
        } catch {
            return  // nothing there
        }
        guard type == .typeSocket else {
            throw UnixSocketPathError(path: path, reason: "it exists and is not a socket; remove it or choose another path")
        }
        if await Self.accepts(path) {
            throw UnixSocketPathError(path: path, reason: "another process is serving on it")
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Whether a process accepts connections on the socket at `path`.
    static func accepts(_ path: String) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(2))
                .connect(unixDomainSocketPath: path)
                .get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
