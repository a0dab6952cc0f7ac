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
    private let readMilliseconds: @Sendable () -> Int

    /// A clock that reads whole seconds (its milliseconds are those seconds').
    public init(_ read: @escaping @Sendable () -> UnixSeconds) {
        self.read = read
        self.readMilliseconds = { read() * 1000 }
    }

    /// Unix seconds now.
    public func now() -> UnixSeconds { self.read() }

    /// Unix milliseconds now: how far into its window a rate limit is, for the time until it resets.
    public func nowMilliseconds() -> Int { self.readMilliseconds() }

    public static let system = KeysmithClock(
        read: { UnixSeconds(time(nil)) },
        milliseconds: {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
        }
    )

    private init(read: @escaping @Sendable () -> UnixSeconds, milliseconds: @escaping @Sendable () -> Int) {
        self.read = read
        self.readMilliseconds = milliseconds
    }
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
