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
