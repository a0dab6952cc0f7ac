/// A project's model permissions (OpenAI's `project.model_permissions`): the models its keys may use, as an allow
/// list (only these) or a deny list (all but these). Model ids are matched exactly, case and all, as the upstreams
/// name them. A project without any is unrestricted, which reads as an empty deny list.
public struct ModelPermissions: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable, Codable {
        case allowList = "allow_list"
        case denyList = "deny_list"
    }

    public var mode: Mode
    /// In the order given, without repeats.
    public var modelIDs: [String]

    public init(mode: Mode, modelIDs: [String]) {
        self.mode = mode
        var seen: Set<String> = []
        self.modelIDs = modelIDs.filter { seen.insert($0).inserted }
    }

    /// What a project without model permissions answers: nothing denied.
    public static let unrestricted = ModelPermissions(mode: .denyList, modelIDs: [])

    /// At most this many model ids in one policy, each at most ``maximumModelIDLength`` characters (Unicode scalars, as JSON Schema counts them).
    public static let maximumModelIDs = 1000
    public static let maximumModelIDLength = 256

    /// Whether a request for `model` may go ahead.
    public func permits(_ model: String) -> Bool {
        switch self.mode {
        case .allowList: self.modelIDs.contains(model)
        case .denyList: !self.modelIDs.contains(model)
        }
    }

    /// Whether some model is refused: an allow list refuses every model it does not list, a deny list only those it
    /// lists. A project whose policy refuses any model refuses a request whose model cannot be told (fail closed):
    /// a model server given no model, or one Keysmith cannot read, may answer with a model the policy refuses.
    public var refusesSomeModel: Bool { self.mode == .allowList || !self.modelIDs.isEmpty }
}
