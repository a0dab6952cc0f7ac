/// Percent-encoding (RFC 3986), once for the server, the dashboard, the database URL and the client.
public enum PercentEncoding {
    /// Encodes every byte but the unreserved characters (`A–Z a–z 0–9 - . _ ~`), with uppercase hex digits.
    public static func encode(_ text: some StringProtocol) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(Self.upperDigits[Int(byte >> 4)])
                out.append(Self.upperDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let upperDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// Decodes query strings and paths as browsers and gateways send them: a `%` not followed by two hex digits is
    /// kept as it was sent; with `plusAsSpace`, `+` is a space (form encoding).
    public static func decode(_ text: some StringProtocol, plusAsSpace: Bool) -> String {
        (try? Self.decode(text, plusAsSpace: plusAsSpace, strict: false)) ?? String(text)
    }

    /// Decodes, refusing a `%` that is not followed by two hex digits (a database URL's user or password).
    public static func decodeStrictly(_ text: some StringProtocol) throws(MalformedPercentEncoding) -> String {
        try Self.decode(text, plusAsSpace: false, strict: true)
    }

    public struct MalformedPercentEncoding: Error {}

    private static func decode(
        _ text: some StringProtocol,
        plusAsSpace: Bool,
        strict: Bool
    ) throws(MalformedPercentEncoding) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+") where plusAsSpace:
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                let high = iterator.next()
                let low = iterator.next()
                if let high, let low, let highValue = Hex.value(ofDigit: high), let lowValue = Hex.value(ofDigit: low) {
                    bytes.append(highValue << 4 | lowValue)
                } else {
                    if strict { throw MalformedPercentEncoding() }
                    bytes.append(byte)
                    if let high { bytes.append(high) }
                    if let low { bytes.append(low) }
                }
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Duration {
    /// The duration in whole nanoseconds (what NIO's `TimeAmount` and swift-metrics take).
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
