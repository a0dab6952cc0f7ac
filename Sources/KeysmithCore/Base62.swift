/// Base62 in ASCII order (`0-9`, `A-Z`, `a-z`), so that encoded values of equal width sort like the numbers
/// they encode, both in Swift and in SQL's binary collation.
enum Base62 {
    static let alphabet: [UInt8] = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// The value of one base62 digit, or nil for any other byte.
    @inline(__always)
    static func value(of byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt64(byte - UInt8(ascii: "A") + 10)
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt64(byte - UInt8(ascii: "a") + 36)
        default: nil
        }
    }

    /// Appends `value` as exactly `width` digits, most significant first. `value` must fit.
    static func append(_ value: UInt64, width: Int, to bytes: inout [UInt8]) {
        var digits = [UInt8](repeating: alphabet[0], count: width)
        var rest = value
        for index in stride(from: width - 1, through: 0, by: -1) {
            digits[index] = alphabet[Int(rest % 62)]
            rest /= 62
        }
        precondition(rest == 0, "value does not fit in \(width) base62 digits")
        bytes.append(contentsOf: digits)
    }

    /// Appends `count` uniformly random digits drawn from `generator` (rejection sampling, so no digit is favoured).
    static func appendRandom(count: Int, to bytes: inout [UInt8], using generator: inout some RandomNumberGenerator) {
        var produced = 0
        while produced < count {
            var word = generator.next() as UInt64
            for _ in 0..<8 {
                let byte = UInt8(truncatingIfNeeded: word)
                word >>= 8
                // 248 = 4 × 62: bytes at or above it would make the low digits more likely.
                if byte < 248 {
                    bytes.append(alphabet[Int(byte % 62)])
                    produced += 1
                    if produced == count { return }
                }
            }
        }
    }
}
