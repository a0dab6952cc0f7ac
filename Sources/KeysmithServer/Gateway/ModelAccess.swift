import Foundation
import HTTPTypes
import KeysmithCore
import NIOCore

/// A project's model permissions applied to one model request, by the gateway (which has the request itself) and
/// by `/v1/auth/check` (which has what the gateway passes on: the original method and path, and the body when the
/// gateway forwards it).
///
/// The model a request uses is read from its path (`/v1/models/{model}`) or from the `model` of its JSON object
/// body. A request that carries a body must name its model there, once: a body without one, with two (an upstream
/// may take either), or that is not a JSON object (a multipart upload, say) cannot be told, and a project whose
/// permissions refuse any model refuses it, since the model server could answer it with a model the project may not
/// use. A request without a body (a `GET` of a stored response, a `DELETE` of a file) uses no model and passes.
enum ModelAccess {
    /// The methods whose requests carry no body, and so no model, unless they name one in the path.
    static let bodilessMethods: Set<String> = ["GET", "HEAD", "DELETE", "OPTIONS"]

    /// What a request says of the model it uses.
    enum RequestModel: Equatable, Sendable {
        /// It names this one, in its path or its body.
        case named(String)
        /// It has no body and names none in its path: it uses no model.
        case none
        /// It has a body that does not tell (no `model`, two, not JSON), or nothing describes it.
        case unknown
    }

    /// The model a request of `method` to `path` with `body` uses. `path` is the request's own (percent-encoded, as the
    /// gateway received it) unless `isResolved` says it is already as the upstream resolves it (``ScopeMap/normalize(_:)``:
    /// decoded, dot segments resolved, no query), as a check must judge a path a gateway passes on.
    static func requestModel(method: String, path: some StringProtocol, body: ByteBuffer?, isResolved: Bool = false) -> RequestModel {
        if let named = isResolved ? self.modelInResolvedPath(path) : self.modelInPath(path) { return .named(named) }
        if let body, body.readableBytes > 0 { return self.model(inJSON: body).map(RequestModel.named) ?? .unknown }
        return self.bodilessMethods.contains(method) ? .none : .unknown
    }

    /// The refusal of a request for `model` by a key of `projectID`, whose permissions are `permissions`; nil when it
    /// may go ahead.
    static func refusal(_ permissions: ModelPermissions, projectID: ProjectID, model: RequestModel) -> OpenAIError? {
        switch model {
        case .none:
            return nil
        case .unknown:
            return permissions.refusesSomeModel ? self.modelUnknown(projectID) : nil
        case .named(let model):
            return permissions.permits(model) ? nil : self.notPermitted(model, projectID: projectID)
        }
    }

    /// OpenAI's answer to a project that may not use a model.
    static func notPermitted(_ model: String, projectID: ProjectID) -> OpenAIError {
        OpenAIError(
            status: .forbidden,
            message: "Project `\(projectID.rawValue)` does not have access to model `\(model)`",
            code: "model_not_found"
        )
    }

    static func modelUnknown(_ projectID: ProjectID) -> OpenAIError {
        OpenAIError(
            status: .forbidden,
            message: "Project `\(projectID.rawValue)` may use only some models, and this request does not say which model it "
                + "uses: its body must be a JSON object with one string 'model' (see docs/gateway.md).",
            param: "model",
            code: "model_required"
        )
    }

    /// A project with rate limits on some model cannot tell which limit a request counts against when it does not
    /// say which model it uses.
    static func limitedModelUnknown(_ projectID: ProjectID) -> OpenAIError {
        OpenAIError(
            status: .forbidden,
            message: "Project `\(projectID.rawValue)` has rate limits by model, and this request does not say which model it "
                + "uses: its body must be a JSON object with one string 'model' (see docs/limits.md).",
            param: "model",
            code: "model_required"
        )
    }

    /// The model of a resolved `/v1/models/{model}` (already decoded); nil for other paths.
    static func modelInResolvedPath(_ path: some StringProtocol) -> String? {
        let prefix = "/v1/models/"
        guard path.hasPrefix(prefix), path.count > prefix.count else { return nil }
        return String(path.dropFirst(prefix.count))
    }

    /// The model of `/v1/models/{model}`, percent-decoded; nil for other paths.
    static func modelInPath(_ path: some StringProtocol) -> String? {
        let prefix = "/v1/models/"
        guard path.hasPrefix(prefix) else { return nil }
        let id = path.dropFirst(prefix.count)
        guard !id.isEmpty else { return nil }
        return PercentEncoding.decode(String(id), plusAsSpace: false)
    }

    /// The `model` of a JSON object body: nil when the body is not a JSON object, names no model, names one that is
    /// not a string, or has more than one `model` member (however spelled: `"mod\u0065l"` is `"model"`).
    static func model(inJSON body: ByteBuffer) -> String? {
        // A validating parse of the whole body that makes only the one value it is asked for (JSONSerialization would
        // make an object of every member): a body that is not a JSON object, or whose model is not a string, throws.
        guard let decoded = try? JSONDecoder().decode(ModelMember.self, from: Data(body.readableBytesView)), let model = decoded.model
        else { return nil }
        return self.countTopLevelKeys(named: "model", in: body.readableBytesView) == 1 ? model : nil
    }

    private struct ModelMember: Decodable {
        var model: String?
    }

    /// How many members of the top-level object of `json` (which must be valid JSON) are named `name`.
    static func countTopLevelKeys<Bytes: Collection<UInt8>>(named name: String, in json: Bytes) -> Int {
        let wanted = Array(name.utf8)
        var count = 0
        var depth = 0
        var inString = false
        var escaped = false
        var stringStart = json.startIndex
        var hasEscape = false
        // A string just closed at depth 1: a key if a ':' follows.
        var candidate: (range: Range<Bytes.Index>, hasEscape: Bool)?
        var index = json.startIndex
        while index != json.endIndex {
            let byte = json[index]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                    hasEscape = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                    if depth == 1 { candidate = (stringStart..<index, hasEscape) }
                }
            } else {
                switch byte {
                case UInt8(ascii: "\""):
                    inString = true
                    hasEscape = false
                    stringStart = json.index(after: index)
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    candidate = nil
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    candidate = nil
                case UInt8(ascii: ":"):
                    if let key = candidate, Self.matches(json[key.range], wanted, name: name, hasEscape: key.hasEscape) {
                        count += 1
                    }
                    candidate = nil
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                    break
                default:
                    candidate = nil
                }
            }
            json.formIndex(after: &index)
        }
        return count
    }

    private static func matches(_ raw: some Collection<UInt8>, _ wanted: [UInt8], name: String, hasEscape: Bool) -> Bool {
        guard hasEscape else { return raw.elementsEqual(wanted) }
        // An escaped key: decoded as JSON decodes it.
        let quoted = Data([UInt8(ascii: "\"")] + raw + [UInt8(ascii: "\"")])
        return (try? JSONSerialization.jsonObject(with: quoted, options: .fragmentsAllowed) as? String) == name
    }
}
