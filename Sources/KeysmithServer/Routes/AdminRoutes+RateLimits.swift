import Hummingbird
import KeysmithCore
import KeysmithDomain

/// A project's rate limits, as OpenAI's API has them: one `project.rate_limit` per model, its id `rl-<model>`.
///
/// The models listed are those the operator gave defaults for (`--rate-limits`) and those the project has settings
/// of its own for; a project may set limits on any model (posting `rl-<model>`), listed from then on. A value shows
/// the limit in force: the project's own when it set one, else the operator's default; 0 is no limit (the spec's
/// required integers cannot be null). `max_requests_per_1_day` is shown only where a day's limit is in force.
extension AdminRoutes {
    struct RateLimitEntry {
        var model: String
        var limits: RateLimitSettings

        var id: String { RateLimitEntry.prefix + self.model }

        static let prefix = "rl-"
    }

    @Sendable func listRateLimits(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        let page = try query.page(defaultLimit: 100, range: 1...100)
        let before = query["before"].flatMap { $0.isEmpty ? nil : $0 }
        if page.after != nil, before != nil {
            throw OpenAIError.invalid("Give 'after' or 'before', not both.", param: "before")
        }
        let settings = try await self.reader(context).rateLimitSettings(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id")
        )
        let models = Set(self.rateLimits.models.keys).union(settings.keys).sorted()
        var entries = models.map { RateLimitEntry(model: $0, limits: self.rateLimits.limits(model: $0, settings: settings)) }
        let hasMore: Bool
        if let before {
            entries = entries.filter { $0.id < before }
            hasMore = entries.count > page.limit
            entries = Array(entries.suffix(page.limit))
        } else {
            if let after = page.after { entries = entries.filter { $0.id > after } }
            hasMore = entries.count > page.limit
            entries = Array(entries.prefix(page.limit))
        }
        return Wire.list(Page(items: entries, hasMore: hasMore), id: { $0.id }) { writer, entry in
            Self.write(&writer, entry)
        }
    }

    @Sendable func updateRateLimit(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        let id = PercentEncoding.decode(try context.parameters.requireID("rate_limit_id"), plusAsSpace: false)
        let model = String(id.dropFirst(RateLimitEntry.prefix.count))
        guard id.hasPrefix(RateLimitEntry.prefix), RateLimitConfiguration.isValidModelID(model) else {
            throw OpenAIError(
                status: .notFound,
                message: "No rate limit with id '\(id)': a rate limit's id is 'rl-' and its model's id.",
                param: "rate_limit_id",
                code: "rate_limit_not_found"
            )
        }
        let body = try await JSONBody.parse(request)
        let range = 0...RateLimitSettings.maximumValue
        // Keysmith does not count images, audio or batches, so it cannot enforce a limit on them: refused rather
        // than stored and ignored.
        for name in ["max_images_per_1_minute", "max_audio_megabytes_per_1_minute", "batch_1_day_max_input_tokens"] where body.has(name) {
            throw OpenAIError.invalid(
                "Keysmith does not count what '\(name)' limits, so it cannot enforce it; it enforces max_requests_per_1_minute, "
                    + "max_tokens_per_1_minute and max_requests_per_1_day.",
                param: name,
                code: "unsupported_parameter"
            )
        }
        let changes = RateLimitSettings(
            requestsPerMinute: try body.integer("max_requests_per_1_minute", in: range),
            tokensPerMinute: try body.integer("max_tokens_per_1_minute", in: range),
            requestsPerDay: try body.integer("max_requests_per_1_day", in: range)
        )
        let stored = try await self.keysmith(as: context).updateRateLimit(
            organizationID: context.principal.organizationID,
            projectID: projectID,
            model: model,
            rateLimitID: id,
            changes
        )
        let entry = RateLimitEntry(model: model, limits: self.rateLimits.limits(model: model, settings: [model: stored]))
        return Wire.response { Self.write(&$0, entry) }
    }

    // MARK: A key's own limits (an extension)

    @Sendable func retrieveAPIKeyRateLimits(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let keyID: APIKeyID = try context.parameters.requireID("api_key_id")
        let limits = try await self.reader(context).apiKeyRateLimits(
            organizationID: context.principal.organizationID,
            projectID: try context.parameters.requireID("project_id"),
            keyID: keyID
        )
        return Wire.response { Self.write(&$0, keyID: keyID, limits) }
    }

    @Sendable func updateAPIKeyRateLimits(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let keyID: APIKeyID = try context.parameters.requireID("api_key_id")
        let projectID: ProjectID = try context.parameters.requireID("project_id")
        let body = try await JSONBody.parse(request)
        let range = 0...RateLimitSettings.maximumValue
        let changes = APIKeyRateLimits(
            requestsPerMinute: try body.integer("max_requests_per_1_minute", in: range),
            tokensPerMinute: try body.integer("max_tokens_per_1_minute", in: range),
            concurrentRequests: try body.integer("max_concurrent_requests", in: 0...1_000_000)
        )
        let stored = try await self.keysmith(as: context).updateAPIKeyRateLimits(
            organizationID: context.principal.organizationID,
            projectID: projectID,
            keyID: keyID,
            changes
        )
        return Wire.response { Self.write(&$0, keyID: keyID, stored) }
    }

    static func write(_ writer: inout JSONWriter, keyID: APIKeyID, _ limits: APIKeyRateLimits) {
        writer.object { writer in
            writer.field("object", literal: "organization.project.api_key.rate_limits")
            writer.field("api_key_id", keyID)
            writer.field("max_requests_per_1_minute", limits.requestsPerMinute ?? 0)
            writer.field("max_tokens_per_1_minute", limits.tokensPerMinute ?? 0)
            writer.field("max_concurrent_requests", limits.concurrentRequests ?? 0)
        }
    }

    static func write(_ writer: inout JSONWriter, _ entry: RateLimitEntry) {
        writer.object { writer in
            writer.field("object", literal: "project.rate_limit")
            writer.field("id", entry.id)
            writer.field("model", entry.model)
            writer.field("max_requests_per_1_minute", entry.limits.requestsPerMinute ?? 0)
            writer.field("max_tokens_per_1_minute", entry.limits.tokensPerMinute ?? 0)
            if let perDay = entry.limits.requestsPerDay {
                writer.field("max_requests_per_1_day", perDay)
            }
        }
    }
}
