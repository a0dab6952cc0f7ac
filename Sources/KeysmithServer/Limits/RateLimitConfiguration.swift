public import Foundation
public import KeysmithCore

/// The operator's rate limits (`--rate-limits FILE`, docs/limits.md): each model's default limits, which every
/// project has until it changes them through the API, and how the limiter behaves when it cannot reach the database.
///
/// ```json
/// {
///   "models": {
///     "gemma-3-270m": {"max_requests_per_1_minute": 600, "max_tokens_per_1_minute": 150000, "max_requests_per_1_day": 50000}
///   },
///   "default_max_tokens": 1024,
///   "when_database_unavailable": "refuse"
/// }
/// ```
public struct RateLimitConfiguration: Sendable, Equatable {
    /// What a replica does when its lease of a window is used up and the database cannot give it another.
    public enum OutagePolicy: String, Sendable, Equatable {
        /// Refuse (503) the requests that lease could not cover: no limit is ever passed (the default).
        case refuse
        /// Admit them uncounted until the database answers again: the limit is not enforced meanwhile.
        case admit
    }

    /// Each model's default limits (nil or 0: none). These models are listed by every project's rate limits.
    public var models: [String: RateLimitSettings] {
        didSet { self.defaultsLimitSomeModel = Self.limitSomeModel(self.models) }
    }
    /// Whether a default limits some model: kept, since every check of a project without settings of its own asks.
    private var defaultsLimitSomeModel = false
    /// The tokens a model request is counted for at admission when it names no `max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`, on top of its prompt's estimate; settled with what the
    /// response reports.
    public var defaultMaxTokens: Int
    public var whenDatabaseUnavailable: OutagePolicy

    public init(models: [String: RateLimitSettings] = [:], defaultMaxTokens: Int = 1024, whenDatabaseUnavailable: OutagePolicy = .refuse) {
        self.models = models
        self.defaultsLimitSomeModel = Self.limitSomeModel(models)
        self.defaultMaxTokens = defaultMaxTokens
        self.whenDatabaseUnavailable = whenDatabaseUnavailable
    }

    /// The limits of `model` in force for a project whose own settings are `settings`.
    func limits(model: String, settings: [String: RateLimitSettings]) -> RateLimitSettings {
        let defaults = self.models[model] ?? RateLimitSettings()
        return (settings[model] ?? RateLimitSettings()).over(defaults)
    }

    /// Whether a project with `settings` has a limit on some model: then a request whose model cannot be told is
    /// refused, since the model it uses might be limited.
    func limitsSomeModel(settings: [String: RateLimitSettings]) -> Bool {
        // Most projects keep the defaults: answered without looking at each model.
        if settings.isEmpty { return self.defaultsLimitSomeModel }
        return self.models.keys.contains { !self.limits(model: $0, settings: settings).isUnlimited }
            || settings.keys.contains { !self.limits(model: $0, settings: settings).isUnlimited }
    }

    private static func limitSomeModel(_ models: [String: RateLimitSettings]) -> Bool {
        models.values.contains { !$0.over(RateLimitSettings()).isUnlimited }
    }

    public struct InvalidFileError: Error, CustomStringConvertible {
        public var file: String
        public var problem: String
        public var description: String { "the rate limits file \(self.file): \(self.problem)" }
    }

    /// Reads the file's JSON; every mistake is named.
    public static func load(contentsOf data: Data, file: String) throws -> RateLimitConfiguration {
        func invalid(_ problem: String) -> InvalidFileError { InvalidFileError(file: file, problem: problem) }
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw invalid("it is not a JSON object")
        }
        let known: Set<String> = ["models", "default_max_tokens", "when_database_unavailable"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw invalid("'\(unknown)' is not a setting (\(known.sorted().joined(separator: ", ")))")
        }
        var configuration = RateLimitConfiguration()
        if let models = object["models"] {
            guard case .object(let models) = models else { throw invalid("'models' must be an object of models") }
            for (model, value) in models {
                guard RateLimitConfiguration.isValidModelID(model) else { throw invalid("'\(model)' is not a model id") }
                guard case .object(let fields) = value else { throw invalid("the limits of '\(model)' must be an object") }
                var settings = RateLimitSettings()
                for (name, value) in fields {
                    guard case .integer(let integer) = value, integer >= 0, integer <= RateLimitSettings.maximumValue else {
                        throw invalid("'\(model)'.\(name) must be a whole number from 0 to \(RateLimitSettings.maximumValue)")
                    }
                    switch name {
                    case "max_requests_per_1_minute": settings.requestsPerMinute = integer
                    case "max_tokens_per_1_minute": settings.tokensPerMinute = integer
                    case "max_requests_per_1_day": settings.requestsPerDay = integer
                    default:
                        throw invalid(
                            "'\(model)'.\(name) is not a limit Keysmith enforces (max_requests_per_1_minute, max_tokens_per_1_minute, "
                                + "max_requests_per_1_day)"
                        )
                    }
                }
                configuration.models[model] = settings
            }
        }
        if let tokens = object["default_max_tokens"] {
            guard case .integer(let integer) = tokens, (1...10_000_000).contains(integer) else {
                throw invalid("'default_max_tokens' must be a whole number from 1 to 10000000")
            }
            configuration.defaultMaxTokens = integer
        }
        if let policy = object["when_database_unavailable"] {
            guard case .string(let text) = policy, let value = OutagePolicy(rawValue: text) else {
                throw invalid("'when_database_unavailable' must be \"refuse\" or \"admit\"")
            }
            configuration.whenDatabaseUnavailable = value
        }
        return configuration
    }

    /// A model id as the API takes it: 1 to 256 bytes without control characters (a `/` is fine:
    /// `meta-llama/Llama-3-8B`).
    static func isValidModelID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= ModelPermissions.maximumModelIDLength
            && !id.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}
