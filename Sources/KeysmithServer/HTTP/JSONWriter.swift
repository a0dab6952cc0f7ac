public import KeysmithCore
public import NIOCore

/// Writes JSON straight into a `ByteBuffer`.
///
/// The hot paths (key lists, verification) cannot afford Foundation's `JSONEncoder`, and OpenAI's objects need
/// explicit `null`s (`"last_used_at": null`) that synthesized `Codable` omits. Keys are `StaticString`s written
/// as they are, so they must be plain JSON-safe text; string values are escaped.
///
/// Bytes collect in an array (appending to one is cheaper than `ByteBuffer`'s per-write bookkeeping) and move
/// into a `ByteBuffer` once, at the end.
public struct JSONWriter {
    private var bytes: [UInt8]
    private var needsComma = false

    public init(capacity: Int = 512) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    /// The JSON written so far.
    public var buffer: ByteBuffer {
        ByteBuffer(bytes: self.bytes)
    }

    @inline(__always)
    private mutating func separate() {
        if self.needsComma { self.bytes.append(UInt8(ascii: ",")) }
    }

    @inline(__always)
    private mutating func append(_ text: StaticString) {
        self.bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        self.separate()
        self.bytes.append(UInt8(ascii: "{"))
        self.needsComma = false
        body(&self)
        self.bytes.append(UInt8(ascii: "}"))
        self.needsComma = true
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        self.separate()
        self.bytes.append(UInt8(ascii: "["))
        self.needsComma = false
        body(&self)
        self.bytes.append(UInt8(ascii: "]"))
        self.needsComma = true
    }

    /// Writes `"name":`; the value written next belongs to it.
    public mutating func key(_ name: StaticString) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        self.append(name)
        self.append("\":")
        self.needsComma = false
    }

    /// Writes `"name":` for a name known only at run time (escaped like a string value).
    public mutating func key(dynamic name: String) {
        self.separate()
        self.writeEscaped(name)
        self.bytes.append(UInt8(ascii: ":"))
        self.needsComma = false
    }

    /// The JSON written so far, as bytes.
    public var bytesWritten: [UInt8] { self.bytes }

    public mutating func string(_ value: String) {
        self.separate()
        self.writeEscaped(value)
        self.needsComma = true
    }

    public mutating func int(_ value: Int) {
        self.separate()
        // Digits straight into the bytes: `String(value)` would allocate a string per number.
        if value < 0 { self.bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64.max's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            self.bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
        self.needsComma = true
    }

    /// Writes a constant string value as it is: it must be plain JSON-safe text, like a key.
    public mutating func literal(_ value: StaticString) {
        self.separate()
        self.bytes.append(UInt8(ascii: "\""))
        self.append(value)
        self.bytes.append(UInt8(ascii: "\""))
        self.needsComma = true
    }

    public mutating func bool(_ value: Bool) {
        self.separate()
        self.append(value ? "true" : "false")
        self.needsComma = true
    }

    /// Writes a value that is JSON text already (the audit log's stored details), as it is.
    public mutating func raw(json text: String) {
        self.separate()
        self.bytes.append(contentsOf: text.utf8)
        self.needsComma = true
    }

    public mutating func null() {
        self.separate()
        self.append("null")
        self.needsComma = true
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        self.key(name)
        self.string(value)
    }

    /// A field whose value is a constant (`"object": "list"`), written without escaping.
    public mutating func field(_ name: StaticString, literal value: StaticString) {
        self.key(name)
        self.literal(value)
    }

    public mutating func field(_ name: StaticString, _ value: some TypedID) {
        self.field(name, value.rawValue)
    }

    public mutating func field(_ name: StaticString, _ value: (some TypedID)?) {
        self.field(name, value?.rawValue)
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

    private mutating func writeEscaped(_ value: String) {
        JSONString.append(value, to: &self.bytes)
    }
}
