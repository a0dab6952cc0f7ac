import KeysmithCore

/// A request's query string, decoded as the OpenAI SDKs encode it: percent-encoded names and values, `+` for
/// space, arrays as repeated `name[]=` (or plain repeated `name=`), booleans as `true`/`false`.
struct QueryParameters {
    private var values: [String: [String]] = [:]

    /// Refuses a value holding a control character (a NUL, say) with a 400 naming the parameter: no id, cursor,
    /// email or filter holds one, and PostgreSQL cannot even compare text with a NUL in it.
    init(_ query: String?) throws {
        guard let query, !query.isEmpty else { return }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            var name = PercentEncoding.decode(parts[0], plusAsSpace: true)
            if name.hasSuffix("[]") { name.removeLast(2) }
            let value = parts.count > 1 ? PercentEncoding.decode(parts[1], plusAsSpace: true) : ""
            if value.firstControlCharacter != nil {
                throw OpenAIError.invalid("Invalid '\(name)': control characters are not allowed.", param: name)
            }
            self.values[name, default: []].append(value)
        }
    }

    /// The last value given for `name`.
    subscript(_ name: String) -> String? { self.values[name]?.last }

    func all(_ name: String) -> [String] { self.values[name] ?? [] }

    /// Every parameter's last value.
    var lastValues: [String: String] { self.values.compactMapValues(\.last) }

    /// `limit` (1–100, default 20) and `after` (empty means absent).
    func page(defaultLimit: Int = PageRequest.defaultLimit, range: ClosedRange<Int> = PageRequest.limitRange) throws -> PageRequest {
        var request = PageRequest(limit: defaultLimit)
        if let text = self["limit"] {
            guard let limit = Int(text) else {
                throw OpenAIError.invalid("Invalid 'limit': expected an integer, but got '\(text)' instead.", param: "limit")
            }
            guard range.contains(limit) else {
                throw OpenAIError.invalid(
                    "Invalid 'limit': \(limit). The limit must be an integer between \(range.lowerBound) and \(range.upperBound).",
                    param: "limit"
                )
            }
            request.limit = limit
        }
        if let after = self["after"], !after.isEmpty {
            request.after = after
        }
        return request
    }

    func bool(_ name: String, default defaultValue: Bool) throws -> Bool {
        guard let text = self[name] else { return defaultValue }
        switch text.lowercased() {
        case "true", "1": return true
        case "false", "0": return false
        default:
            throw OpenAIError.invalid("Invalid '\(name)': expected true or false, but got '\(text)' instead.", param: name)
        }
    }

    func enumeration<Value: RawRepresentable<String> & CaseIterable>(_ name: String, default defaultValue: Value) throws -> Value {
        guard let text = self[name] else { return defaultValue }
        guard let value = Value(rawValue: text) else {
            let choices = Value.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw OpenAIError.invalid("Invalid value for '\(name)': '\(text)'. Supported values are: \(choices).", param: name)
        }
        return value
    }
}
