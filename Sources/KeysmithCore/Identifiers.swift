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

    public func make(_ prefix: IDPrefix) -> String {
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
