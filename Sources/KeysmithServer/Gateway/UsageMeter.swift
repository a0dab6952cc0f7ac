import Foundation
import KeysmithCore
import NIOCore

/// What the gateway learns of a model request from its body: which kind of usage it makes, the model it names, and
/// whether Keysmith must ask the upstream for a streamed answer's usage (and hide it from the client, who did not
/// ask for it).
struct MeteredRequest: Sendable {
    var kind: ModelUsageKind
    var model: String
    /// The request streams and did not ask for `stream_options.include_usage`: Keysmith asked for it, so the chunk
    /// that carries it (no choices, only usage) is removed from what the client receives.
    var hidesUsageChunk: Bool
    /// The most tokens the answer may take, as the request says (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`); nil when it does not.
    var maximumTokens: Int? = nil

    /// The kinds the gateway meters, by path: chat completions, completions and the Responses API; embeddings.
    static func kind(method: String, path: String) -> ModelUsageKind? {
        guard method == "POST" else { return nil }
        switch path {
        case "/v1/chat/completions", "/v1/completions", "/v1/responses": return .completions
        case "/v1/embeddings": return .embeddings
        default: return nil
        }
    }

    /// The `model` a JSON body names, if it is a JSON object that names one.
    static func model(inJSON body: ByteBuffer) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else { return nil }
        return object["model"] as? String
    }

    /// Reads `body` (a JSON object) of a request of `kind`; when it streams a chat completion or a completion without
    /// asking for usage, returns the body with `stream_options.include_usage` set. A body that is not a JSON object is
    /// forwarded as it is and metered under no model.
    static func inspect(_ body: ByteBuffer, kind: ModelUsageKind, path: String) -> (request: MeteredRequest, body: ByteBuffer?) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            return (MeteredRequest(kind: kind, model: "", hidesUsageChunk: false), nil)
        }
        let model = object["model"] as? String ?? ""
        let maximum = ["max_completion_tokens", "max_tokens", "max_output_tokens"].lazy.compactMap { (object[$0] as? NSNumber)?.intValue }
            .first { $0 > 0 }
        let streams = (object["stream"] as? Bool) == true
        let asksUsage = ((object["stream_options"] as? [String: Any])?["include_usage"] as? Bool) == true
        // The Responses API's stream always ends with `response.completed`, which carries the usage.
        guard streams, !asksUsage, path != "/v1/responses", kind == .completions else {
            return (MeteredRequest(kind: kind, model: model, hidesUsageChunk: false, maximumTokens: maximum), nil)
        }
        var rewritten = object
        var options = object["stream_options"] as? [String: Any] ?? [:]
        options["include_usage"] = true
        rewritten["stream_options"] = options
        guard let data = try? JSONSerialization.data(withJSONObject: rewritten) else {
            return (MeteredRequest(kind: kind, model: model, hidesUsageChunk: false, maximumTokens: maximum), nil)
        }
        return (MeteredRequest(kind: kind, model: model, hidesUsageChunk: true, maximumTokens: maximum), ByteBuffer(bytes: data))
    }
}

/// Reads the usage out of an answer as it passes: a JSON answer's `usage` once it is whole (up to 16 MiB; a larger
/// one is relayed, and its usage is unknown), a stream's from the event that carries it (a chat completion's last
/// chunk, the Responses API's `response.completed`). A stream is relayed event by event, each as soon as its blank
/// line arrives, so that the chunk Keysmith asked for can be left out.
struct UsageMeter {
    static let maximumJSONSize = 16 * 1024 * 1024

    let isStream: Bool
    let hidesUsageChunk: Bool
    private(set) var usage: ReportedUsage?
    private var held = ByteBuffer()
    private var overflowed = false

    init(contentType: String?, hidesUsageChunk: Bool) {
        self.isStream = contentType?.lowercased().hasPrefix("text/event-stream") ?? false
        self.hidesUsageChunk = hidesUsageChunk && self.isStream
    }

