import Foundation
import Hummingbird
import KeysmithCore
import NIOCore
import NIOFoundationCompat

/// A request's JSON object body. Unknown fields are ignored, so that newer SDKs sending newer optional fields
/// keep working; known fields are checked for type and range, and errors name them in `param`.
struct JSONBody {
    static let maximumSize = 1 << 20

    private let fields: [String: JSONValue]

    init(fields: [String: JSONValue]) {
        self.fields = fields
    }

    /// Reads and parses the body. An empty body is an empty object (the SDKs send none for bodiless POSTs).
    static func parse(_ request: Request) async throws -> JSONBody {
        let buffer = try await request.body.collect(upTo: Self.maximumSize)
        guard buffer.readableBytes > 0 else { return JSONBody(fields: [:]) }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: buffer)
        } catch {
            throw OpenAIError.invalid(
                "We could not parse the JSON body of your request. The API expects a JSON object, but what was sent was not valid JSON.",
                param: nil,
                code: "invalid_json"
            )
        }
        guard case .object(let fields) = value else {
            throw OpenAIError.invalid(
                "The request body must be a JSON object, but \(value.typeDescription) was sent.",
                param: nil,
                code: "invalid_json"
            )
        }
        return JSONBody(fields: fields)
    }

    /// A field's value; nil when absent or `null`.
    func value(_ name: String) -> JSONValue? {
        switch self.fields[name] {
        case nil, .null?: nil
        case let value?: value
        }
    }

    private func typeError(_ name: String, expected: String, got value: JSONValue) -> OpenAIError {
        .invalid("Invalid type for '\(name)': expected \(expected), but got \(value.typeDescription) instead.", param: name)
    }

    /// A string field that must be present and, after trimming, non-empty.
    func requiredString(_ name: String, maxLength: Int = 256) throws -> String {
        guard let value = try self.string(name, maxLength: maxLength) else { throw OpenAIError.missingParameter(name) }
        return value
    }

    /// An optional string field; `null` counts as absent. Present strings must be non-empty after trimming.
    func string(_ name: String, maxLength: Int = 256) throws -> String? {
        switch self.fields[name] {
        case nil, .null?:
            return nil
        case .string(let raw)?:
            let value = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            // Names end up in lists, logs and terminals: a NUL, a newline or an escape sequence in one is a mistake
            // or an attack, never a name.
            if let control = value.firstControlCharacter {
                throw OpenAIError.invalid(
                    "Invalid '\(name)': control characters (such as U+\(Self.hex(control))) are not allowed.",
                    param: name
                )
            }
            guard !value.isEmpty else {
                throw OpenAIError.invalid(
                    "Invalid '\(name)': empty string. Expected a string with minimum length 1, but got an empty string instead.",
                    param: name
                )
            }
            guard value.count <= maxLength else {
                throw OpenAIError.invalid(
                    "Invalid '\(name)': string too long. Expected a string with maximum length \(maxLength), but got a string with length \(value.count) instead.",
                    param: name
                )
            }
            return value
        case let value?:
            throw self.typeError(name, expected: "a string", got: value)
        }
    }

    static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// A string field that must be an email address, as far as a server can tell without sending mail.
    func email(_ name: String) throws -> String {
        let email = try self.requiredString(name, maxLength: 320)
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        let isPlausible =
            parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".")
            && !parts[1].hasSuffix(".") && !email.contains(where: \.isWhitespace)
        guard isPlausible else {
            throw OpenAIError.invalid("Invalid '\(name)': '\(email)' is not an email address.", param: name)
        }
        return email
    }

    /// A field that may be absent (outer nil), explicitly `null` (inner nil), or a string.
    func nullableString(_ name: String, maxLength: Int = 256) throws -> String?? {
        switch self.fields[name] {
        case nil: return .none
        case .null?: return .some(nil)
        default: return .some(try self.string(name, maxLength: maxLength))
        }
    }

    /// A string field that must be one of `allowed`.
    func enumeration(_ name: String, allowed: [String]) throws -> String? {
        guard let value = try self.string(name) else { return nil }
        guard allowed.contains(value) else {
            let choices = allowed.map { "'\($0)'" }.joined(separator: ", ")
            throw OpenAIError.invalid(
                "Invalid value for '\(name)': '\(value)'. Supported values are: \(choices).",
                param: name
            )
        }
        return value
    }

    /// A string field that must be one of `Value`'s cases.
    func enumeration<Value: RawRepresentable<String> & CaseIterable>(_ name: String, as type: Value.Type) throws -> Value? {
        try self.enumeration(name, allowed: Value.allCases.map(\.rawValue)).flatMap(Value.init(rawValue:))
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        switch self.fields[name] {
        case nil, .null?:
            return nil
        case .integer(let value)?:
            if value < range.lowerBound {
                throw OpenAIError.invalid(
                    "Invalid '\(name)': integer below minimum value. Expected a value >= \(range.lowerBound), but got \(value) instead.",
                    param: name
                )
            }
            if value > range.upperBound {
                throw OpenAIError.invalid(
                    "Invalid '\(name)': integer above maximum value. Expected a value <= \(range.upperBound), but got \(value) instead.",
                    param: name
                )
            }
            return value
        case let value?:
            throw self.typeError(name, expected: "an integer", got: value)
        }
    }

    /// Whether the body has the field, whatever its value (null included).
    func has(_ name: String) -> Bool {
        self.fields[name] != nil
    }

    /// Whether the body has the field, as null.
    func isNull(_ name: String) -> Bool {
        if case .null? = self.fields[name] { return true }
        return false
    }

    func bool(_ name: String) throws -> Bool? {
        switch self.fields[name] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case let value?: throw self.typeError(name, expected: "a boolean", got: value)
        }
    }

    func stringArray(_ name: String) throws -> [String]? {
        switch self.fields[name] {
        case nil, .null?:
            return nil
        case .array(let elements)?:
            return try elements.enumerated().map { index, element in
                guard case .string(let value) = element else {
                    // `param` names the field, as it does for a bad value in it; the message says which element.
                    throw OpenAIError.invalid(
                        "Invalid type for '\(name)[\(index)]': expected a string, but got \(element.typeDescription) instead.",
                        param: name
                    )
                }
                return value
            }
        case let value?:
            throw self.typeError(name, expected: "an array of strings", got: value)
        }
    }
}

extension StringProtocol {
    /// The first control character (a NUL, a newline, an escape…), which no name, id, cursor or filter of the API
    /// holds; request input with one is refused. (PostgreSQL cannot even compare text holding a NUL.)
    var firstControlCharacter: Unicode.Scalar? {
        self.unicodeScalars.first { $0.properties.generalCategory == .control }
    }
}
