import KeysmithCore
import Synchronization

/// A signed-in browser: which admin key it signed in with, and its CSRF token.
struct DashboardSession: Sendable {
    let token: String
    let organizationID: OrganizationID
    let adminKeyID: AdminKeyID
    /// Sent back in every form and compared with this; a page of another site cannot read it.
    let csrfToken: String
    var lastSeen: UnixSeconds
}

/// The dashboard's sessions, in this process's memory. A session ends after `idleTimeout` seconds without a
/// request, at sign-out, and as soon as its admin key is gone (checked on every request, by ``Dashboard``).
final class DashboardSessions: Sendable {
    /// More sessions than this and the least recently used go first: a flood of sign-ins cannot exhaust memory.
    static let capacity = 10_000

    let idleTimeout: Int
    private let clock: KeysmithClock
    private let sessions = Mutex<[String: DashboardSession]>([:])

    init(idleTimeout: Int, clock: KeysmithClock) {
        self.idleTimeout = idleTimeout
        self.clock = clock
    }

    func start(organizationID: OrganizationID, adminKeyID: AdminKeyID) -> DashboardSession {
        let session = DashboardSession(
            token: Self.randomToken(),
            organizationID: organizationID,
            adminKeyID: adminKeyID,
            csrfToken: Self.randomToken(),
            lastSeen: self.clock.now()
        )
        self.sessions.withLock { sessions in
            if sessions.count >= Self.capacity {
                let now = self.clock.now()
                sessions = sessions.filter { now - $0.value.lastSeen < self.idleTimeout }
                if sessions.count >= Self.capacity, let oldest = sessions.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
                    sessions[oldest.key] = nil
                }
            }
            sessions[session.token] = session
        }
        return session
    }

    /// The session with this token, its idle time restarted; nil when there is none or it has been idle too long.
    func resume(_ token: String) -> DashboardSession? {
        let now = self.clock.now()
        return self.sessions.withLock { sessions in
            guard var session = sessions[token] else { return nil }
            guard now - session.lastSeen < self.idleTimeout else {
                sessions[token] = nil
                return nil
            }
            session.lastSeen = now
            sessions[token] = session
            return session
        }
    }

    func end(_ token: String) {
        _ = self.sessions.withLock { $0.removeValue(forKey: token) }
    }

    var count: Int { self.sessions.withLock { $0.count } }

    /// Whether `text` has the shape of ``randomToken()``: 64 lowercase hex digits.
    static func isToken(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// 32 random bytes, in hex: a cookie value and a form field as they are.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for _ in 0..<32 {
            let byte = UInt8.random(in: .min ... .max, using: &generator)
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// Failed sign-ins per client address: at most `limit` in any `window` seconds, then refused until the oldest
/// leaves the window. Successful sign-ins do not count.
final class SignInLimiter: Sendable {
    static let capacity = 10_000

    let limit: Int
    let window: Int
    private let clock: KeysmithClock
    private let failures = Mutex<[String: [UnixSeconds]]>([:])

    init(limit: Int = 10, window: Int = 300, clock: KeysmithClock) {
        self.limit = limit
        self.window = window
        self.clock = clock
    }

    /// Seconds until `address` may try again; nil when it may now.
    func retryAfter(_ address: String) -> Int? {
        let now = self.clock.now()
        return self.failures.withLock { failures in
            let recent = (failures[address] ?? []).filter { now - $0 < self.window }
            failures[address] = recent.isEmpty ? nil : recent
            guard recent.count >= self.limit, let oldest = recent.first else { return nil }
            return max(1, self.window - (now - oldest))
        }
    }

    func recordFailure(_ address: String) {
        let now = self.clock.now()
        self.failures.withLock { failures in
            if failures.count >= Self.capacity, failures[address] == nil {
                failures = failures.filter { entry in entry.value.contains { now - $0 < self.window } }
                if failures.count >= Self.capacity { failures.removeAll() }
            }
            failures[address, default: []].append(now)
        }
    }
}

/// Compares two secrets in time that depends on their length only.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in x.indices { difference |= x[index] ^ y[index] }
    return difference == 0
}
