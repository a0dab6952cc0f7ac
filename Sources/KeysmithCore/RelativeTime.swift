/// A time as people read it, relative to now: "just now", "3 minutes ago", "in 30 days". Each unit is used until
/// two of the next larger one fit, so that 30 days stay days and 90 minutes stay minutes. What the CLI's tables and
/// the dashboard's pages show.
public enum RelativeTime {
    public static func phrase(_ time: UnixSeconds, now: UnixSeconds) -> String {
        let difference = now - time
        let magnitude = abs(difference)
        if magnitude < 10 { return "just now" }
        let units: [(Int, String)] = [(86_400 * 365, "year"), (86_400 * 30, "month"), (86_400, "day"), (3600, "hour"), (60, "minute")]
        let (size, name) = units.first { magnitude >= 2 * $0.0 } ?? (1, "second")
        // Rounded, not truncated: a key made to expire in 90 days reads "in 3 months" a second later, not "in 2".
        let count = (magnitude + size / 2) / size
        let phrase = "\(count) \(name)\(count == 1 ? "" : "s")"
        return difference > 0 ? "\(phrase) ago" : "in \(phrase)"
    }

    /// `none` when there is no time ("never" for a key never used, say).
    public static func phrase(_ time: UnixSeconds?, now: UnixSeconds, none: String) -> String {
        time.map { self.phrase($0, now: now) } ?? none
    }
}

extension KeySecret {
    /// A redacted key short enough for a table: `sk-proj-…Kf9f` for `sk-proj-****…****Kf9f`.
    public static func shortened(redacted: String) -> String {
        guard let firstStar = redacted.firstIndex(of: "*"), let lastStar = redacted.lastIndex(of: "*") else { return redacted }
        return String(redacted[..<firstStar]) + "…" + String(redacted[redacted.index(after: lastStar)...])
    }
}
