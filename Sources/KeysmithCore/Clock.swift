import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where Keysmith reads the time: the system clock in production, a ``ManualClock`` in tests of expiry and
/// grace periods, so that no test sleeps through real minutes.
public struct KeysmithClock: Sendable {
    private let read: @Sendable () -> UnixSeconds

    public init(_ read: @escaping @Sendable () -> UnixSeconds) {
        self.read = read
    }

    /// Unix seconds now.
    public func now() -> UnixSeconds { self.read() }

    public static let system = KeysmithClock { UnixSeconds(time(nil)) }
}

/// A clock that moves only when told to.
public final class ManualClock: Sendable {
    private let current: Mutex<UnixSeconds>

    public init(now: UnixSeconds = 1_750_000_000) {
        self.current = Mutex(now)
    }

    public var now: UnixSeconds { self.current.withLock { $0 } }

    public func advance(by seconds: Int) {
        self.current.withLock { $0 += seconds }
    }

    public var clock: KeysmithClock {
        KeysmithClock { self.now }
    }
}

/// The wall clock as logs show it.
public enum Timestamp {
    /// Now, in UTC, as ISO 8601 with milliseconds: `2026-11-26T22:22:51.123Z`.
    public static func now() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))."
            + "\(pad(Int(now.tv_nsec) / 1_000_000, 3))Z"
    }
}
