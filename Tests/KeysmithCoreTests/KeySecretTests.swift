import Testing

@testable import KeysmithCore

@Suite("Key secrets")
struct KeySecretTests {
    @Test("A new key has its kind's prefix, 43 random and 6 checksum characters, and parses as its kind", arguments: KeyKind.allCases)
    func generateAndParse(kind: KeyKind) {
        let key = KeySecret.generate(kind)
        #expect(key.hasPrefix(kind.prefix))
        #expect(key.count == kind.prefix.count + 43 + 6)
        #expect(key.dropFirst(kind.prefix.count).allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        #expect(KeySecret.parse(key) == kind)
    }

    @Test("Keys do not repeat")
    func keysAreDistinct() {
        let keys = (0..<2000).map { _ in KeySecret.generate(.project) }
        #expect(Set(keys).count == keys.count)
    }

    @Test("Random digits are spread over the whole alphabet")
    func randomDigitsCoverAlphabet() {
        var counts: [Character: Int] = [:]
        for _ in 0..<500 {
            let key = KeySecret.generate(.project)
            let random = key.dropFirst(KeyKind.project.prefix.count).prefix(43)
            for character in random { counts[character, default: 0] += 1 }
        }
        // 21,500 digits over 62 symbols: about 347 each. A biased generator would leave some far below.
        #expect(counts.count == 62)
        #expect(counts.values.min()! > 250)
        #expect(counts.values.max()! < 450)
    }

    @Test("Every single-character typo is rejected by the checksum")
    func singleCharacterTyposAreRejected() {
        let key = KeySecret.generate(.serviceAccount)
        let characters = Array(key)
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        let prefixLength = KeyKind.serviceAccount.prefix.count
        var tried = 0
        for position in prefixLength..<characters.count {
            for replacement in alphabet where replacement != characters[position] {
                var mutated = characters
                mutated[position] = replacement
                #expect(KeySecret.parse(String(mutated)) == nil, "accepted a typo at \(position)")
                tried += 1
            }
        }
        #expect(tried == (characters.count - prefixLength) * 61)
    }

    @Test("Malformed keys are rejected without a lookup")
    func malformedKeys() {
        let key = KeySecret.generate(.project)
        let body = String(key.dropFirst("sk-proj-".count))
        var malformed: [String] = ["", "sk-proj-", String(key.dropLast()), key + "A"]
        malformed.append("sk-test-" + body)
        malformed.append("sk-admin-" + body)
        malformed.append(String(key.dropLast(6)) + "!!!!!!")
        malformed.append("SK-PROJ-" + body)
        malformed.append("sk-proj-" + String(repeating: "a", count: 49))
        for candidate in malformed {
            #expect(KeySecret.parse(candidate) == nil, "accepted \(candidate)")
        }
    }

    @Test("CRC-32 matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test("Redaction keeps the type prefix and the last 4 characters only, at the key's length", arguments: KeyKind.allCases)
    func redaction(kind: KeyKind) {
        let key = KeySecret.generate(kind)
        let redacted = KeySecret.redact(key, kind: kind)
        #expect(redacted.count == key.count)
        #expect(redacted.hasPrefix(kind.prefix))
        #expect(redacted.hasSuffix(String(key.suffix(4))))
        let hidden = redacted.dropFirst(kind.prefix.count).dropLast(4)
        #expect(hidden.allSatisfy { $0 == "*" })
        #expect(!redacted.contains(String(key.dropFirst(kind.prefix.count).prefix(8))))
    }

    @Test("Error messages show at most the first 8 and last 4 characters of a presented key")
    func describeForError() {
        let key = KeySecret.generate(.project)
        let shown = KeySecret.describeForError(key)
        #expect(shown.hasPrefix(String(key.prefix(8))))
        #expect(shown.hasSuffix(String(key.suffix(4))))
        #expect(shown.count == key.count)
        #expect(!shown.contains(String(key.dropFirst(8).prefix(6))))
        #expect(KeySecret.describeForError("short") == "*****")
    }
}

@Suite("Hashing")
struct KeyHasherTests {
    let secret = Array(repeating: UInt8(7), count: 32)

    @Test("The hash is a deterministic 64-digit hex HMAC that depends on the server secret")
    func deterministic() {
        let key = KeySecret.generate(.project)
        let hasher = KeyHasher(secret: self.secret)
        let hash = hasher.hash(key)
        #expect(hash.count == 64)
        #expect(hash.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(hasher.hash(key) == hash)
        #expect(KeyHasher(secret: Array(repeating: UInt8(8), count: 32)).hash(key) != hash)
        #expect(hasher.hash(KeySecret.generate(.project)) != hash)
    }

    @Test("HMAC-SHA-256 matches RFC 4231 test case 2")
    func rfc4231() {
        let hasher = KeyHasher(secret: Array("Jefe".utf8))
        #expect(
            hasher.hash("what do ya want for nothing?")
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )
    }

    @Test("A digest is the hash's bytes: hex round-trips, and substrings hash like strings")
    func digests() {
        let hasher = KeyHasher(secret: self.secret)
        let key = KeySecret.generate(.project)
        let digest = hasher.digest(key)
        #expect(digest.hex == hasher.hash(key))
        #expect(KeyDigest(hex: digest.hex) == digest)
        #expect(KeyDigest(hex: "abc") == nil)
        let header = "Bearer " + key
        #expect(hasher.digest(header.dropFirst(7)) == digest)
        #expect(hasher.digest(KeySecret.generate(.project)) != digest)
        #expect(KeySecret.parse(header.dropFirst(7)) == .project)
    }

    @Test("The fingerprint identifies the secret without being it")
    func fingerprint() {
        let hasher = KeyHasher(secret: self.secret)
        #expect(hasher.fingerprint == KeyHasher(secret: self.secret).fingerprint)
        #expect(hasher.fingerprint != KeyHasher(secret: Array(repeating: UInt8(9), count: 32)).fingerprint)
        #expect(!hasher.fingerprint.contains(Hex.encode(self.secret)))
    }

    @Test("Hex round-trips and rejects non-hex")
    func hex() {
        let bytes: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF]
        #expect(Hex.encode(bytes) == "00017f80ff")
        #expect(Hex.decode("00017f80ff") == bytes)
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.decode("abc") == nil)
    }
}

@Suite("Identifiers")
struct IdentifierTests {
    @Test("Ids carry their prefix and 22 base62 digits", arguments: IDPrefix.allCases)
    func format(prefix: IDPrefix) {
        let id = IDGenerator.shared.makeText(prefix)
        #expect(id.hasPrefix(prefix.rawValue))
        let suffix = id.dropFirst(prefix.rawValue.count)
        #expect(suffix.count == 22)
        #expect(suffix.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    @Test("Ids sort in the order they were made, even within one microsecond")
    func ordering() {
        let generator = IDGenerator(now: { 1_750_000_000_000_000 })
        let ids = (0..<1000).map { _ in generator.makeText(.apiKey) }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
    }

    @Test("Base62 widths keep numeric order")
    func base62Order() {
        var previous = ""
        for value: UInt64 in [0, 1, 61, 62, 3843, 3844, 1_000_000, 839_299_365_868_340_223] {
            var bytes: [UInt8] = []
            Base62.append(value, width: 10, to: &bytes)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text > previous)
            previous = text
        }
    }
}

@Suite("Clock")
struct ClockTests {
    @Test("A manual clock moves only when advanced")
    func manualClock() {
        let manual = ManualClock(now: 100)
        let clock = manual.clock
        #expect(clock.now() == 100)
        manual.advance(by: 61)
        #expect(clock.now() == 161)
    }
}
