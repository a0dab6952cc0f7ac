import KeysmithDomain
import Logging
import ServiceLifecycle

/// Deletes old change log entries every ``interval``, through the domain layer, until the server shuts down. Entries
/// are kept for ``retention`` seconds: a replica cut off for longer loads its verification state again when it comes
/// back (see ``ChangeFeed``). Every replica prunes; deleting what another already deleted is harmless.
struct ChangeLogPruning: Service {
    let keysmith: Keysmith
    var retention = 3_600
    var interval = Duration.seconds(600)
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                return
            }
            do {
                let pruned = try await self.keysmith.pruneChangeLog(retention: self.retention)
                if pruned > 0 { self.logger.debug("Pruned the change log", metadata: ["entries": "\(pruned)"]) }
            } catch {
                self.logger.warning("Could not prune the change log", metadata: ["error": "\(error)"])
            }
        }
    }
}
