import HTTPTypes
import KeysmithCore
import Logging
import ServiceLifecycle
import Synchronization

/// Projects' rate limits, enforced from memory and exact across replicas (docs/limits.md).
///
/// Each limit counts in fixed windows aligned to the clock (a UTC minute, a UTC day). The database holds, for each
/// window, how much of its allowance all replicas together have taken (``RateLimitLedger``), and never lets that pass
/// the limit. A replica admits a request only from what it has leased: the first request of a window, or one that
/// finds the lease short, waits for a lease (one statement); one that finds it running low asks for the next in the
/// background. So replicas together never admit past a limit, and the database sees one statement a lease, not one
/// a request. A lease is a tenth of the limit (at least what the request needs): a replica that stops getting
/// traffic holds at most that much unused until it gives it back, after ``idleBeforeGiveBack``, for the others to take.
///
/// Tokens are counted at admission as an estimate (the prompt's size and the answer's maximum) and settled with the
/// usage the response reports: what was not used goes back to the lease, what was used past it is taken from the next.
final class RateLimiter: Sendable {
    /// What one request asks of the limits it falls under: its project's for its model, and its key's own.
    struct Demand: Sendable {
        /// One set of limits and what they count: a project's for a model, or a key's for every model (`*`).
        struct Subject: Sendable {
            var id: String
            var model: String
            var limits: RateLimitSettings
            /// How a refusal names it: `gemma-3 in project proj_…`, `API key key_… in project proj_…`.
            var description: String

            static func project(_ projectID: ProjectID, model: String, limits: RateLimitSettings) -> Subject {
                Subject(id: projectID.rawValue, model: model, limits: limits, description: "\(model) in project \(projectID.rawValue)")
            }

            static func key(_ keyID: APIKeyID, projectID: ProjectID, limits: APIKeyRateLimits) -> Subject {
                Subject(
                    id: keyID.rawValue,
                    model: "*",
                    limits: RateLimitSettings(requestsPerMinute: limits.requestsPerMinute, tokensPerMinute: limits.tokensPerMinute),
                    description: "API key \(keyID.rawValue) in project \(projectID.rawValue)"
                )
            }
        }

        var subjects: [Subject]
        /// The tokens to reserve (0 for the check, which does not know them).
        var tokens: Int

        init(subjects: [Subject], tokens: Int) {
            self.subjects = subjects
            self.tokens = tokens
        }

        /// A project's limits for a model alone.
        init(projectID: ProjectID, model: String, limits: RateLimitSettings, tokens: Int) {
            self.init(subjects: [.project(projectID, model: model, limits: limits)], tokens: tokens)
        }
    }

    /// An admitted request's reservation, to settle its tokens and to describe its limits in the answer's headers.
    struct Ticket: Sendable {
        var demand: Demand
        /// The window each subject's tokens were reserved in, by subject.
        var tokenWindows: [String: UnixSeconds] = [:]
        var headers: HTTPFields
    }

    enum Verdict: Sendable {
        case admitted(Ticket)
        case refused(OpenAIError)
    }

    private struct BucketKey: Hashable {
        var subject: String
        var model: String
        var measure: RateLimitMeasure
    }

    /// This replica's part of one window of one limit.
    private struct Bucket {
        var window: RateLimitWindow
        var limit: Int
        /// Leased and not yet used; below 0 when settled tokens took more than was reserved.
        var available = 0
        /// What the window has granted in all (every replica), as of the last lease.
        var total = 0
        /// The last lease found the window spent: refuse what the lease cannot cover until ``recheckAt``.
        var spent = false
        var recheckAt = 0
        /// The database could not be asked, until then.
        var failedUntil = 0
        var isLeasing = false
        var lastUse = 0
    }

    private struct State {
        var buckets: [BucketKey: Bucket] = [:]
        var waiters: [BucketKey: [CheckedContinuation<Void, Never>]] = [:]
    }

    let configuration: RateLimitConfiguration
    private let ledger: any RateLimitLedger
    private let clock: KeysmithClock
    private let logger: Logger
    private let state = Mutex(State())

    /// A lease not used for this long is given back.
    static let idleBeforeGiveBack = 2_000
    /// A window found spent is asked again after this long (another replica may have given some back).
    static let spentRecheck = 1_000
    /// After a failed lease, the database is asked again after this long.
    static let failureBackoff = 1_000

    init(configuration: RateLimitConfiguration, ledger: any RateLimitLedger, clock: KeysmithClock, logger: Logger) {
        self.configuration = configuration
        self.ledger = ledger
        self.clock = clock
        self.logger = logger
    }

