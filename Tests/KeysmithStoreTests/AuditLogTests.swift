import KeysmithCore
import KeysmithTestSupport
import Testing

@testable import KeysmithDomain

@Suite("Store: the audit log")
struct AuditLogTests {
    @Test("10,000 events page exactly, newest first, forwards and back, filtered and not", arguments: TestEngine.available)
    func tenThousandEvents(engine: TestEngine) async throws {
        try await StoreFixture.run(engine) { fixture in
            let organizationID = fixture.organizationID
            // Every tenth event is a user.added; the rest are renames of one of 7 projects' worth of ids.
            for batch in 0..<10 {
                try await fixture.store.engine.write { database in
                    for index in (batch * 1_000)..<((batch + 1) * 1_000) {
                        let event =
                            index % 10 == 9
                            ? AuditEvent(.userAdded, resourceID: "user-\(index)", data: [("role", .string("reader"))])
                            : AuditEvent(.projectUpdated, resourceID: "proj_\(index % 7)", projectID: "proj_\(index % 7)")
                        try await SQLStore.recordEvent(database, event, organizationID: organizationID, at: 1_000 + index)
                    }
                }
            }

            func walk(_ filter: AuditLogFilter, limit: Int) async throws -> [AuditLogEntry] {
                var entries: [AuditLogEntry] = []
                var after: String?
                while true {
                    let page = try await fixture.store.listAuditLogs(
                        organizationID: organizationID,
                        filter: filter,
                        limit: limit,
                        after: after,
                        before: nil
                    )
                    entries += page.items
                    guard page.hasMore else { break }
                    #expect(page.items.count == limit)
                    after = page.items.last?.id
                }
                return entries
            }

            let all = try await walk(AuditLogFilter(), limit: 100)
            #expect(all.count == 10_000)
            #expect(Set(all.map(\.id)).count == 10_000)
            #expect(all.map(\.effectiveAt) == (0..<10_000).reversed().map { 1_000 + $0 })

            let added = try await walk(AuditLogFilter(types: [.userAdded]), limit: 37)
            #expect(added.count == 1_000)
            #expect(added.allSatisfy { $0.type == .userAdded })
            #expect(added.map(\.effectiveAt) == stride(from: 9_999, through: 9, by: -10).map { 1_000 + $0 })

            let inProject = try await walk(AuditLogFilter(projectIDs: ["proj_3"]), limit: 100)
            #expect(inProject.count == (0..<10_000).filter { $0 % 10 != 9 && $0 % 7 == 3 }.count)
            #expect(inProject.allSatisfy { $0.projectID == "proj_3" && $0.projectName == nil })

            let window = try await walk(AuditLogFilter(effectiveFrom: 1_100, effectiveBefore: 1_200), limit: 100)
            #expect(window.map(\.effectiveAt) == (1_100..<1_200).reversed().map { $0 })

            // Time ranges read both ways (narrow ones through the time index, wide ones by walking the log) page the
            // same, alone and with another filter, from either end of the log.
            let times = (0..<10_000).map { 1_000 + $0 }
            for (filter, expected) in [
                (AuditLogFilter(effectiveAfter: 99_999), [Int]()),
                (AuditLogFilter(effectiveThrough: 10), []),
                (AuditLogFilter(effectiveAfter: 10_500), times.filter { $0 > 10_500 }),
                (AuditLogFilter(effectiveAfter: 2_000), times.filter { $0 > 2_000 }),
                (AuditLogFilter(effectiveBefore: 1_500), times.filter { $0 < 1_500 }),
                (AuditLogFilter(effectiveBefore: 9_000), times.filter { $0 < 9_000 }),
                (AuditLogFilter(effectiveFrom: 3_000, effectiveThrough: 6_999), times.filter { (3_000...6_999).contains($0) }),
            ] {
                #expect(try await walk(filter, limit: 100).map(\.effectiveAt) == expected.reversed(), "\(filter)")
                var typed = filter
                typed.types = [.userAdded]
                let expectedTyped = expected.filter { ($0 - 1_000) % 10 == 9 }
                #expect(try await walk(typed, limit: 50).map(\.effectiveAt) == expectedTyped.reversed(), "\(typed)")
            }

            // `before` walks back towards newer events, each page still newest first.
            var newer: [AuditLogEntry] = []
            var before: String? = all.last?.id
            while let cursor = before {
                let page = try await fixture.store.listAuditLogs(
                    organizationID: organizationID,
                    filter: AuditLogFilter(),
                    limit: 100,
                    after: nil,
                    before: cursor
                )
                newer = page.items + newer
                before = page.hasMore ? page.items.first?.id : nil
            }
            #expect(newer.map(\.id) == Array(all.dropLast().map(\.id)))

            // An unknown cursor is refused with or without events to page through (a time range holding none).
            for filter in [AuditLogFilter(), AuditLogFilter(effectiveAfter: 99_999)] {
                await expectRefusal(.unknownCursor("audit_log-nope")) {
                    _ = try await fixture.store.listAuditLogs(
                        organizationID: organizationID,
                        filter: filter,
                        limit: 20,
                        after: "audit_log-nope",
                        before: nil
                    )
                }
                await expectRefusal(.unknownBeforeCursor("audit_log-nope")) {
                    _ = try await fixture.store.listAuditLogs(
                        organizationID: organizationID,
                        filter: filter,
                        limit: 20,
                        after: nil,
                        before: "audit_log-nope"
                    )
                }
            }
        }
    }
}