    /// What of `chunk` to send the client now.
    mutating func pass(_ chunk: ByteBuffer) -> ByteBuffer? {
        guard self.isStream else {
            if !self.overflowed {
                if self.held.readableBytes + chunk.readableBytes > Self.maximumJSONSize {
                    self.overflowed = true
                    self.held = ByteBuffer()
                } else {
                    var copy = chunk
                    self.held.writeBuffer(&copy)
                }
            }
            return chunk
        }
        var incoming = chunk
        self.held.writeBuffer(&incoming)
        var out = ByteBuffer()
        while let event = self.nextEvent() {
            if self.meter(event) { continue }
            var event = event
            out.writeBuffer(&event)
        }
        return out.readableBytes > 0 ? out : nil
    }

    /// What is left when the upstream's answer ends: a stream's incomplete last event, sent as it is.
    mutating func finish() -> ByteBuffer? {
        guard self.isStream else {
            if !self.overflowed, let data = self.held.getBytes(at: self.held.readerIndex, length: self.held.readableBytes) {
                self.usage = Self.usage(inJSON: data)
            }
            self.held = ByteBuffer()
            return nil
        }
        defer { self.held = ByteBuffer() }
        return self.held.readableBytes > 0 ? self.held : nil
    }

    /// The next complete event (through its blank line), taken from what is held.
    private mutating func nextEvent() -> ByteBuffer? {
        let view = self.held.readableBytesView
        var previous: UInt8 = 0
        var index = view.startIndex
        while index < view.endIndex {
            let byte = view[index]
            if byte == UInt8(ascii: "\n") && previous == UInt8(ascii: "\n") {
                let length = view.distance(from: view.startIndex, to: index) + 1
                return self.held.readSlice(length: length)
            }
            if byte != UInt8(ascii: "\r") { previous = byte }
            index = view.index(after: index)
        }
        return nil
    }

    /// Notes the usage an event carries; true when the event is the usage chunk Keysmith asked for and must drop.
    private mutating func meter(_ event: ByteBuffer) -> Bool {
        let text = String(buffer: event)
        guard text.contains("\"usage\"") else { return false }
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) where line.hasPrefix("data:") {
            let payload = line.dropFirst(5).drop { $0 == " " }
            guard let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else { continue }
            if let found = Self.usage(in: object["usage"]) {
                self.usage = found
                let choices = object["choices"] as? [Any]
                return self.hidesUsageChunk && (choices?.isEmpty ?? true)
            }
            if object["type"] as? String == "response.completed", let response = object["response"] as? [String: Any],
                let found = Self.usage(in: response["usage"])
            {
                self.usage = found
            }
        }
        return false
    }

    static func usage(inJSON data: [UInt8]) -> ReportedUsage? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else { return nil }
        return Self.usage(in: object["usage"])
    }

    /// OpenAI's `usage` in any of its spellings: chat completions' and completions' `prompt_tokens`,
    /// `completion_tokens` and `prompt_tokens_details.cached_tokens`; the Responses API's `input_tokens`,
    /// `output_tokens` and `input_tokens_details.cached_tokens`; embeddings' `prompt_tokens` alone.
    static func usage(in value: Any?) -> ReportedUsage? {
        guard let usage = value as? [String: Any] else { return nil }
        func integer(_ value: Any?) -> Int? { (value as? NSNumber)?.intValue }
        guard let input = integer(usage["prompt_tokens"]) ?? integer(usage["input_tokens"]) else { return nil }
        let output = integer(usage["completion_tokens"]) ?? integer(usage["output_tokens"]) ?? 0
        let details = (usage["prompt_tokens_details"] ?? usage["input_tokens_details"]) as? [String: Any]
        return ReportedUsage(inputTokens: input, cachedInputTokens: integer(details?["cached_tokens"]) ?? 0, outputTokens: output)
    }
}
