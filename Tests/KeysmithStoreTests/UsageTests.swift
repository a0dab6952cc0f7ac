import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Store: model usage")
struct UsageTests {
    @Test(
        "Batches for one minute add up, from two replicas at once too; queries bucket, group and filter them",
        arguments: TestEngine.available
    )
    func usageAddsUpAndQueries(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let organizationID = fixture.organizationID
            @Sendable func key(_ minute: Int, project: String = "proj_a", owner: String = "user-a", apiKey: String = "key_a", model: String = "m1")
                -> ModelUsageKey
            {
                ModelUsageKey(
                    organizationID: organizationID,
                    kind: .completions,
                    minute: minute,
                    projectID: ProjectID(rawValue: project),
                    ownerID: owner,
                    apiKeyID: APIKeyID(rawValue: apiKey),
                    model: model
                )
            }
            let request = ModelUsageCounts.request(ReportedUsage(inputTokens: 10, cachedInputTokens: 4, outputTokens: 3))
            // 1,000 batches of one request for one minute, half through each replica, all at once.
            try await fixture.withReplica { replica in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<1000 {
                        let store = index.isMultiple(of: 2) ? fixture.store : replica
                        group.addTask { try await store.recordModelUsage([key(6000): request]) }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(key(6059).minute == 6000)
            try await fixture.store.recordModelUsage([
                key(6060, model: "m2"): .request(nil),
                key(6000 + 3600, project: "proj_b", owner: "svc_acct_b", apiKey: "key_b"): request,
            ])
            var embedding = key(6000)
            embedding.kind = .embeddings
            try await fixture.store.recordModelUsage([embedding: ModelUsageCounts.request(ReportedUsage(inputTokens: 99, outputTokens: 0))])

            let all = try await fixture.store.usage(
                UsageQuery(organizationID: organizationID, kind: .completions, start: 6000, end: 6000 + 7200, bucketWidth: 3600)
            )
            #expect(all.map(\.bucketStart) == [6000, 9600])
            #expect(
                all[0].counts
                    == ModelUsageCounts(requests: 1001, requestsWithoutUsage: 1, inputTokens: 10_000, cachedInputTokens: 4000, outputTokens: 3000)
            )
            #expect(all[0].projectID == nil && all[0].model == nil && all[1].counts.requests == 1)

            let byModel = try await fixture.store.usage(
                UsageQuery(organizationID: organizationID, kind: .completions, start: 6000, end: 6120, bucketWidth: 60, groupBy: [.model, .userID])
            )
            #expect(byModel.map { [$0.bucketStart, $0.counts.requests] } == [[6000, 1000], [6060, 1]])
            #expect(byModel.map(\.model) == ["m1", "m2"] && byModel.map(\.userID) == ["user-a", "user-a"])

            let filtered = try await fixture.store.usage(
                UsageQuery(
                    organizationID: organizationID,
                    kind: .completions,
                    start: 0,
                    end: 20_000,
                    bucketWidth: 86400,
                    groupBy: [.projectID, .apiKeyID],
                    projectIDs: ["proj_b"]
                )
            )
            #expect(filtered.map(\.projectID) == ["proj_b"] && filtered.map(\.apiKeyID) == ["key_b"])
            // Buckets start at the query's start, not at midnight.
            let shifted = try await fixture.store.usage(
                UsageQuery(organizationID: organizationID, kind: .completions, start: 6030, end: 6150, bucketWidth: 60)
            )
            #expect(shifted.map(\.bucketStart) == [6030] && shifted[0].counts.requests == 1)

            let embeddings = try await fixture.store.usage(
                UsageQuery(organizationID: organizationID, kind: .embeddings, start: 0, end: 20_000, bucketWidth: 86400)
            )
            #expect(embeddings.map(\.counts.inputTokens) == [99])
            let otherOrganization = try await fixture.store.usage(
                UsageQuery(organizationID: OrganizationID(rawValue: "org-other"), kind: .completions, start: 0, end: 20_000, bucketWidth: 86400)
            )
            #expect(otherOrganization.isEmpty)
        }
    }
}
