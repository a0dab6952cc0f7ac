/// Which part of a list to return: at most `limit` items that come after the item with id `after`.
public struct PageRequest: Sendable, Equatable {
    public static let defaultLimit = 20
    public static let limitRange = 1...100

    public var limit: Int
    public var after: String?

    public init(limit: Int = PageRequest.defaultLimit, after: String? = nil) {
        self.limit = limit
        self.after = after
    }
}

/// One page of a list in its stable order (creation time, then id).
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Exact: true only when at least one more item follows the last one.
    public var hasMore: Bool

    public init(items: [Item], hasMore: Bool) {
        self.items = items
        self.hasMore = hasMore
    }
}
