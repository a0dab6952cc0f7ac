import KeysmithCore
public import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Logs one JSON object per line on standard error, for log shippers (`--log-format json`):
/// `{"time":"2026-11-26T22:22:51.123Z","level":"info","label":"keysmith","message":"request","request_id":"…",…}`.
/// Metadata keys become fields of the object; nested metadata becomes nested JSON.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var writer = JSONWriter(capacity: 256)
        writer.object { writer in
            writer.field("time", Timestamp.now())
            writer.field("level", event.level.rawValue)
            writer.field("label", self.label)
            writer.field("message", event.message.description)
            for (key, value) in LogFields.merged(self.metadata, event.metadata) where !["time", "level", "label", "message"].contains(key) {
                writer.key(dynamic: key)
                Self.writeValue(value, to: &writer)
            }
        }
        var line = writer.bytesWritten
        line.append(UInt8(ascii: "\n"))
        writeToStandardError(line)
    }

    private static func writeValue(_ value: Logger.Metadata.Value, to writer: inout JSONWriter) {
        switch value {
        case .string(let text): writer.string(text)
        case .stringConvertible(let convertible): writer.string(convertible.description)
        case .array(let values):
            writer.array { writer in
                for value in values { Self.writeValue(value, to: &writer) }
            }
        case .dictionary(let values):
            writer.object { writer in
                for (key, value) in values.sorted(by: { $0.key < $1.key }) {
                    writer.key(dynamic: key)
                    Self.writeValue(value, to: &writer)
                }
            }
        }
    }
}

/// Writes the bytes with as few write(2) calls as it takes, unbuffered: lines from different threads never mix.
func writeToStandardError(_ text: some Collection<UInt8>) {
    let bytes = Array(text)
    bytes.withUnsafeBufferPointer { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = systemWrite(buffer.baseAddress! + offset, buffer.count - offset)
            guard written > 0 else { return }
            offset += written
        }
    }
}

func writeToStandardError(_ text: String) {
    writeToStandardError(text.utf8)
}

private func systemWrite(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Int {
    #if canImport(Glibc)
        Glibc.write(STDERR_FILENO, bytes, count)
    #elseif canImport(Musl)
        Musl.write(STDERR_FILENO, bytes, count)
    #else
        Darwin.write(STDERR_FILENO, bytes, count)
    #endif
}
