import Crypto

/// HMAC-SHA-256 under the server secret: what the store keeps instead of a key's plaintext.
///
/// The digest is deterministic, so it doubles as the lookup index; an attacker who reads the database learns
/// nothing without the server secret, and the 256-bit keys cannot be brute-forced either way.
public struct KeyHasher: Sendable {
    private let key: SymmetricKey

    /// - Parameter secret: the server secret, at least 32 bytes.
    public init(secret: some Sequence<UInt8>) {
        self.key = SymmetricKey(data: Array(secret))
    }

    /// The lowercase hex HMAC-SHA-256 of the key's UTF-8 bytes.
    public func hash(_ key: some StringProtocol) -> String {
        var key = String(key)
        let code = key.withUTF8 { HMAC<SHA256>.authenticationCode(for: $0, using: self.key) }
        return Hex.encode(code)
    }

    /// A value derived from the secret that identifies it without revealing it, so that a server started with
    /// another secret than the one its keys were hashed with refuses to start instead of rejecting every key.
    public var fingerprint: String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array("keysmith secret fingerprint v1".utf8), using: self.key))
    }

    /// Compares two digests in constant time.
    public static func digestsEqual(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for index in left.indices {
            difference |= left[index] ^ right[index]
        }
        return difference == 0
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(64)
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count / 2)
        var index = 0
        while index < bytes.count {
            guard let high = nibble(bytes[index]), let low = nibble(bytes[index + 1]) else { return nil }
            output.append(high << 4 | low)
            index += 2
        }
        return output
    }

    private static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