    /// The limits of `model` in force for `project`.
    func limits(project: ProjectState, model: String) -> RateLimitSettings {
        self.configuration.limits(model: model, settings: project.rateLimitSettings)
    }

    func limitsSomeModel(project: ProjectState) -> Bool {
        self.configuration.limitsSomeModel(settings: project.rateLimitSettings)
    }

    /// What a request of `key` for `model` asks of the limits: its project's for the model, its key's own; nil when
    /// no limit applies; the refusal when the project limits some model and the request does not say which it uses.
    func demand(_ key: IndexedKey, model: ModelAccess.RequestModel, tokens: Int) -> Result<Demand?, OpenAIError> {
        var subjects: [Demand.Subject] = []
        if let own = key.rateLimits?.limits, own.requestsPerMinute != nil || own.tokensPerMinute != nil {
            subjects.append(.key(key.id, projectID: key.project.id, limits: own))
        }
        if self.limitsSomeModel(project: key.project) {
            switch model {
            case .unknown:
                return .failure(ModelAccess.limitedModelUnknown(key.project.id))
            case .none:
                break
            case .named(let name):
                let limits = self.limits(project: key.project, model: name)
                if !limits.isUnlimited { subjects.append(.project(key.project.id, model: name, limits: limits)) }
            }
        }
        return .success(subjects.isEmpty ? nil : Demand(subjects: subjects, tokens: tokens))
    }

    // MARK: Concurrency

    /// A request in flight, counted against its key's `max_concurrent_requests` on this replica until it is
    /// released (when the last reference to it goes: the answer's end, however it ends).
    final class Slot: Sendable {
        private let release: @Sendable () -> Void

        fileprivate init(release: @escaping @Sendable () -> Void) {
            self.release = release
        }

        deinit { self.release() }
    }

    private let inFlight = Mutex<[APIKeyID: Int]>([:])

    /// A slot for one more request of `key`, or the 429 when it has `limit` in flight already.
    func occupy(_ key: IndexedKey, limit: Int) -> Result<Slot, OpenAIError> {
        let taken = self.inFlight.withLock { counts -> Bool in
            let count = counts[key.id, default: 0]
            guard count < limit else { return false }
            counts[key.id] = count + 1
            return true
        }
        guard taken else {
            return .failure(
                OpenAIError(
                    status: .tooManyRequests,
                    message: "Rate limit reached for API key \(key.id.rawValue) in project \(key.project.id.rawValue) on concurrent "
                        + "requests: Limit \(limit), Used \(limit), Requested 1. Please try again when a request has finished.",
                    type: "requests",
                    code: "rate_limit_exceeded",
                    headers: [.retryAfter: "1"]
                )
            )
        }
        let id = key.id
        return .success(
            Slot { [self] in
                self.inFlight.withLock { counts in
                    let count = (counts[id] ?? 1) - 1
                    counts[id] = count > 0 ? count : nil
                }
            }
        )
    }

    // MARK: Admission

    private enum Attempt {
        case done(Verdict)
        /// These buckets need a lease first.
        case lease([BucketKey])
    }

    /// Admits or refuses from what is leased; nil when a lease must be asked for first (``admit(_:)`` waits for it).
    func admitFromLease(_ demand: Demand) -> Verdict? {
        if case .done(let verdict) = self.attempt(demand, now: self.clock.nowMilliseconds()) { return verdict }
        return nil
    }

    /// Admits or refuses `demand`, waiting for leases where the ones held do not cover it.
    func admit(_ demand: Demand) async -> Verdict {
        while true {
            let now = self.clock.nowMilliseconds()
            switch self.attempt(demand, now: now) {
            case .done(let verdict):
                return verdict
            case .lease(let keys):
                for key in keys {
                    await self.lease(key, needing: self.need(demand, key.measure), now: now)
                }
            }
        }
    }

    private func need(_ demand: Demand, _ measure: RateLimitMeasure) -> Int {
        measure == .tokensPerMinute ? max(demand.tokens, 1) : 1
    }

    private func limit(_ limits: RateLimitSettings, _ measure: RateLimitMeasure) -> Int? {
        switch measure {
        case .requestsPerMinute: limits.requestsPerMinute
        case .tokensPerMinute: limits.tokensPerMinute
        case .requestsPerDay: limits.requestsPerDay
        }
    }

