import HTTPTypes

extension HTTPFields {
    /// The token of `Authorization: Bearer <token>`; also `api-key: <token>` when `allowAPIKeyHeader` is set
    /// (Azure-style clients). Nil when neither is present.
    func bearerToken(allowAPIKeyHeader: Bool = false) -> Substring? {
        if let authorization = self[.authorization] {
            let trimmed = authorization.drop { $0 == " " }
            // "Bearer " in any case, compared without allocating.
            var scheme = trimmed.utf8.makeIterator()
            for expected in "bearer ".utf8 {
                guard let byte = scheme.next(), byte | 0x20 == expected else { return nil }
            }
            let token = trimmed.dropFirst(7).drop { $0 == " " }
            return token.isEmpty ? nil : token
        }
        if allowAPIKeyHeader, let value = self[HTTPField.Name("api-key")!] {
            let token = value.drop { $0 == " " }
            return token.isEmpty ? nil : token[...]
        }
        return nil
    }
}
