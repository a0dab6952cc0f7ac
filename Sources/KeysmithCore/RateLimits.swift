/// A model's rate limits, as OpenAI's `project.rate_limit` names them. What a value means depends on where it sits:
/// in the operator's defaults and in the limits in force, nil (or 0) is no limit; in a project's stored settings,
/// nil means "the operator's default" and 0 means "no limit, whatever the default".
public struct RateLimitSettings: Sendable, Equatable, Hashable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var requestsPerDay: Int?

    public init(requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, requestsPerDay: Int? = nil) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.requestsPerDay = requestsPerDay
    }

    /// A project's settings applied over the operator's `defaults`: each value set here wins, and 0 (no limit) is
    /// kept as nil.
    public func over(_ defaults: RateLimitSettings) -> RateLimitSettings {
        func pick(_ own: Int?, _ fallback: Int?) -> Int? {
            let value = own ?? fallback
            return value == 0 ? nil : value
        }
        return RateLimitSettings(
            requestsPerMinute: pick(self.requestsPerMinute, defaults.requestsPerMinute),
            tokensPerMinute: pick(self.tokensPerMinute, defaults.tokensPerMinute),
            requestsPerDay: pick(self.requestsPerDay, defaults.requestsPerDay)
        )
    }

    /// Whether nothing is limited (for limits in force).
    public var isUnlimited: Bool { self.requestsPerMinute == nil && self.tokensPerMinute == nil && self.requestsPerDay == nil }

    /// The largest value a limit may take: well inside both engines' 64-bit integers and JSON's exact integers.
    public static let maximumValue = 1_000_000_000_000
}

/// A key's own limits (a Keysmith extension), applied beside its project's for the model: the lowest binds. nil is
/// no limit (0 in the API).
public struct APIKeyRateLimits: Sendable, Equatable, Hashable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    /// Requests of the key's in flight at once through the gateway, on each replica.
    public var concurrentRequests: Int?

    public init(requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, concurrentRequests: Int? = nil) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.concurrentRequests = concurrentRequests
    }

    /// 0 read as no limit.
    public var normalized: APIKeyRateLimits {
        func none(_ value: Int?) -> Int? { value == 0 ? nil : value }
        return APIKeyRateLimits(
            requestsPerMinute: none(self.requestsPerMinute),
            tokensPerMinute: none(self.tokensPerMinute),
            concurrentRequests: none(self.concurrentRequests)
        )
    }

    public var isUnlimited: Bool { self.requestsPerMinute == nil && self.tokensPerMinute == nil && self.concurrentRequests == nil }
}

/// What Keysmith counts against a limit, each in a window of its own: requests per minute and per day, tokens per
/// minute.
public enum RateLimitMeasure: String, Sendable, CaseIterable, Hashable {
    case requestsPerMinute = "rpm"
    case tokensPerMinute = "tpm"
    case requestsPerDay = "rpd"

    /// The window's length in seconds: windows are aligned to the Unix epoch (whole UTC minutes and days).
    public var windowSeconds: Int { self == .requestsPerDay ? 86_400 : 60 }

    /// The start of the window `time` falls in.
    public func windowStart(containing time: UnixSeconds) -> UnixSeconds {
        time - ((time % self.windowSeconds) + self.windowSeconds) % self.windowSeconds
    }
}

/// One window of one limit, cluster-wide: what every replica leases its allowance from. The subject is a project
/// (its limits are per model) or a key (its own, over every model: model `*`).
public struct RateLimitWindow: Sendable, Hashable {
    public var subject: String
    public var model: String
    public var measure: RateLimitMeasure
    public var start: UnixSeconds

    public init(subject: String, model: String, measure: RateLimitMeasure, start: UnixSeconds) {
        self.subject = subject
        self.model = model
        self.measure = measure
        self.start = start
    }
}

/// The database's count of what every replica has taken from each window: a replica admits only from what it
/// leased, so together they never admit past a limit, and the database is asked once a lease, not once a request.
public protocol RateLimitLedger: Sendable {
    /// Takes up to `wanted` of `window`'s allowance, never past `limit` in all: returns what was granted (0 when the
    /// window is spent) and what the window has granted in all, this grant included.
    func lease(_ window: RateLimitWindow, wanted: Int, limit: Int) async throws -> (granted: Int, total: Int)
    /// Gives back `amount` leased from `window` and not used, for another replica to take.
    func giveBack(_ window: RateLimitWindow, amount: Int) async throws
    /// Forgets windows that ended before `time`.
    func pruneRateLimitWindows(endedBefore time: UnixSeconds) async throws
}