    private func attempt(_ demand: Demand, now: Int) -> Attempt {
        let seconds = now / 1000
        var refillKeys: [(BucketKey, Int)] = []
        let attempt: Attempt = self.state.withLock { state in
            var keys: [(key: BucketKey, subject: Demand.Subject, limit: Int)] = []
            for subject in demand.subjects {
                for measure in RateLimitMeasure.allCases {
                    guard let limit = self.limit(subject.limits, measure), limit > 0 else { continue }
                    // A token demand is counted only where tokens are known (the gateway's).
                    if measure == .tokensPerMinute && demand.tokens == 0 { continue }
                    let key = BucketKey(subject: subject.id, model: subject.model, measure: measure)
                    let start = measure.windowStart(containing: seconds)
                    if state.buckets[key]?.window.start != start {
                        state.buckets[key] = Bucket(
                            window: RateLimitWindow(subject: subject.id, model: subject.model, measure: measure, start: start),
                            limit: limit
                        )
                    }
                    if state.buckets[key]!.limit != limit {
                        // Changed in the window: a lower limit leaves this replica only what the window has left
                        // under it; a higher one may lease again at once.
                        var bucket = state.buckets[key]!
                        if limit < bucket.limit {
                            bucket.available = max(0, min(bucket.available, limit - (bucket.total - bucket.available)))
                        }
                        bucket.limit = limit
                        bucket.spent = false
                        state.buckets[key] = bucket
                    }
                    keys.append((key, subject, limit))
                }
            }
            var lacking: [BucketKey] = []
            for (key, subject, limit) in keys {
                let bucket = state.buckets[key]!
                let need = self.need(demand, key.measure)
                if bucket.available >= need { continue }
                if need > limit {
                    return .done(.refused(self.refusal(demand, subject, key.measure, bucket: bucket, requested: need, now: now, state: state)))
                }
                if bucket.failedUntil > now {
                    switch self.configuration.whenDatabaseUnavailable {
                    case .refuse: return .done(.refused(Self.unavailable))
                    case .admit: continue
                    }
                }
                if bucket.spent && bucket.recheckAt > now {
                    return .done(.refused(self.refusal(demand, subject, key.measure, bucket: bucket, requested: need, now: now, state: state)))
                }
                lacking.append(key)
            }
            if !lacking.isEmpty { return .lease(lacking) }
            var ticket = Ticket(demand: demand, headers: [:])
            for (key, _, _) in keys {
                let need = self.need(demand, key.measure)
                var bucket = state.buckets[key]!
                // Admitted uncounted while the database is away (when the operator said so) takes nothing.
                if bucket.available >= need || bucket.failedUntil <= now {
                    bucket.available -= need
                    if key.measure == .tokensPerMinute { ticket.tokenWindows[key.subject] = bucket.window.start }
                }
                bucket.lastUse = now
                if !bucket.spent, !bucket.isLeasing, bucket.available * 2 < self.chunk(bucket.limit, need: need) {
                    refillKeys.append((key, need))
                }
                state.buckets[key] = bucket
            }
            ticket.headers = self.headers(demand, state: state, now: now)
            return .done(.admitted(ticket))
        }
        for (key, need) in refillKeys {
            Task { await self.lease(key, needing: need, now: now) }
        }
        return attempt
    }

    /// How much a lease asks for: a tenth of the limit, at least what the request needs.
    private func chunk(_ limit: Int, need: Int) -> Int { max(need, max(1, limit / 10)) }

