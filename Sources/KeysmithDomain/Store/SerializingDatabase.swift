import Logging
import NIOCore
import NIOPosix
import SQLKit

/// What SQLKit needs to serialize queries in an engine's dialect (`.sqlite`, `.postgres`, each beside its engine);
/// it never runs one.
struct SerializingDatabase: SQLDatabase {
    let dialect: any SQLDialect

    var logger: Logger { Logger(label: "keysmith.sql") }
    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        self.eventLoop.makeFailedFuture(SerializingOnlyError())
    }
}

private struct SerializingOnlyError: Error {}
