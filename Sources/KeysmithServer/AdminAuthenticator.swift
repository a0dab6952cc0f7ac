import Hummingbird
import KeysmithCore
import KeysmithStore
import Synchronization

/// Who is calling the Administration API: an admin key of one organization.
struct AdminPrincipal: Sendable {
    var keyID: String
    var organizationID: String
}

/// Checks `Authorization: Bearer sk-admin-…` on every admin request, from memory after the first lookup.
///
/// OpenAI's rules: no key, a malformed key, an unknown, expired or deleted key → 401; a project or service
/// account key (valid, but not an admin key) → 403 naming the missing scope.
final class AdminAuthenticator: Sendable {
    /// How long a positive lookup is trusted before the database is asked again. Deletions through this server
    /// take effect at once (``forget(keyID:)``); this bounds how long a change made elsewhere goes unseen.
    static let cacheLifetime = 60

    private struct Entry {
        var key: AdminKey
        var cachedAt: UnixSeconds
    }

    private let store: any KeysmithStore
    private let hasher: KeyHasher
    private let clock: KeysmithClock
    private let cache = Mutex<[String: Entry]>([:])
    private let usage: UsageRecorder
    /// Answers whether a non-admin key is a valid project key (403) or not (401).
    private let isKnownProjectKey: @Sendable (KeyDigest) async throws -> Bool

    init(
        store: any KeysmithStore,
        hasher: KeyHasher,
        clock: KeysmithClock,
        usage: UsageRecorder,
        isKnownProjectKey: @escaping @Sendable (KeyDigest) async throws -> Bool
    ) {
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.usage = usage
        self.isKnownProjectKey = isKnownProjectKey
    }

    /// The caller, or an error: `write` asks for `api.management.write`, else `api.management.read`.
    func authenticate(_ request: Request, write: Bool) async throws -> AdminPrincipal {
        guard let token = request.headers.bearerToken() else { throw OpenAIError.missingKey }
        guard let kind = KeySecret.parse(token) else { throw OpenAIError.incorrectKey(token) }
        let digest = self.hasher.digest(token)
        let hash = digest.hex
        let now = self.clock.now()
        switch kind {
        case .admin:
            guard let key = try await self.adminKey(hash: hash, now: now) else { throw OpenAIError.incorrectKey(token) }
            if let expiresAt = key.expiresAt, expiresAt <= now {
                throw OpenAIError.incorrectKey(token, detail: "This key has expired.", code: "api_key_expired")
            }
            self.usage.recordAdminKeyUse(key.id)
            return AdminPrincipal(keyID: key.id, organizationID: key.organizationID)
        case .project, .serviceAccount:
            guard try await self.isKnownProjectKey(digest) else { throw OpenAIError.incorrectKey(token) }
            let scope = write ? "api.management.write" : "api.management.read"
            throw OpenAIError(
                status: .forbidden,
                message: "You have insufficient permissions for this operation. Missing scopes: \(scope). "
                    + "The Administration API needs an admin key (sk-admin-…); project and service account keys cannot call it.",
                code: "missing_scope"
            )
        }
    }

    private func adminKey(hash: String, now: UnixSeconds) async throws -> AdminKey? {
        let cached = self.cache.withLock { cache -> AdminKey? in
            guard let entry = cache[hash], now - entry.cachedAt < Self.cacheLifetime else { return nil }
            return entry.key
        }
        if let cached { return cached }
        guard let key = try await self.store.adminKey(secretHash: hash) else {
            self.cache.withLock { _ = $0.removeValue(forKey: hash) }
            return nil
        }
        self.cache.withLock { $0[hash] = Entry(key: key, cachedAt: now) }
        return key
    }

    /// Drops a deleted key from memory so that its very next use is refused.
    func forget(keyID: String) {
        self.cache.withLock { cache in
            cache = cache.filter { $0.value.key.id != keyID }
        }
    }
}
