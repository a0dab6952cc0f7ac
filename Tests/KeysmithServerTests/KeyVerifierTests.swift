import KeysmithCore
import KeysmithStore
import Logging
import Testing

@testable import KeysmithServer

@Suite("Key verifier cache")
struct KeyVerifierTests {
    @Test("Unknown secrets are remembered briefly, and a new secret is forgotten the moment it is created")
    func negativeCaching() async throws {
        let clock = ManualClock()
        let store = try await SQLStore.open(.sqliteMemory, clock: clock.clock, logger: Logger(label: "test"))
        do {
            try await store.migrate()
            let hasher = KeyHasher(secret: try await store.serverSecret(override: nil))
            let keysmith = Keysmith(store: store, hasher: hasher, clock: clock.clock)
            let verifier = KeyVerifier(store: store, hasher: hasher, clock: clock.clock)
            let organization = try await keysmith.createOrganization(name: "Org")
            let project = try await keysmith.createProject(organizationID: organization.id, name: "P", externalKeyID: nil, residency: nil)
            let account = try await keysmith.createServiceAccount(
                organizationID: organization.id,
                projectID: project.id,
                name: "bot",
                withoutKey: true
            ).account

            /// Stores a key for `plaintext` behind the verifier's back, as another process could.
            func storeKey(_ plaintext: String) async throws {
                _ = try await store.createAPIKey(
                    NewAPIKey(
                        id: IDGenerator.shared.make(.apiKey),
                        organizationID: organization.id,
                        projectID: project.id,
                        owner: .serviceAccount(id: account.id),
                        name: "k",
                        secret: NewKeySecret(hash: hasher.hash(plaintext), redactedValue: KeySecret.redact(plaintext, kind: .serviceAccount)),
                        scopes: [],
                        createdAt: clock.now,
                        expiresAt: nil
                    )
                )
            }

            // A key presented before it exists.
            let plaintext = KeySecret.generate(.serviceAccount)
            #expect(try await verifier.verify(plaintext).code == .notFound)
            try await storeKey(plaintext)
            // Still remembered as unknown: the store was changed behind the verifier's back...
            #expect(try await verifier.verify(plaintext).code == .notFound)
            clock.advance(by: KeyVerifier.negativeLifetime * 3 / 4 - 1)
            #expect(try await verifier.verify(plaintext).code == .notFound)
            // ...until the negative lifetime passes,
            clock.advance(by: KeyVerifier.negativeLifetime / 4 + 1)
            #expect(try await verifier.verify(plaintext).code == .valid)

            // and at once when the creation is reported, as every creation through the server is.
            let other = KeySecret.generate(.serviceAccount)
            #expect(try await verifier.verify(other).code == .notFound)
            try await storeKey(other)
            verifier.invalidate(.newSecret(hasher.digest(other)))
            #expect(try await verifier.verify(other).code == .valid)

            // Positive entries are re-read after their lifetime, bounding changes made behind the server's back.
            try await store.deleteServiceAccount(id: account.id, projectID: project.id, organizationID: organization.id)
            #expect(try await verifier.verify(other).code == .valid)
            clock.advance(by: KeyVerifier.positiveLifetime * 3 / 4 - 1)
            #expect(try await verifier.verify(other).code == .valid)
            clock.advance(by: KeyVerifier.positiveLifetime / 4 + 1)
            #expect(try await verifier.verify(other).code == .revoked)
        } catch {
            try await store.close()
            throw error
        }
        try await store.close()
    }
}
