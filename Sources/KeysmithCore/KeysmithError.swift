/// Errors of the domain and the store. The server renders each as OpenAI's error envelope.
public enum KeysmithError: Error, Sendable, Equatable {
    /// The object named by a path does not exist in the caller's organization (404).
    case notFound(resource: String, id: String)
    /// The request is well formed but not allowed in the current state, or names something it can't (400).
    case invalidRequest(message: String, param: String?, code: String? = nil)
}

extension KeysmithError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .notFound(let resource, let id): "No such \(resource): \(id)"
        case .invalidRequest(let message, _, _): message
        }
    }
}
