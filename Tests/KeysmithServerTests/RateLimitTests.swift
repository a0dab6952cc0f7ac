import Foundation
import HTTPTypes
import KeysmithCore
import KeysmithTestSupport
import Synchronization
import Testing

@testable import KeysmithServer

/// A ledger in memory, as the database keeps it: grants never pass a window's limit.
final class MemoryRateLimitLedger: RateLimitLedger {
    let windows = Mutex<[RateLimitWindow: Int]>([:])
    let leases = Atomic(0)
    let failing = Atomic(false)

    struct Unavailable: Error {}

    func lease(_ window: RateLimitWindow, wanted: Int, limit: Int) async throws -> (granted: Int, total: Int) {
        if self.failing.load(ordering: .relaxed) { throw Unavailable() }
        self.leases.add(1, ordering: .relaxed)
        return self.windows.withLock { windows in
            let total = windows[window, default: 0]
            let granted = max(0, min(wanted, limit - total))
            windows[window] = total + granted
            return (granted, total + granted)
        }
    }

    func giveBack(_ window: RateLimitWindow, amount: Int) async throws {
        if self.failing.load(ordering: .relaxed) { throw Unavailable() }
        self.windows.withLock { $0[window] = max(0, $0[window, default: 0] - amount) }
    }

    func pruneRateLimitWindows(endedBefore time: UnixSeconds) async throws {}

    func total(_ window: RateLimitWindow) -> Int { self.windows.withLock { $0[window, default: 0] } }
}

@Suite("Rate limits")
struct RateLimitTests {
    static let project = ProjectID(rawValue: "proj_limited")

    static func demand(requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, requestsPerDay: Int? = nil, tokens: Int = 0)
        -> RateLimiter.Demand
    {
        RateLimiter.Demand(
            projectID: Self.project,
            model: "gemma-3",
            limits: RateLimitSettings(requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, requestsPerDay: requestsPerDay),
            tokens: tokens
        )
    }

    static func limiter(_ ledger: MemoryRateLimitLedger, _ clock: ManualClock, outage: RateLimitConfiguration.OutagePolicy = .refuse)
        -> RateLimiter
    {
        RateLimiter(
            configuration: RateLimitConfiguration(whenDatabaseUnavailable: outage),
            ledger: ledger,
            clock: clock.clock,
            logger: Harness.quietLogger
        )
    }

    static func admitted(_ verdict: RateLimiter.Verdict) -> RateLimiter.Ticket? {
        if case .admitted(let ticket) = verdict { return ticket }
        return nil
    }

    static func refusal(_ verdict: RateLimiter.Verdict) -> OpenAIError? {
        if case .refused(let error) = verdict { return error }
        return nil
    }

    @Test("Two replicas on one ledger together admit exactly the limit in a window, however the load is split")
    func replicasShareTheLimit() async throws {
        let ledger = MemoryRateLimitLedger()
        let clock = ManualClock(now: 1_750_000_020)
        let first = Self.limiter(ledger, clock)
        let second = Self.limiter(ledger, clock)
        let demand = Self.demand(requestsPerMinute: 600)
        // 80/20, concurrently: 1,000 requests for a limit of 600.
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<1000 {
                let limiter = index % 5 == 0 ? second : first
                group.addTask { Self.admitted(await limiter.admit(demand)) != nil }
            }
            var count = 0
            for await admitted in group where admitted { count += 1 }
            return count
        }
        let window = RateLimitWindow(subject: Self.project.rawValue, model: "gemma-3", measure: .requestsPerMinute, start: 1_750_000_020)
        #expect(admitted == 600)
        #expect(ledger.total(window) == 600)
        // Leases, not a statement a request: a tenth of the limit each, and a few that found the window spent.
        #expect(ledger.leases.load(ordering: .relaxed) < 60)

