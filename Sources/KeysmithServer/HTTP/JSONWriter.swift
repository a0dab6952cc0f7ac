public import NIOCore

/// Writes JSON straight into a `ByteBuffer`.
///
/// The hot paths (key lists, verification) cannot afford Foundation's `JSONEncoder`, and OpenAI's objects need
/// explicit `null`s (`"last_used_at": null`) that synthesized `Codable` omits. Keys are `StaticString`s written
/// as they are, so they must be plain JSON-safe text; string values are escaped.
public struct JSONWriter {
    public private(set) var buffer: ByteBuffer
    private var needsComma = false

    public init(capacity: Int = 512) {
        self.buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    @inline(__always)
    private mutating func separate() {
        if self.needsComma { self.buffer.writeInteger(UInt8(ascii: ",")) }
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        self.separate()
        self.buffer.writeInteger(UInt8(ascii: "{"))
        self.needsComma = false
        body(&self)
        self.buffer.writeInteger(UInt8(ascii: "}"))
        self.needsComma = true
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        self.separate()
        self.buffer.writeInteger(UInt8(ascii: "["))
        self.needsComma = false
        body(&self)
        self.buffer.writeInteger(UInt8(ascii: "]"))
        self.needsComma = true
    }

    /// Writes `"name":`; the value written next belongs to it.
    public mutating func key(_ name: StaticString) {
        self.separate()
        self.buffer.writeInteger(UInt8(ascii: "\""))
        self.buffer.writeStaticString(name)
        self.buffer.writeStaticString("\":")
        self.needsComma = false
    }

    public mutating func string(_ value: String) {
        self.separate()
        self.writeEscaped(value)
        self.needsComma = true
    }

    public mutating func int(_ value: Int) {
        self.separate()
        self.buffer.writeString(String(value))
        self.needsComma = true
    }

    public mutating func bool(_ value: Bool) {
        self.separate()
        self.buffer.writeStaticString(value ? "true" : "false")
        self.needsComma = true
    }

    public mutating func null() {
        self.separate()
        self.buffer.writeStaticString("null")
        self.needsComma = true
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        self.key(name)
        self.string(value)
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        self.key(name)
        if let value { self.string(value) } else { self.null() }
    }

    public mutating func field(_ name: StaticString, _ value: Int) {
        self.key(name)
        self.int(value)
    }

    public mutating func field(_ name: StaticString, _ value: Int?) {
        self.key(name)
        if let value { self.int(value) } else { self.null() }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        self.key(name)
        self.bool(value)
    }

    public mutating func field(_ name: StaticString, _ values: [String]) {
        self.key(name)
        self.array { writer in
            for value in values { writer.string(value) }
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func writeEscaped(_ value: String) {
        var value = value
        value.withUTF8 { bytes in
            self.buffer.writeInteger(UInt8(ascii: "\""))
            var start = 0
            for index in bytes.indices {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                self.buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[start..<index]))
                start = index + 1
                switch byte {
                case UInt8(ascii: "\""): self.buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): self.buffer.writeStaticString("\\\\")
                case UInt8(ascii: "\n"): self.buffer.writeStaticString("\\n")
                case UInt8(ascii: "\r"): self.buffer.writeStaticString("\\r")
                case UInt8(ascii: "\t"): self.buffer.writeStaticString("\\t")
                case 0x08: self.buffer.writeStaticString("\\b")
                case 0x0C: self.buffer.writeStaticString("\\f")
                default:
                    self.buffer.writeStaticString("\\u00")
                    self.buffer.writeInteger(Self.hexDigits[Int(byte >> 4)])
                    self.buffer.writeInteger(Self.hexDigits[Int(byte & 0x0F)])
                }
            }
            self.buffer.writeBytes(UnsafeBufferPointer(rebasing: bytes[start...]))
            self.buffer.writeInteger(UInt8(ascii: "\""))
        }
    }
}
