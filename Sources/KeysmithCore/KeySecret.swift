/// The three kinds of key Keysmith issues, told apart by their prefix as OpenAI's are.
public enum KeyKind: String, Sendable, CaseIterable {
    /// An organization admin key, for the Administration API only.
    case admin
    /// A project key owned by a user.
    case project
    /// A project key owned by a service account.
    case serviceAccount

    public var prefix: String {
        switch self {
        case .admin: "sk-admin-"
        case .project: "sk-proj-"
        case .serviceAccount: "sk-svcacct-"
        }
    }
}

/// Key plaintexts: `<prefix><43 random base62 digits><6 base62 digits of checksum>`.
///
/// 43 base62 digits carry 256.03 bits from the system CSPRNG. The checksum is the CRC-32 of everything before it,
/// so a mistyped, truncated or made-up key is rejected by ``parse(_:)`` without touching the database.
public enum KeySecret {
    static let randomLength = 43
    static let checksumLength = 6

    /// A new key of the given kind. Its plaintext must leave the server once, in the creation response.
    public static func generate(_ kind: KeyKind) -> String {
        var generator = SystemRandomNumberGenerator()
        return generate(kind, using: &generator)
    }

    static func generate(_ kind: KeyKind, using generator: inout some RandomNumberGenerator) -> String {
        var bytes = Array(kind.prefix.utf8)
        bytes.reserveCapacity(bytes.count + randomLength + checksumLength)
        Base62.appendRandom(count: randomLength, to: &bytes, using: &generator)
        Base62.append(UInt64(CRC32.checksum(bytes)), width: checksumLength, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The kind of a well-formed key (right prefix, length, alphabet and checksum), or nil.
    public static func parse(_ key: some StringProtocol) -> KeyKind? {
        // Outer optional: whether the bytes were contiguous; inner: the verdict.
        if let verdict = key.utf8.withContiguousStorageIfAvailable({ parse(utf8: $0) }) {
            return verdict
        }
        var copy = String(key)
        return copy.withUTF8 { parse(utf8: $0) }
    }

    private static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) -> KeyKind? {
        for kind in KeyKind.allCases {
            let prefix = kind.prefix.utf8
            guard bytes.count == prefix.count + randomLength + checksumLength, bytes.starts(with: prefix) else { continue }
            let bodyEnd = bytes.count - checksumLength
            for byte in bytes[prefix.count..<bodyEnd] where Base62.value(of: byte) == nil {
                return nil
            }
            var checksum: UInt64 = 0
            for byte in bytes[bodyEnd...] {
                guard let digit = Base62.value(of: byte) else { return nil }
                checksum = checksum * 62 + digit
            }
            return checksum == UInt64(CRC32.checksum(bytes[..<bodyEnd])) ? kind : nil
        }
        return nil
    }

    /// The form lists show: the type prefix, then `*` for every hidden character, then the last 4 characters,
    /// keeping the key's length as OpenAI's `redacted_value` does.
    public static func redact(_ key: String, kind: KeyKind) -> String {
        let visibleTail = 4
        let hidden = max(0, key.count - kind.prefix.count - visibleTail)
        return kind.prefix + String(repeating: "*", count: hidden) + String(key.suffix(visibleTail))
    }

    /// How an error message may show a key a client presented, which may be anything: at most its first 8 and
    /// last 4 characters, as OpenAI's "Incorrect API key provided: sk-proj-****abcd" does.
    public static func describeForError(_ presented: some StringProtocol) -> String {
        let characters = Array(presented.prefix(256))
        guard characters.count > 12 else { return String(repeating: "*", count: characters.count) }
        let head = String(characters.prefix(8))
        let tail = String(characters.suffix(4))
        return head + String(repeating: "*", count: characters.count - 12) + tail
    }
}
