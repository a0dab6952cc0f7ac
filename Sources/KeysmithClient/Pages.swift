/// Every item of a list, fetched a page at a time as it is iterated: each page asks for the one after the previous
/// page's `last_id` until `has_more` is false.
///
/// ```swift
/// for try await key in client.apiKeys(project: projectID) { … }
/// ```
///
/// Iterating twice lists twice. A page that fails ends the iteration with its ``KeysmithClientError``.
public struct Pages<Item: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = Item

    let pageSize: Int
    let fetch: @Sendable (_ after: String?, _ limit: Int) async throws(KeysmithClientError) -> ListPage<Item>

    /// An iterator that fetches the first page when first asked for an item.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(pages: self)
    }

    /// Fetches the next page whenever the items of the previous one are used up.
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let pages: Pages
        var buffer: [Item] = []
        var index = 0
        var after: String?
        var finished = false

        init(pages: Pages) {
            self.pages = pages
        }

        public mutating func next() async throws(KeysmithClientError) -> Item? {
            while self.index == self.buffer.count {
                if self.finished { return nil }
                let page = try await self.pages.fetch(self.after, self.pages.pageSize)
                self.buffer = page.data
                self.index = 0
                self.after = page.lastID
                // A page that says more follow but names no last id could only repeat itself: stop there.
                self.finished = !page.hasMore || page.lastID == nil
            }
            defer { self.index += 1 }
            return self.buffer[self.index]
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(KeysmithClientError) -> Item? {
            try await self.next()
        }
    }

    /// All the items, in order, in one array.
    public func collect() async throws(KeysmithClientError) -> [Item] {
        var items: [Item] = []
        var iterator = self.makeAsyncIterator()
        while let item = try await iterator.next() {
            items.append(item)
        }
        return items
    }
}