    /// Takes a lease for `key`'s current window, or waits for the one already being taken.
    private func lease(_ key: BucketKey, needing need: Int, now: Int) async {
        enum Step {
            case wait
            case ask(RateLimitWindow, wanted: Int, limit: Int)
            case none
        }
        let step: Step = self.state.withLock { state in
            guard var bucket = state.buckets[key] else { return .none }
            if bucket.isLeasing { return .wait }
            if bucket.failedUntil > now || (bucket.spent && bucket.recheckAt > now) { return .none }
            bucket.isLeasing = true
            state.buckets[key] = bucket
            // A debt (tokens used past their reservation) is leased back first.
            let wanted = self.chunk(bucket.limit, need: need) + max(0, -bucket.available)
            return .ask(bucket.window, wanted: wanted, limit: bucket.limit)
        }
        switch step {
        case .none:
            return
        case .wait:
            await withCheckedContinuation { continuation in
                let stillLeasing = self.state.withLock { state in
                    guard state.buckets[key]?.isLeasing == true else { return false }
                    state.waiters[key, default: []].append(continuation)
                    return true
                }
                if !stillLeasing { continuation.resume() }
            }
        case .ask(let window, let wanted, let limit):
            let result: Result<(granted: Int, total: Int), any Error>
            do {
                result = .success(try await self.ledger.lease(window, wanted: wanted, limit: limit))
            } catch {
                result = .failure(error)
            }
            let finished = self.clock.nowMilliseconds()
            var giveBack = 0
            let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
                let waiting = state.waiters.removeValue(forKey: key) ?? []
                guard var bucket = state.buckets[key] else { return waiting }
                bucket.isLeasing = false
                switch result {
                case .success(let lease):
                    if bucket.window == window {
                        bucket.available += lease.granted
                        bucket.total = lease.total
                        bucket.failedUntil = 0
                        if lease.total >= limit {
                            bucket.spent = true
                            bucket.recheckAt = finished + Self.spentRecheck
                        } else {
                            bucket.spent = false
                        }
                    } else {
                        // The window ended while the lease was asked for: nothing to use it for.
                        giveBack = lease.granted
                    }
                case .failure:
                    bucket.failedUntil = finished + Self.failureBackoff
                }
                state.buckets[key] = bucket
                return waiting
            }
            if case .failure(let error) = result {
                self.logger.warning(
                    "A rate limit's lease could not be taken from the database",
                    metadata: ["subject": "\(key.subject)", "model": "\(key.model)", "error": "\(error)"]
                )
            }
            if giveBack > 0 { try? await self.ledger.giveBack(window, amount: giveBack) }
            for waiter in waiters { waiter.resume() }
        }
    }

    // MARK: Settling

    /// Settles an admitted request's tokens with what its response reported (nil: unknown, so the reservation
    /// stands).
    func settle(_ ticket: Ticket, tokensUsed: Int?) {
        guard let used = tokensUsed, !ticket.tokenWindows.isEmpty else { return }
        self.state.withLock { state in
            for subject in ticket.demand.subjects {
                guard let start = ticket.tokenWindows[subject.id] else { continue }
                let key = BucketKey(subject: subject.id, model: subject.model, measure: .tokensPerMinute)
                // A window that has ended keeps what it counted.
                guard var bucket = state.buckets[key], bucket.window.start == start else { continue }
                bucket.available += ticket.demand.tokens - used
                state.buckets[key] = bucket
            }
        }
    }

    // MARK: Giving back

    /// Gives back the leases of windows not used for ``idleBeforeGiveBack``, and forgets those of ended windows.
    func sweep() async {
        let now = self.clock.nowMilliseconds()
        let seconds = now / 1000
        let returns: [(RateLimitWindow, Int)] = self.state.withLock { state in
            var returns: [(RateLimitWindow, Int)] = []
            for (key, var bucket) in state.buckets {
                if bucket.window.start + key.measure.windowSeconds <= seconds, !bucket.isLeasing {
                    state.buckets[key] = nil
                    continue
                }
                if bucket.available > 0, !bucket.isLeasing, now - bucket.lastUse >= Self.idleBeforeGiveBack {
                    returns.append((bucket.window, bucket.available))
                    bucket.available = 0
                    bucket.spent = false
                    state.buckets[key] = bucket
                }
            }
            return returns
        }
        for (window, amount) in returns {
            do {
                try await self.ledger.giveBack(window, amount: amount)
            } catch {
                self.logger.warning("A rate limit's unused lease could not be given back", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Gives back every lease held, at shutdown.
    func giveBackAll() async {
        let returns: [(RateLimitWindow, Int)] = self.state.withLock { state in
            var returns: [(RateLimitWindow, Int)] = []
            for (key, var bucket) in state.buckets where bucket.available > 0 {
                returns.append((bucket.window, bucket.available))
                bucket.available = 0
                state.buckets[key] = bucket
            }
            return returns
        }
        for (window, amount) in returns { try? await self.ledger.giveBack(window, amount: amount) }
    }

    // MARK: Answers

    static let unavailable = OpenAIError(
        status: .serviceUnavailable,
        message: "Rate limits cannot be checked: the database is unavailable. Try again shortly.",
        type: "server_error",
        code: "rate_limits_unavailable",
        headers: [.retryAfter: "1"]
    )

    private func refusal(
        _ demand: Demand,
        _ subject: Demand.Subject,
        _ measure: RateLimitMeasure,
        bucket: Bucket,
        requested: Int,
        now: Int,
        state: State
    ) -> OpenAIError {
        let windowEnd = (bucket.window.start + measure.windowSeconds) * 1000
        let wait = max(0, windowEnd - now)
        let used = min(bucket.limit, max(0, bucket.total - max(0, bucket.available)))
        let name: String
        switch measure {
        case .requestsPerMinute: name = "requests per min (RPM)"
        case .tokensPerMinute: name = "tokens per min (TPM)"
        case .requestsPerDay: name = "requests per day (RPD)"
        }
        var headers = self.headers(demand, state: state, now: now)
        headers[.retryAfter] = String((wait + 999) / 1000)
        return OpenAIError(
            status: .tooManyRequests,
            message: "Rate limit reached for \(subject.description) on \(name): "
                + "Limit \(bucket.limit), Used \(used), Requested \(requested). Please try again in \(Self.duration(milliseconds: wait)).",
            type: measure == .tokensPerMinute ? "tokens" : "requests",
            code: "rate_limit_exceeded",
            headers: headers
        )
    }

    /// OpenAI's `x-ratelimit-*` headers, of the limit that binds (least remaining) among the request's subjects:
    /// requests by the per-minute limit (the per-day one when a subject has only it), tokens by the per-minute one.
    /// Remaining is what the window has left as this replica knows it.
    private func headers(_ demand: Demand, state: State, now: Int) -> HTTPFields {
        var headers = HTTPFields()
        func binding(_ measures: (Demand.Subject) -> RateLimitMeasure?) -> (limit: Int, remaining: Int, reset: Int)? {
            var best: (limit: Int, remaining: Int, reset: Int)?
            for subject in demand.subjects {
                guard let measure = measures(subject) else { continue }
                let key = BucketKey(subject: subject.id, model: subject.model, measure: measure)
                guard let bucket = state.buckets[key] else { continue }
                let remaining = min(bucket.limit, max(0, bucket.limit - bucket.total + max(0, bucket.available)))
                let reset = max(0, (bucket.window.start + measure.windowSeconds) * 1000 - now)
                if best == nil || remaining < best!.remaining { best = (bucket.limit, remaining, reset) }
            }
            return best
        }
        func describe(
            _ names: (limit: HTTPField.Name, remaining: HTTPField.Name, reset: HTTPField.Name),
            _ figures: (limit: Int, remaining: Int, reset: Int)?
        ) {
            guard let figures else { return }
            headers.append(HTTPField(name: names.limit, value: String(figures.limit)))
            headers.append(HTTPField(name: names.remaining, value: String(figures.remaining)))
            headers.append(HTTPField(name: names.reset, value: Self.duration(milliseconds: figures.reset)))
        }
        describe(
            Self.requestHeaders,
            binding { subject in
                subject.limits.requestsPerMinute != nil ? .requestsPerMinute : subject.limits.requestsPerDay != nil ? .requestsPerDay : nil
            }
        )
        if demand.tokens > 0 {
            describe(Self.tokenHeaders, binding { $0.limits.tokensPerMinute != nil ? .tokensPerMinute : nil })
        }
        return headers
    }

    static let requestHeaders = (
        limit: HTTPField.Name("x-ratelimit-limit-requests")!,
        remaining: HTTPField.Name("x-ratelimit-remaining-requests")!,
        reset: HTTPField.Name("x-ratelimit-reset-requests")!
    )
    static let tokenHeaders = (
        limit: HTTPField.Name("x-ratelimit-limit-tokens")!,
        remaining: HTTPField.Name("x-ratelimit-remaining-tokens")!,
        reset: HTTPField.Name("x-ratelimit-reset-tokens")!
    )

    /// A duration as OpenAI's headers write it (Go's style): `20ms`, `1.5s`, `6m0s`, `1h2m3s`.
    static func duration(milliseconds: Int) -> String {
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        let hours = milliseconds / 3_600_000
        let minutes = (milliseconds / 60_000) % 60
        let wholeSeconds = (milliseconds / 1000) % 60
        let fraction = milliseconds % 1000
        var seconds = String(wholeSeconds)
        if fraction > 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: 3 - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            seconds += "." + digits
        }
        if hours > 0 { return "\(hours)h\(minutes)m\(seconds)s" }
        if minutes > 0 { return "\(minutes)m\(seconds)s" }
        return "\(seconds)s"
    }
}

/// Gives back idle leases every second, forgets old windows in the database every minute, and gives back what is
/// held at shutdown.
struct RateLimiterService: Service {
    let limiter: RateLimiter
    let ledger: any RateLimitLedger
    let clock: KeysmithClock

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var ticks = 0
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    break
                }
                await self.limiter.sweep()
                ticks += 1
                if ticks % 60 == 1 {
                    try? await self.ledger.pruneRateLimitWindows(endedBefore: self.clock.now())
                }
            }
        }
        await self.limiter.giveBackAll()
    }
}
