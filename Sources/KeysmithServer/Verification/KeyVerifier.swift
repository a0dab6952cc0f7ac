import HTTPTypes
import KeysmithCore
import KeysmithStore
import Synchronization

/// Why a presented key is or is not good, as the verify API names it.
enum VerificationCode: String, Sendable {
    case valid
    case malformed
    case notFound = "not_found"
    case expired
    case revoked
    case projectArchived = "project_archived"
    case ownerInactive = "owner_inactive"
}

/// The answer for one presented key.
struct Verification: Sendable {
    var code: VerificationCode
    /// What is known about the secret; `record` and `identityHeaders` when it belongs to a key that still exists.
    private var lookup: CachedLookup?

    init(code: VerificationCode, lookup: CachedLookup? = nil) {
        self.code = code
        self.lookup = lookup
    }

    var isValid: Bool { self.code == .valid }

    /// The key the secret belongs to (not for a revoked secret).
    var record: KeyVerificationRecord? {
        guard self.code != .revoked, case .key(let record)? = self.lookup?.lookup else { return nil }
        return record
    }

    /// The response headers for a good key, made once per cached key.
    var identityHeaders: HTTPFields { self.lookup?.identityHeaders ?? [:] }

    /// The key's id and scopes, without copying the whole record.
    var keyID: String? { self.lookup?.keyID }
    var scopes: [String] { self.lookup?.scopes ?? [] }
}

/// One remembered lookup, shared by reference so that a cache hit copies one pointer.
final class CachedLookup: Sendable {
    let lookup: KeyLookup
    let identityHeaders: HTTPFields
    let keyID: String?
    let scopes: [String]
    /// When the entry must be read again from the store.
    let expiresAt: UnixSeconds

    init(lookup: KeyLookup, expiresAt: UnixSeconds) {
        self.lookup = lookup
        self.expiresAt = expiresAt
        var headers = HTTPFields()
        guard case .key(let record) = lookup else {
            self.keyID = nil
            self.scopes = []
            self.identityHeaders = headers
            return
        }
        let key = record.key
        self.keyID = key.id
        self.scopes = key.scopes
        headers.reserveCapacity(6)
        headers[.keysmithOrganizationID] = key.organizationID
        headers[.keysmithProjectID] = key.projectID
        headers[.keysmithKeyID] = key.id
        headers[.keysmithOwnerType] = key.owner.type
        headers[.keysmithOwnerID] = key.owner.id
        headers[.keysmithScopes] = key.scopes.joined(separator: ",")
        self.identityHeaders = headers
    }
}

/// What changed, so that verification answers from memory stay right on the very next request.
enum KeyChange: Sendable {
    /// A key was deleted, updated or rotated.
    case key(id: String)
    /// A secret now exists that may have been looked up (and remembered as unknown) before.
    case newSecret(KeyDigest)
    case project(id: String)
    case membership(projectID: String, userID: String)
    case serviceAccount(id: String)
}

/// Verifies project and service account keys from memory after the first database lookup.
///
/// Correctness first: every change made through this server invalidates the affected entries before the change's
/// response is sent (``invalidate(_:)``), and a lookup that raced with a change is not remembered (a generation
/// counter). Time-based states (expiry, the end of a rotation's grace period) are evaluated on every request
/// against the clock, never cached. Entries are also re-read after at most ``positiveLifetime`` seconds, which
/// bounds how long a change made behind the server's back goes unseen; unknown and revoked secrets are remembered
/// for at most ``negativeLifetime`` seconds (a new secret is never among them: creation invalidates its digest).
/// Each entry's lifetime is drawn between 75% and 100% of its maximum, so that keys first seen together (at start,
/// or in a burst) are not all read again in the same second.
final class KeyVerifier: Sendable {
    static let positiveLifetime = 300
    static let negativeLifetime = 60
    static let maximumEntries = 1_000_000

    private struct Cache {
        var entries: [KeyDigest: CachedLookup] = [:]
        var generation: UInt64 = 0
    }

    private let store: any KeysmithStore
    let hasher: KeyHasher
    private let clock: KeysmithClock
    private let cache = Mutex(Cache())

    init(store: any KeysmithStore, hasher: KeyHasher, clock: KeysmithClock) {
        self.store = store
        self.hasher = hasher
        self.clock = clock
    }

    /// Verifies a presented project or service account key. Admin keys are not data-plane keys: `not_found`.
    func verify(_ presented: some StringProtocol) async throws -> Verification {
        guard let kind = KeySecret.parse(presented) else { return Verification(code: .malformed) }
        guard kind != .admin else { return Verification(code: .notFound) }
        let now = self.clock.now()
        let entry = try await self.entry(self.hasher.digest(presented), now: now)
        return Self.evaluate(entry, now: now)
    }

    /// Whether a secret digest belongs to an existing project or service account key (in any state).
    func isKnownKey(_ digest: KeyDigest) async throws -> Bool {
        if case .key = try await self.entry(digest, now: self.clock.now()).lookup { return true }
        return false
    }

    private func entry(_ digest: KeyDigest, now: UnixSeconds) async throws -> CachedLookup {
        let (cached, generation) = self.cache.withLock { cache -> (CachedLookup?, UInt64) in
            guard let entry = cache.entries[digest] else { return (nil, cache.generation) }
            return now < entry.expiresAt ? (entry, cache.generation) : (nil, cache.generation)
        }
        if let cached { return cached }

        let lookup = try await self.store.lookUp(secretHash: digest.hex)
        let maximum = if case .key = lookup { Self.positiveLifetime } else { Self.negativeLifetime }
        let entry = CachedLookup(lookup: lookup, expiresAt: now + Int.random(in: (maximum * 3 / 4)...maximum))
        self.cache.withLock { cache in
            // A change invalidated entries while we read: what we read may be stale, so don't keep it.
            guard cache.generation == generation else { return }
            if cache.entries.count >= Self.maximumEntries {
                cache.entries.removeAll(keepingCapacity: true)
            }
            cache.entries[digest] = entry
        }
        return entry
    }

    private static func evaluate(_ entry: CachedLookup, now: UnixSeconds) -> Verification {
        switch entry.lookup {
        case .unknown:
            return Verification(code: .notFound)
        case .revoked:
            return Verification(code: .revoked)
        case .key(let record):
            let code: VerificationCode
            if let graceEnd = record.previousSecretExpiresAt, graceEnd <= now {
                code = .revoked
            } else if let expiry = record.key.expiresAt, expiry <= now {
                code = .expired
            } else if record.projectArchivedAt != nil {
                code = .projectArchived
            } else if !record.key.owner.hasProjectAccess {
                code = .ownerInactive
            } else {
                code = .valid
            }
            return Verification(code: code, lookup: entry)
        }
    }

    /// Forgets every entry the change may affect. Call it after the change is committed.
    func invalidate(_ change: KeyChange) {
        self.cache.withLock { cache in
            cache.generation &+= 1
            if case .newSecret(let digest) = change {
                cache.entries.removeValue(forKey: digest)
                return
            }
            cache.entries = cache.entries.filter { _, entry in
                guard case .key(let record) = entry.lookup else { return true }
                return !Self.affects(change, record.key)
            }
        }
    }

    private static func affects(_ change: KeyChange, _ key: APIKey) -> Bool {
        switch change {
        case .key(let id): key.id == id
        case .newSecret: false
        case .project(let id): key.projectID == id
        case .membership(let projectID, let userID): key.projectID == projectID && key.owner.id == userID
        case .serviceAccount(let id): key.owner.id == id
        }
    }
}
