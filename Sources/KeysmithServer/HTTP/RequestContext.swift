public import Hummingbird
import KeysmithCore
import NIOCore

/// Every request's context: Hummingbird's core context, and the admin principal once authentication on a route
/// group has established it.
public struct KeysmithRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``AdminAuthentication`` on the admin route groups; nil everywhere else.
    var principal: AdminPrincipal?
    /// Set by ``DashboardSessionMiddleware`` on the dashboard's pages; nil everywhere else.
    var dashboardPage: DashboardPage?
    private let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.dashboardPage = nil
        self.channel = source.channel
    }

    /// The peer's IP address ("unknown" when the channel has none, as in router tests): what the dashboard's
    /// sign-in rate limit counts by. Computed when asked, so that checks, which never ask, do not format it.
    var clientAddress: String {
        self.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// The client connection this request came on, as the connection registry knows it.
    var connectionChannel: any Channel { self.channel }
}

/// The context of an authenticated admin request: the principal is there, not optional, so a handler cannot forget
/// to check it.
struct AdminRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let principal: AdminPrincipal

    init(context: KeysmithRequestContext) throws {
        guard let principal = context.principal else {
            // A route in an admin group always runs behind AdminAuthentication: this is a wiring bug.
            preconditionFailure("an admin route was registered without AdminAuthentication")
        }
        self.coreContext = context.coreContext
        self.principal = principal
    }
}

extension Parameters {
    /// An id from the route's path: a 400 in OpenAI's envelope, naming it, when it is missing or holds a control
    /// character, rather than answering with an empty id. Not Hummingbird's `require(_:)`, whose errors are its own.
    func requireID(_ name: String) throws -> String {
        guard let value = self.get(name) else {
            throw OpenAIError.invalid("Missing path parameter '\(name)'.", param: name)
        }
        // No id holds a control character, and PostgreSQL cannot compare text with a NUL in it.
        guard value.firstControlCharacter == nil else {
            throw OpenAIError.invalid("Invalid '\(name)': control characters are not allowed.", param: name)
        }
        return value
    }

    /// ``requireID(_:)`` as the id of the object the caller's context names.
    func requireID<Object>(_ name: String) throws -> ObjectID<Object> {
        ObjectID(rawValue: try self.requireID(name))
    }
}
