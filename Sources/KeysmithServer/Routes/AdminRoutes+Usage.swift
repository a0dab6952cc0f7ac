import Hummingbird
import KeysmithCore
import KeysmithDomain

extension AdminRoutes {
    // MARK: Usage (what the gateway recorded)

    @Sendable func usageCompletions(_ request: Request, context: AdminRequestContext) async throws -> Response {
        try await self.usage(request, context: context, kind: .completions)
    }

    @Sendable func usageEmbeddings(_ request: Request, context: AdminRequestContext) async throws -> Response {
        try await self.usage(request, context: context, kind: .embeddings)
    }

    /// A bucket's width, and how many buckets a page holds by default and at most (OpenAI's).
    private enum BucketWidth: String, CaseIterable {
        case minute = "1m"
        case hour = "1h"
        case day = "1d"

        var seconds: Int {
            switch self {
            case .minute: 60
            case .hour: 3600
            case .day: 86400
            }
        }

        var limits: (default: Int, maximum: Int) {
            switch self {
            case .minute: (60, 1440)
            case .hour: (24, 168)
            case .day: (7, 31)
            }
        }
    }

    /// OpenAI's Usage API on what the gateway recorded: buckets of `bucket_width` from `start_time` (inclusive) to
    /// `end_time` (exclusive; default now), each with one result per group (`group_by`), or one result for all when
    /// not grouped, and none when nothing was recorded in it. `page` is the `next_page` of the page before.
    private func usage(_ request: Request, context: AdminRequestContext, kind: ModelUsageKind) async throws -> Response {
        let query = try QueryParameters(request.uri.query)
        guard let start = try query.integer("start_time") else { throw OpenAIError.missingParameter("start_time") }
        // Up to the last second of the year 9999: far enough, and no arithmetic on the times can overflow.
        let times = 0...253_402_300_799
        guard times.contains(start) else {
            throw OpenAIError.invalid(
                "Invalid 'start_time': \(start). It must be a Unix time in seconds, from 0 to 253402300799.",
                param: "start_time"
            )
        }
        let width = try query.enumeration("bucket_width", default: BucketWidth.day)
        let end = try query.integer("end_time") ?? self.keysmith.clock.now()
        guard times.contains(end) else {
            throw OpenAIError.invalid("Invalid 'end_time': \(end). It must be a Unix time in seconds, from 0 to 253402300799.", param: "end_time")
        }
        guard end > start else {
            throw OpenAIError.invalid("Invalid 'end_time': \(end). It must be after 'start_time' (\(start)).", param: "end_time")
        }
        let limits = width.limits
        let limit = try query.integer("limit") ?? limits.default
        guard (1...limits.maximum).contains(limit) else {
            throw OpenAIError.invalid(
                "Invalid 'limit': \(limit). With bucket_width \(width.rawValue) it must be between 1 and \(limits.maximum).",
                param: "limit"
            )
        }
        var groups: Set<UsageGrouping> = []
        var groupsByBatch = false
        for name in query.all("group_by") {
            if let grouping = UsageGrouping(rawValue: name) {
                groups.insert(grouping)
            } else if kind == .completions && ["batch", "service_tier", "api_source"].contains(name) {
                // Every request through the gateway is a synchronous one (batch false) of no service tier or API
                // source: grouping by them makes no more groups.
                groupsByBatch = groupsByBatch || name == "batch"
            } else {
                let allowed = UsageGrouping.allCases.map(\.rawValue) + (kind == .completions ? ["batch", "service_tier", "api_source"] : [])
                throw OpenAIError.invalid(
                    "Invalid 'group_by': '\(name)'. Supported values are: \(allowed.map { "'\($0)'" }.joined(separator: ", ")).",
                    param: "group_by"
                )
            }
        }
        // The first bucket of this page: the start, or where the page before stopped.
        var first = start
        if let page = query["page"], !page.isEmpty {
            guard page.hasPrefix("bucket_"), let time = Int(page.dropFirst(7)), time > start, time < end,
                (time - start) % width.seconds == 0
            else {
                throw OpenAIError.invalid(
                    "Invalid 'page': '\(page)'. Pass the next_page of a response to the same query.",
                    param: "page"
                )
            }
            first = time
        }
        let bucketsLeft = (end - first + width.seconds - 1) / width.seconds
        let count = min(limit, bucketsLeft)
        let pageEnd = min(end, first + count * width.seconds)
        // `batch=true` asks for batch jobs only, which the gateway never makes.
        let onlyBatch = kind == .completions ? try query.bool("batch", default: false) : false
        let totals =
            onlyBatch
            ? []
            : try await self.reader(context).usage(
                UsageQuery(
                    organizationID: context.principal.organizationID,
                    kind: kind,
                    start: first,
                    end: pageEnd,
                    bucketWidth: width.seconds,
                    groupBy: groups,
                    projectIDs: query.all("project_ids"),
                    userIDs: query.all("user_ids"),
                    apiKeyIDs: query.all("api_key_ids"),
                    models: query.all("models")
                )
            )
        let byBucket = Dictionary(grouping: totals, by: \.bucketStart)
        let hasMore = pageEnd < end
        return Wire.response { writer in
            writer.object { writer in
                writer.field("object", literal: "page")
                writer.key("data")
                writer.array { writer in
                    for index in 0..<count {
                        let bucketStart = first + index * width.seconds
                        writer.object { writer in
                            writer.field("object", literal: "bucket")
                            writer.field("start_time", bucketStart)
                            writer.field("end_time", bucketStart + width.seconds)
                            writer.key("results")
                            writer.array { writer in
                                for total in byBucket[bucketStart] ?? [] {
                                    Self.writeUsage(&writer, total, kind: kind, groupedByBatch: groupsByBatch)
                                }
                            }
                        }
                    }
                }
                writer.field("has_more", hasMore)
                writer.field("next_page", hasMore ? "bucket_\(pageEnd)" : nil)
            }
        }
    }

    private static func writeUsage(_ writer: inout JSONWriter, _ total: UsageTotals, kind: ModelUsageKind, groupedByBatch: Bool) {
        let counts = total.counts
        writer.object { writer in
            switch kind {
            case .completions:
                writer.field("object", literal: "organization.usage.completions.result")
                writer.field("input_tokens", counts.inputTokens)
                writer.field("output_tokens", counts.outputTokens)
                writer.field("input_cached_tokens", counts.cachedInputTokens)
                writer.field("input_uncached_tokens", counts.inputTokens - counts.cachedInputTokens)
                writer.field("num_model_requests", counts.requests)
            case .embeddings:
                writer.field("object", literal: "organization.usage.embeddings.result")
                writer.field("input_tokens", counts.inputTokens)
                writer.field("num_model_requests", counts.requests)
            }
            // A Keysmith extension: requests whose answers reported no usage, whose tokens are not in the sums.
            writer.field("num_model_requests_without_usage", counts.requestsWithoutUsage)
            writer.field("project_id", total.projectID)
            writer.field("user_id", total.userID)
            writer.field("api_key_id", total.apiKeyID)
            // A request that named no model is recorded under none.
            writer.field("model", total.model.flatMap { $0.isEmpty ? nil : $0 })
            if kind == .completions {
                writer.key("batch")
                if groupedByBatch { writer.bool(false) } else { writer.null() }
                writer.field("service_tier", nil as String?)
                writer.field("api_source", nil as String?)
            }
        }
    }
}
