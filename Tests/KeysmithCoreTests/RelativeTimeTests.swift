import KeysmithCore
import Testing

@Suite("Times as people read them")
struct RelativeTimeTests {
    @Test(
        "Past and future, each unit until two of the next fit, rounded",
        arguments: [
            (0, "just now"), (-9, "just now"), (-45, "45 seconds ago"), (-119, "119 seconds ago"), (-120, "2 minutes ago"),
            (-3 * 60, "3 minutes ago"), (-119 * 60, "119 minutes ago"), (-2 * 3600, "2 hours ago"), (-47 * 3600, "47 hours ago"),
            (-2 * 86_400, "2 days ago"), (30 * 86_400 - 1, "in 30 days"), (30 * 86_400, "in 30 days"),
            (90 * 86_400 - 2, "in 3 months"), (365 * 86_400, "in 12 months"), (2 * 365 * 86_400, "in 2 years"),
            (86_400 * 61, "in 2 months"),
        ]
    )
    func phrases(offset: Int, expected: String) {
        let now = 1_750_000_000
        #expect(RelativeTime.phrase(now + offset, now: now) == expected)
    }

    @Test("No time is the word given")
    func none() {
        #expect(RelativeTime.phrase(nil, now: 0, none: "never") == "never")
    }

    @Test("A redacted key shortens to its prefix and last four characters")
    func shortened() {
        #expect(KeySecret.shortened(redacted: "sk-proj-****************Kf9f") == "sk-proj-…Kf9f")
        #expect(KeySecret.shortened(redacted: "no stars") == "no stars")
    }
}
