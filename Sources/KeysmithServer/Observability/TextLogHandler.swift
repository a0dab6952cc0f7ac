import KeysmithCore
public import Logging

/// Logs one line per event on standard error, for people: `2026-11-26T22:22:51.123Z info keysmith: message key=value …`.
///
/// swift-log's `StreamLogHandler` renders its metadata into a string whenever the metadata changes, so setting a
/// request's id cost a string build per request even at a level that logs nothing. This handler renders only when
/// it writes a line.
public struct TextLogHandler: LogHandler {
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
        var line = "\(Timestamp.now()) \(event.level.rawValue) \(self.label): \(event.message)"
        for (key, value) in LogFields.merged(self.metadata, event.metadata) {
            line += " \(key)=\(value)"
        }
        line += "\n"
        writeToStandardError(line)
    }
}

/// What both of Keysmith's log handlers do with metadata.
enum LogFields {
    /// Hummingbird names each request's id `hb.request.id`; Keysmith's logs call it `request_id`.
    static func displayName(_ key: String) -> String {
        key == "hb.request.id" ? "request_id" : key
    }

    /// The handler's metadata and the event's, the event's winning, by display name, sorted.
    static func merged(_ handler: Logger.Metadata, _ event: Logger.Metadata?) -> [(String, Logger.Metadata.Value)] {
        var all: [String: Logger.Metadata.Value] = [:]
        for (key, value) in handler { all[self.displayName(key)] = value }
        for (key, value) in event ?? [:] { all[self.displayName(key)] = value }
        return all.sorted { $0.key < $1.key }
    }
}