        // The next minute starts afresh.
        clock.advance(by: 60)
        #expect(Self.admitted(await first.admit(demand)) != nil)
    }

    @Test("A refusal is OpenAI's 429 with Retry-After and the x-ratelimit headers, which an admission carries too")
    func refusalShape() async throws {
        let clock = ManualClock(now: 1_750_000_040)
        let limiter = Self.limiter(MemoryRateLimitLedger(), clock)
        let demand = Self.demand(requestsPerMinute: 2)
        let first = try #require(Self.admitted(await limiter.admit(demand)))
        #expect(first.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "2")
        #expect(first.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == "1")
        #expect(first.headers[HTTPField.Name("x-ratelimit-reset-requests")!] == "40s")
        #expect(Self.admitted(await limiter.admit(demand)) != nil)
        let refused = try #require(Self.refusal(await limiter.admit(demand)))
        #expect(refused.status == .tooManyRequests)
        #expect(refused.type == "requests" && refused.code == "rate_limit_exceeded" && refused.param == nil)
        #expect(
            refused.message
                == "Rate limit reached for gemma-3 in project proj_limited on requests per min (RPM): Limit 2, Used 2, Requested 1. "
                + "Please try again in 40s."
        )
        #expect(refused.headers[.retryAfter] == "40")
        #expect(refused.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == "0")
    }

    @Test("Tokens are reserved at admission and settled with what the response reported")
    func tokens() async throws {
        let clock = ManualClock(now: 1_750_000_020)
        let ledger = MemoryRateLimitLedger()
        let limiter = Self.limiter(ledger, clock)
        // 1,000 tokens a minute; each request reserves 400.
        let demand = Self.demand(tokensPerMinute: 1000, tokens: 400)
        let first = try #require(Self.admitted(await limiter.admit(demand)))
        let second = try #require(Self.admitted(await limiter.admit(demand)))
        #expect(first.headers[HTTPField.Name("x-ratelimit-limit-tokens")!] == "1000")
        let refused = try #require(Self.refusal(await limiter.admit(demand)))
        #expect(refused.type == "tokens" && refused.message.contains("on tokens per min (TPM): Limit 1000, Used 800, Requested 400."))
        // Each used 100: 600 come back, room for one more of 400.
        limiter.settle(first, tokensUsed: 100)
        limiter.settle(second, tokensUsed: 100)
        #expect(Self.admitted(await limiter.admit(demand)) != nil)
        // A request that could never fit is told so.
        let tooLarge = try #require(Self.refusal(await limiter.admit(Self.demand(tokensPerMinute: 1000, tokens: 1001))))
        #expect(tooLarge.message.contains("Limit 1000") && tooLarge.message.contains("Requested 1001"))
    }

    @Test("The day's limit and the minute's both bind; the lowest wins")
    func perDay() async throws {
        let clock = ManualClock(now: 1_750_000_020)
        let limiter = Self.limiter(MemoryRateLimitLedger(), clock)
        let demand = Self.demand(requestsPerMinute: 2, requestsPerDay: 3)
        #expect(Self.admitted(await limiter.admit(demand)) != nil)
        #expect(Self.admitted(await limiter.admit(demand)) != nil)
        #expect(Self.refusal(await limiter.admit(demand))?.message.contains("(RPM)") == true)
        clock.advance(by: 60)
        #expect(Self.admitted(await limiter.admit(demand)) != nil)
        let refused = try #require(Self.refusal(await limiter.admit(demand)))
        #expect(refused.message.contains("requests per day (RPD): Limit 3, Used 3"))
    }

    @Test("An idle replica gives its unused lease back for the other to take")
    func giveBack() async throws {
        let ledger = MemoryRateLimitLedger()
        let clock = ManualClock(now: 1_750_000_020)
        let first = Self.limiter(ledger, clock)
        let second = Self.limiter(ledger, clock)
        let demand = Self.demand(requestsPerMinute: 100)
        // The first leases a tenth (10) and uses 1.
        #expect(Self.admitted(await first.admit(demand)) != nil)
        let window = RateLimitWindow(subject: Self.project.rawValue, model: "gemma-3", measure: .requestsPerMinute, start: 1_750_000_020)
        #expect(ledger.total(window) >= 10)
        clock.advance(by: 3)
        await first.sweep()
        #expect(ledger.total(window) == 1)
        // The rest is the second's to take: 99 in all.
        var admitted = 0
        for _ in 0..<120 where Self.admitted(await second.admit(demand)) != nil { admitted += 1 }
        #expect(admitted == 99)
    }

    @Test("With the database away, a replica admits from its lease, then refuses or admits as the operator chose")
    func outage() async throws {
        let clock = ManualClock(now: 1_750_000_020)
        for policy in [RateLimitConfiguration.OutagePolicy.refuse, .admit] {
            let ledger = MemoryRateLimitLedger()
            let limiter = Self.limiter(ledger, clock, outage: policy)
            let demand = Self.demand(requestsPerMinute: 100)
            // A first lease of 10.
            #expect(Self.admitted(await limiter.admit(demand)) != nil)
            ledger.failing.store(true, ordering: .relaxed)
            var admitted = 1
            for _ in 0..<20 where Self.admitted(await limiter.admit(demand)) != nil { admitted += 1 }
            switch policy {
            case .refuse:
                #expect(admitted == 10)
                let refused = try #require(Self.refusal(await limiter.admit(demand)))
                #expect(refused.status == .serviceUnavailable && refused.code == "rate_limits_unavailable")
            case .admit:
                #expect(admitted == 21)
            }
            ledger.failing.store(false, ordering: .relaxed)
            clock.advance(by: 2)
            #expect(Self.admitted(await limiter.admit(demand)) != nil)
        }
    }

    @Test("Durations are written as OpenAI's headers write them")
    func durations() {
        #expect(RateLimiter.duration(milliseconds: 20) == "20ms")
        #expect(RateLimiter.duration(milliseconds: 1500) == "1.5s")
        #expect(RateLimiter.duration(milliseconds: 360_000) == "6m0s")
        #expect(RateLimiter.duration(milliseconds: 3_723_000) == "1h2m3s")
        #expect(RateLimiter.duration(milliseconds: 59_999) == "59.999s")
    }
}

