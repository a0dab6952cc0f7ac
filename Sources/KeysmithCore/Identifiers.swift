import Synchronization

/// The kinds of object Keysmith names, and the prefix each one's id starts with.
public enum IDPrefix: String, Sendable, CaseIterable {
    case organization = "org-"
    case project = "proj_"
    case user = "user-"
    case serviceAccount = "svc_acct_"
    /// Project API keys and admin keys alike, as at OpenAI.
    case apiKey = "key_"
    case invite = "invite-"
    case auditLog = "audit_log-"
}

/// What every typed id is, for the code that treats ids of every kind alike: binding one to a statement, writing it
/// into JSON or a page.
public protocol TypedID: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    /// The id as the API shows it (`proj_…`).
    var rawValue: String { get }
    init(rawValue: String)
}

/// An object's id, typed by the object it names, so that a project's id cannot be passed where a key's is expected
/// (the layers that take several ids take them from the outside in: organization, project, then the object). It is
/// the text the API shows; its form is checked where ids enter from outside (a path's `requireID`, a body's field).
public struct ObjectID<Object>: TypedID, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public init(stringLiteral value: String) {
        self.rawValue = value
    }

    public var description: String { self.rawValue }

    public static func < (lhs: ObjectID, rhs: ObjectID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }
}

public typealias OrganizationID = ObjectID<Organization>
public typealias ProjectID = ObjectID<Project>
public typealias UserID = ObjectID<User>
public typealias ServiceAccountID = ObjectID<ServiceAccount>
public typealias APIKeyID = ObjectID<APIKey>
public typealias AdminKeyID = ObjectID<AdminKey>
public typealias InviteID = ObjectID<Invite>

/// Makes object ids: a prefix, 10 base62 digits of a strictly increasing microsecond clock, and 12 random base62
/// digits (71 bits).
///
/// Ids made by one process sort in the order they were made, so a list ordered by (creation time, id) is the
/// creation order, and the random part keeps ids made by different processes or replicas apart.
public final class IDGenerator: Sendable {
    /// The generator the server and the command-line tool share.
    public static let shared = IDGenerator()

    private let lastMicroseconds = Mutex<UInt64>(0)
    private let now: @Sendable () -> UInt64

    /// - Parameter now: microseconds since the Unix epoch; tests may fix it.
    public init(now: @escaping @Sendable () -> UInt64 = IDGenerator.systemMicroseconds) {
        self.now = now
    }

    /// A new id for an object of the type the context asks for (`let id: ProjectID = ids.make(.project)`).
    public func make<Object>(_ prefix: IDPrefix) -> ObjectID<Object> {
        ObjectID(rawValue: self.makeText(prefix))
    }

    /// A new id as text, for what has no type of its own (audit log entries).
    public func makeText(_ prefix: IDPrefix) -> String {
        let micros = self.lastMicroseconds.withLock { last in
            last = max(self.now(), last + 1)
            return last
        }
        var bytes = Array(prefix.rawValue.utf8)
        bytes.reserveCapacity(bytes.count + 22)
        Base62.append(micros, width: 10, to: &bytes)
        var generator = SystemRandomNumberGenerator()
        Base62.appendRandom(count: 12, to: &bytes, using: &generator)
        return String(decoding: bytes, as: UTF8.self)
    }

    @Sendable
    public static func systemMicroseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1_000_000 + UInt64(spec.tv_nsec) / 1_000
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
