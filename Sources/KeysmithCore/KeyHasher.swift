import Crypto

/// HMAC-SHA-256 under the server secret: what the store keeps instead of a key's plaintext.
///
/// The digest is deterministic, so it doubles as the lookup index; an attacker who reads the database learns
/// nothing without the server secret, and the 256-bit keys cannot be brute-forced either way. Keys are found by
/// their digest (an index or dictionary lookup), never by comparing a presented secret with a stored one, so
/// there is no secret comparison whose timing could leak: the digest of an attacker's guess says nothing about
/// the digests it is compared with.
public struct KeyHasher: Sendable {
    private let key: SymmetricKey
    /// HMAC state with the key already absorbed: copying it skips the key schedule on every hash, which is on the
    /// verification hot path.
    private let keyed: HMAC<SHA256>

    /// - Parameter secret: the server secret, at least 32 bytes.
    public init(secret: some Sequence<UInt8>) {
        self.key = SymmetricKey(data: Array(secret))
        self.keyed = HMAC<SHA256>(key: self.key)
    }

    /// The lowercase hex HMAC-SHA-256 of the key's UTF-8 bytes: what the store keeps and looks keys up by.
    public func hash(_ key: some StringProtocol) -> String {
        self.digest(key).hex
    }

    /// The HMAC-SHA-256 of the key's UTF-8 bytes as a value that hashes and compares without allocating.
    public func digest(_ key: some StringProtocol) -> KeyDigest {
        var hmac = self.keyed
        let hashedInPlace: Void? = key.utf8.withContiguousStorageIfAvailable { bytes in
            hmac.update(data: UnsafeRawBufferPointer(bytes))
        }
        if hashedInPlace == nil {
            var copy = String(key)
            copy.withUTF8 { hmac.update(data: UnsafeRawBufferPointer($0)) }
        }
        return hmac.finalize().withUnsafeBytes { KeyDigest(bytes: $0) }
    }

    /// A value derived from the secret that identifies it without revealing it, so that a server started with
    /// another secret than the one its keys were hashed with refuses to start instead of rejecting every key.
    public var fingerprint: String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array("keysmith secret fingerprint v1".utf8), using: self.key))
    }
}

/// A 32-byte HMAC-SHA-256 digest.
public struct KeyDigest: Hashable, Sendable {
    private let words: (UInt64, UInt64, UInt64, UInt64)

    init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 32, "a SHA-256 digest has 32 bytes")
        self.words = (
            bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        )
    }

    /// The digest of a lowercase hex string as ``hex`` writes it; nil for anything else.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        self = bytes.withUnsafeBytes { KeyDigest(bytes: $0) }
    }

    /// The digest's first 8 bytes: uniformly random, as any part of an HMAC is, so good for picking a shard.
    public var firstWord: UInt64 { self.words.0 }

    /// Lowercase hex, as the store keeps digests.
    public var hex: String {
        withUnsafeBytes(of: self.words) { Hex.encode($0) }
    }

    public static func == (lhs: KeyDigest, rhs: KeyDigest) -> Bool {
        lhs.words == rhs.words
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.words.0)
        hasher.combine(self.words.1)
        hasher.combine(self.words.2)
        hasher.combine(self.words.3)
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        return String(unsafeUninitializedCapacity: bytes.count * 2) { output in
            for (index, byte) in bytes.enumerated() {
                output[2 * index] = digits[Int(byte >> 4)]
                output[2 * index + 1] = digits[Int(byte & 0x0F)]
            }
            return bytes.count * 2
        }
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count / 2)
        var index = 0
        while index < bytes.count {
            guard let high = value(ofDigit: bytes[index]), let low = value(ofDigit: bytes[index + 1]) else { return nil }
            output.append(high << 4 | low)
            index += 2
        }
        return output
    }

    /// The value of one hex digit, either case; nil for any other byte.
    public static func value(ofDigit byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