@Suite("Rate limits through the API and the check")
struct RateLimitAPITests {
    static let defaults = RateLimitConfiguration(
        models: [
            "gemma-3": RateLimitSettings(requestsPerMinute: 600, tokensPerMinute: 150_000),
            "llama-3": RateLimitSettings(requestsPerMinute: 60, tokensPerMinute: 10_000, requestsPerDay: 1000),
        ]
    )

    @Test("List and update answer the spec's shapes: the operator's defaults, a project's own values over them", arguments: TestEngine.available)
    func lifecycle(engine: TestEngine) async throws {
        try await Harness.run(engine, configure: { $0.rateLimits = RateLimitAPITests.defaults }) { app in
            let project = try await app.project()
            let path = "/projects/\(project)/rate_limits"
            let listed = try await app.get(path)
            #expect(listed.status == .ok)
            #expect(
                listed.text
                    == #"{"object":"list","data":[{"object":"project.rate_limit","id":"rl-gemma-3","model":"gemma-3","max_requests_per_1_minute":600,"max_tokens_per_1_minute":150000},{"object":"project.rate_limit","id":"rl-llama-3","model":"llama-3","max_requests_per_1_minute":60,"max_tokens_per_1_minute":10000,"max_requests_per_1_day":1000}],"first_id":"rl-gemma-3","last_id":"rl-llama-3","has_more":false}"#
            )

            let updated = try await app.post("\(path)/rl-gemma-3", #"{"max_requests_per_1_minute":30,"max_requests_per_1_day":500}"#)
            #expect(updated.status == .ok, "\(updated.text)")
            #expect(
                updated.text
                    == #"{"object":"project.rate_limit","id":"rl-gemma-3","model":"gemma-3","max_requests_per_1_minute":30,"max_tokens_per_1_minute":150000,"max_requests_per_1_day":500}"#
            )
            // Only what was posted changes; 0 lifts a limit, the default included.
            let lifted = try await app.post("\(path)/rl-gemma-3", #"{"max_tokens_per_1_minute":0}"#)
            #expect(lifted["max_requests_per_1_minute"] as? Int == 30 && lifted["max_tokens_per_1_minute"] as? Int == 0)
            #expect(lifted["max_requests_per_1_day"] as? Int == 500)
            // A model without defaults can be limited too, and is listed from then on.
            let own = try await app.post("\(path)/rl-meta-llama%2FLlama-3-8B", #"{"max_requests_per_1_minute":5}"#)
            #expect(own["id"] as? String == "rl-meta-llama/Llama-3-8B" && own["model"] as? String == "meta-llama/Llama-3-8B")
            let ids = try await app.get(path).data.compactMap { $0["id"] as? String }
            #expect(ids == ["rl-gemma-3", "rl-llama-3", "rl-meta-llama/Llama-3-8B"])
            // Another project keeps the defaults.
            let other = try await app.project("Other")
            #expect(try await app.get("/projects/\(other)/rate_limits").data.first?["max_requests_per_1_minute"] as? Int == 600)

            // Pages, both ways.
            let first = try await app.get("\(path)?limit=2")
            #expect(first["has_more"] as? Bool == true && first["last_id"] as? String == "rl-llama-3")
            let next = try await app.get("\(path)?limit=2&after=rl-llama-3")
            #expect(next.data.count == 1 && next["has_more"] as? Bool == false)
            let back = try await app.get("\(path)?limit=1&before=rl-llama-3")
            #expect(back.data.compactMap { $0["id"] as? String } == ["rl-gemma-3"] && back["has_more"] as? Bool == false)

            // Audited as OpenAI's rate_limit.updated, with what was asked.
            let events = try await app.get("/audit_logs?event_types[]=rate_limit.updated").data
            #expect(events.count == 3)
            let details = events.last?["rate_limit.updated"] as? [String: Any]
            #expect(details?["id"] as? String == "rl-gemma-3")
            #expect((details?["changes_requested"] as? [String: Any])?["max_requests_per_1_minute"] as? Int == 30)
        }
    }

    @Test("Bad input is a 400 naming the field and changes nothing; unknown projects and ids are 404s", arguments: TestEngine.available)
    func validation(engine: TestEngine) async throws {
        try await Harness.run(engine, configure: { $0.rateLimits = RateLimitAPITests.defaults }) { app in
            let project = try await app.project()
            let path = "/projects/\(project)/rate_limits"
            let before = try await app.get(path).text
            try await app.post("\(path)/rl-gemma-3", #"{"max_requests_per_1_minute":-1}"#)
                .expectError(.badRequest, param: "max_requests_per_1_minute")
            try await app.post("\(path)/rl-gemma-3", #"{"max_tokens_per_1_minute":"10"}"#).expectError(.badRequest, param: "max_tokens_per_1_minute")
            try await app.post("\(path)/rl-gemma-3", #"{"max_requests_per_1_day":1.5}"#).expectError(.badRequest, param: "max_requests_per_1_day")
            try await app.post("\(path)/rl-gemma-3", #"{"max_images_per_1_minute":10}"#).expectError(.badRequest, param: "max_images_per_1_minute")
            try await app.post("\(path)/rl-gemma-3", "[]").expectError(.badRequest, code: "invalid_json")
            try await app.post("\(path)/gemma-3", #"{"max_requests_per_1_minute":1}"#).expectError(.notFound, param: "rate_limit_id")
            try await app.get("\(path)?limit=0").expectError(.badRequest, param: "limit")
            try await app.get("\(path)?limit=101").expectError(.badRequest, param: "limit")
            try await app.get("\(path)?after=a&before=b").expectError(.badRequest, param: "before")
            #expect(try await app.get(path).text == before)
            try await app.get("/projects/proj_missing/rate_limits").expectError(.notFound)
            try await app.post("/projects/proj_missing/rate_limits/rl-gemma-3", #"{"max_requests_per_1_minute":1}"#).expectError(.notFound)
            _ = try await app.post("/projects/\(project)/archive", nil)
            try await app.post("\(path)/rl-gemma-3", #"{"max_requests_per_1_minute":1}"#).expectError(.badRequest, code: "project_archived")
        }
    }

    @Test(
        "A check counts requests against the model's limit it reads from the forwarded body, with the headers",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func checks(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let project = try await app.project()
            let account = try await app.serviceAccount(projectID: project)
            let chat: HTTPFields = [.originalMethod: "POST", .originalURI: "/v1/chat/completions"]
            func check(_ headers: HTTPFields, body: String? = nil) async throws -> Reply {
                try await app.request(.post, "/v1/auth/check", key: account.value, body: body, headers: headers)
            }
            // No limits: nothing is counted, a request without a model included.
            #expect(try await check([:]).status == .ok)

            _ = try await app.post("/projects/\(project)/rate_limits/rl-gemma-3", #"{"max_requests_per_1_minute":3}"#)
            for remaining in ["2", "1", "0"] {
                let admitted = try await check(chat, body: #"{"model":"gemma-3"}"#)
                #expect(admitted.status == .ok)
                #expect(admitted.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "3")
                #expect(admitted.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == remaining)
            }
            let refused = try await check(chat, body: #"{"model":"gemma-3"}"#)
            refused.expectError(.tooManyRequests, code: "rate_limit_exceeded")
            #expect(refused.error["type"] as? String == "requests")
            #expect(refused.headers[.retryAfter] != nil)
            // A dot segment does not make a completion a read of the model list.
            let dotted: HTTPFields = [.originalMethod: "POST", .originalURI: "/v1/models/../chat/completions"]
            try await check(dotted, body: #"{"model":"gemma-3"}"#).expectError(.tooManyRequests, code: "rate_limit_exceeded")
            // Another model is not limited; nor is reading the model list.
            #expect(try await check(chat, body: #"{"model":"o3"}"#).status == .ok)
            #expect(try await check([.originalMethod: "GET", .originalURI: "/v1/models/gemma-3"]).status == .ok)
            // A request whose model cannot be told might be gemma-3's: refused.
            try await check(chat).expectError(.forbidden, param: "model", code: "model_required")
            try await check([:]).expectError(.forbidden, param: "model", code: "model_required")
            // A request without a body uses no model.
            #expect(try await check([.originalMethod: "GET", .originalURI: "/v1/files"]).status == .ok)

            // The next minute starts afresh.
            app.clock.advance(by: 60)
            #expect(try await check(chat, body: #"{"model":"gemma-3"}"#).status == .ok)
            // Lifted: admitted without counting.
            _ = try await app.post("/projects/\(project)/rate_limits/rl-gemma-3", #"{"max_requests_per_1_minute":0}"#)
            for _ in 0..<5 {
                let reply = try await check(chat, body: #"{"model":"gemma-3"}"#)
                #expect(reply.status == .ok && reply.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == nil)
            }
        }
    }

    @Test(
        "A key's own limits: set through the extension, counted over every model beside the project's; the lowest binds",
        arguments: TestEngine.available,
        Transport.checkPaths
    )
    func keyLimits(engine: TestEngine, transport: Transport) async throws {
        try await Harness.run(engine, transport: transport) { app in
            let project = try await app.project()
            let account = try await app.serviceAccount(projectID: project)
            let other = try await app.serviceAccount(projectID: project, name: "other")
            let path = "/projects/\(project)/api_keys/\(account.keyID)/rate_limits"
            let none = try await app.get(path)
            #expect(
                none.text
                    == #"{"object":"organization.project.api_key.rate_limits","api_key_id":"\#(account.keyID)","max_requests_per_1_minute":0,"max_tokens_per_1_minute":0,"max_concurrent_requests":0}"#
            )
            try await app.post(path, #"{"max_requests_per_1_minute":-1}"#).expectError(.badRequest, param: "max_requests_per_1_minute")
            try await app.post(path, #"{"max_concurrent_requests":"2"}"#).expectError(.badRequest, param: "max_concurrent_requests")
            try await app.get("/projects/\(try await app.project("Elsewhere"))/api_keys/\(account.keyID)/rate_limits").expectError(.notFound)
            #expect(try await app.get(path).text == none.text)

            let set = try await app.post(path, #"{"max_requests_per_1_minute":2}"#)
            #expect(set["max_requests_per_1_minute"] as? Int == 2 && set["max_concurrent_requests"] as? Int == 0)
            let chat: HTTPFields = [.originalMethod: "POST", .originalURI: "/v1/chat/completions"]
            func check(_ key: String, _ model: String) async throws -> Reply {
                try await app.request(.post, "/v1/auth/check", key: key, body: #"{"model":"\#(model)"}"#, headers: chat)
            }
            // Two a minute, whatever the model; the project's other key is not touched.
            #expect(try await check(account.value, "gemma-3").status == .ok)
            let second = try await check(account.value, "o3")
            #expect(second.status == .ok && second.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] == "0")
            let refused = try await check(account.value, "qwen")
            refused.expectError(.tooManyRequests, code: "rate_limit_exceeded")
            #expect((refused.error["message"] as? String)?.hasPrefix("Rate limit reached for API key \(account.keyID) in project \(project)") == true)
            #expect(try await check(other.value, "gemma-3").status == .ok)
            // Counted without a model too: a check as nginx sends it, with no body, is the key's third this minute.
            try await app.request(.post, "/v1/auth/check", key: account.value, headers: chat).expectError(
                .tooManyRequests,
                code: "rate_limit_exceeded"
            )

            // Beside a project limit: the lower binds, and the headers show it.
            app.clock.advance(by: 60)
            _ = try await app.post(path, #"{"max_requests_per_1_minute":5}"#)
            _ = try await app.post("/projects/\(project)/rate_limits/rl-gemma-3", #"{"max_requests_per_1_minute":1}"#)
            let first = try await check(account.value, "gemma-3")
            #expect(first.status == .ok && first.headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "1")
            #expect((try await check(account.value, "gemma-3").error["message"] as? String)?.contains("gemma-3 in project") == true)
            #expect(try await check(account.value, "o3").headers[HTTPField.Name("x-ratelimit-limit-requests")!] == "5")
            // Lifted: no limit, no headers.
            _ = try await app.post(path, #"{"max_requests_per_1_minute":0}"#)
            #expect(try await check(account.value, "o3").headers[HTTPField.Name("x-ratelimit-limit-requests")!] == nil)
        }
    }
}
