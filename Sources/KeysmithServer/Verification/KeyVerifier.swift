import HTTPTypes
import KeysmithCore

/// The answer for one presented key.
struct Verification: Sendable {
    var code: VerificationCode
    /// The key the secret belongs to, when it is one of the key's secrets (current or in its grace period).
    var key: IndexedKey?
    /// Set when the secret presented is the key's previous one: when its grace period ends.
    var previousSecretExpiresAt: UnixSeconds?

    var isValid: Bool { self.code == .valid }
}

/// Verifies project and service account keys from the in-memory ``VerificationIndex``: a CRC, an HMAC and one
/// dictionary lookup, never a database read, whatever the key. Time-based states (expiry, the end of a rotation's
/// grace period) are judged on every check against the clock.
struct KeyVerifier: Sendable {
    let index: VerificationIndex
    let hasher: KeyHasher
    let clock: KeysmithClock
    let metrics: ServerMetrics?

    /// Verifies a presented project or service account key. Admin keys are not data-plane keys: `not_found`.
    func verify(_ presented: some StringProtocol) -> Verification {
        let verification = self.evaluate(presented)
        self.metrics?.recordVerification(verification.code)
        return verification
    }

    private func evaluate(_ presented: some StringProtocol) -> Verification {
        guard let kind = KeySecret.parse(presented) else { return Verification(code: .malformed) }
        guard kind != .admin else { return Verification(code: .notFound) }
        let now = self.clock.now()
        switch self.index.entry(self.hasher.digest(presented)) {
        case nil:
            return Verification(code: .notFound)
        case .previous(let key, let expiresAt):
            let code: VerificationCode = expiresAt <= now ? .revoked : Self.code(of: key, now: now)
            return Verification(code: code, key: key, previousSecretExpiresAt: expiresAt)
        case .current(let key):
            return Verification(code: Self.code(of: key, now: now), key: key)
        }
    }

    private static func code(of key: IndexedKey, now: UnixSeconds) -> VerificationCode {
        if let expiry = key.expiresAt, expiry <= now { return .expired }
        if key.project.isArchived { return .projectArchived }
        if !key.owner.hasProjectAccess { return .ownerInactive }
        return .valid
    }

    /// Whether a secret digest belongs to an existing project or service account key, in any state.
    func isKnownKey(_ digest: KeyDigest) -> Bool {
        self.index.entry(digest) != nil
    }
}
