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
    /// The key the secret belongs to, when it belongs to one that still exists.
    var record: KeyVerificationRecord?
    /// `X-Keysmith-Scopes`: the key's scopes, comma-separated (empty for unrestricted).
    var scopesHeader: String

    var isValid: Bool { self.code == .valid }
}

/// What changed, so that verification answers from memory stay right on the very next request.
enum KeyChange: Sendable {
    /// A key was deleted, updated or rotated.
    case key(id: String)
    /// A secret now exists that may have been looked up (and remembered as unknown) before.
    case newSecret(hash: String)
    case project(id: String)
    case membership(projectID: String, userID: String)
    case serviceAccount(id: String)
}

/// Verifies project and service account keys from memory after the first database lookup.
///
/// Correctness first: every change made through this server invalidates the affected entries before the change's
/// response is sent (``invalidate(_:)``), and a lookup that raced with a change is not remembered (a generation
/// counter). Time-based states (expiry, the end of a rotation's grace period) are evaluated on every request
/// against the clock, never cached. Entries are also re-read after ``positiveLifetime`` seconds, which bounds how
/// long a change made behind the server's back goes unseen; unknown and revoked secrets are remembered for
/// ``negativeLifetime`` seconds (a new secret is never among them: creation invalidates its digest).
final class KeyVerifier: Sendable {
    static let positiveLifetime = 60
    static let negativeLifetime = 30
    static let maximumEntries = 1_000_000

    private struct Entry {
        var lookup: KeyLookup
        var scopesHeader: String
        var cachedAt: UnixSeconds
    }

    private struct Cache {
        var entries: [String: Entry] = [:]
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
        guard let kind = KeySecret.parse(presented) else {
            return Verification(code: .malformed, record: nil, scopesHeader: "")
        }
        guard kind != .admin else { return Verification(code: .notFound, record: nil, scopesHeader: "") }
        let now = self.clock.now()
        let entry = try await self.entry(hash: self.hasher.hash(presented), now: now)
        return Self.evaluate(entry, now: now)
    }

    /// Whether a secret digest belongs to an existing project or service account key (in any state).
    func isKnownKey(hash: String) async throws -> Bool {
        if case .key = try await self.entry(hash: hash, now: self.clock.now()).lookup { return true }
        return false
    }

    private func entry(hash: String, now: UnixSeconds) async throws -> Entry {
        let (cached, generation) = self.cache.withLock { cache -> (Entry?, UInt64) in
            guard let entry = cache.entries[hash] else { return (nil, cache.generation) }
            let lifetime = if case .key = entry.lookup { Self.positiveLifetime } else { Self.negativeLifetime }
            return now - entry.cachedAt < lifetime ? (entry, cache.generation) : (nil, cache.generation)
        }
        if let cached { return cached }

        let lookup = try await self.store.lookUp(secretHash: hash)
        let scopes: String
        if case .key(let record) = lookup {
            scopes = record.key.scopes.joined(separator: ",")
        } else {
            scopes = ""
        }
        let entry = Entry(lookup: lookup, scopesHeader: scopes, cachedAt: now)
        self.cache.withLock { cache in
            // A change invalidated entries while we read: what we read may be stale, so don't keep it.
            guard cache.generation == generation else { return }
            if cache.entries.count >= Self.maximumEntries {
                cache.entries.removeAll(keepingCapacity: true)
            }
            cache.entries[hash] = entry
        }
        return entry
    }

    private static func evaluate(_ entry: Entry, now: UnixSeconds) -> Verification {
        switch entry.lookup {
        case .unknown:
            return Verification(code: .notFound, record: nil, scopesHeader: "")
        case .revoked:
            return Verification(code: .revoked, record: nil, scopesHeader: "")
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
            return Verification(code: code, record: code == .revoked ? nil : record, scopesHeader: entry.scopesHeader)
        }
    }

    /// Forgets every entry the change may affect. Call it after the change is committed.
    func invalidate(_ change: KeyChange) {
        self.cache.withLock { cache in
            cache.generation &+= 1
            if case .newSecret(let hash) = change {
                cache.entries.removeValue(forKey: hash)
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
