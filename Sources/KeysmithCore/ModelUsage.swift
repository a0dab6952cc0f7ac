/// What the gateway records of the model requests it proxied: per minute and per project, key owner, key and model,
/// as OpenAI's Usage API reports them (`/v1/organization/usage/completions` and `/embeddings`).
public enum ModelUsageKind: String, Sendable, CaseIterable {
    /// Chat completions, completions and the Responses API.
    case completions
    case embeddings
}

/// One minute's row of recorded usage: whose, of what, when.
public struct ModelUsageKey: Hashable, Sendable {
    public var organizationID: OrganizationID
    public var kind: ModelUsageKind
    /// The minute's first second (Unix seconds, a multiple of 60).
    public var minute: UnixSeconds
    public var projectID: ProjectID
    /// The key's owner: a user's id, or a service account's (Usage API's `user_id`).
    public var ownerID: String
    public var apiKeyID: APIKeyID
    /// The model the request named; empty when it named none.
    public var model: String

    public init(
        organizationID: OrganizationID,
        kind: ModelUsageKind,
        minute: UnixSeconds,
        projectID: ProjectID,
        ownerID: String,
        apiKeyID: APIKeyID,
        model: String
    ) {
        self.organizationID = organizationID
        self.kind = kind
        self.minute = minute - minute % 60
        self.projectID = projectID
        self.ownerID = ownerID
        self.apiKeyID = apiKeyID
        self.model = model
    }
}

/// Requests and tokens, summed. A request whose answer reported no usage counts in ``requests`` and in
/// ``requestsWithoutUsage``, and adds no tokens: its tokens are unknown, not zero.
public struct ModelUsageCounts: Sendable, Equatable {
    public var requests: Int
    public var requestsWithoutUsage: Int
    public var inputTokens: Int
    public var cachedInputTokens: Int
    public var outputTokens: Int

    public init(requests: Int = 0, requestsWithoutUsage: Int = 0, inputTokens: Int = 0, cachedInputTokens: Int = 0, outputTokens: Int = 0) {
        self.requests = requests
        self.requestsWithoutUsage = requestsWithoutUsage
        self.inputTokens = inputTokens
        self.cachedInputTokens = cachedInputTokens
        self.outputTokens = outputTokens
    }

    /// One request with the usage its answer reported, or nil for an answer that reported none.
    public static func request(_ usage: ReportedUsage?) -> ModelUsageCounts {
        guard let usage else { return ModelUsageCounts(requests: 1, requestsWithoutUsage: 1) }
        return ModelUsageCounts(
            requests: 1,
            inputTokens: usage.inputTokens,
            cachedInputTokens: usage.cachedInputTokens,
            outputTokens: usage.outputTokens
        )
    }

    public static func += (lhs: inout ModelUsageCounts, rhs: ModelUsageCounts) {
        lhs.requests += rhs.requests
        lhs.requestsWithoutUsage += rhs.requestsWithoutUsage
        lhs.inputTokens += rhs.inputTokens
        lhs.cachedInputTokens += rhs.cachedInputTokens
        lhs.outputTokens += rhs.outputTokens
    }
}

/// The tokens one answer reported in its `usage`.
public struct ReportedUsage: Sendable, Equatable {
    public var inputTokens: Int
    public var cachedInputTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int, cachedInputTokens: Int = 0, outputTokens: Int) {
        self.inputTokens = inputTokens
        self.cachedInputTokens = cachedInputTokens
        self.outputTokens = outputTokens
    }
}

/// What the Usage API can group by.
public enum UsageGrouping: String, Sendable, CaseIterable {
    case projectID = "project_id"
    case userID = "user_id"
    case apiKeyID = "api_key_id"
    case model
}

/// One page of the Usage API: the buckets `[start + i·width, start + (i+1)·width)` up to `end`, of one kind, in one
/// organization, filtered and grouped.
public struct UsageQuery: Sendable, Equatable {
    public var organizationID: OrganizationID
    public var kind: ModelUsageKind
    public var start: UnixSeconds
    public var end: UnixSeconds
    /// The buckets' width in seconds: 60, 3600 or 86400.
    public var bucketWidth: Int
    public var groupBy: Set<UsageGrouping>
    public var projectIDs: [String]
    public var userIDs: [String]
    public var apiKeyIDs: [String]
    public var models: [String]

    public init(
        organizationID: OrganizationID,
        kind: ModelUsageKind,
        start: UnixSeconds,
        end: UnixSeconds,
        bucketWidth: Int,
        groupBy: Set<UsageGrouping> = [],
        projectIDs: [String] = [],
        userIDs: [String] = [],
        apiKeyIDs: [String] = [],
        models: [String] = []
    ) {
        self.organizationID = organizationID
        self.kind = kind
        self.start = start
        self.end = end
        self.bucketWidth = bucketWidth
        self.groupBy = groupBy
        self.projectIDs = projectIDs
        self.userIDs = userIDs
        self.apiKeyIDs = apiKeyIDs
        self.models = models
    }
}

/// One group's totals in one bucket; the fields not grouped by are nil.
public struct UsageTotals: Sendable, Equatable {
    public var bucketStart: UnixSeconds
    public var projectID: String?
    public var userID: String?
    public var apiKeyID: String?
    public var model: String?
    public var counts: ModelUsageCounts

    public init(bucketStart: UnixSeconds, projectID: String?, userID: String?, apiKeyID: String?, model: String?, counts: ModelUsageCounts) {
        self.bucketStart = bucketStart
        self.projectID = projectID
        self.userID = userID
        self.apiKeyID = apiKeyID
        self.model = model
        self.counts = counts
    }
}
