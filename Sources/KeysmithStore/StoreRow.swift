import SQLiteNIO

/// A result row, read by column name as plain values.
public struct StoreRow: Sendable {
    private let row: SQLiteRow

    init(_ row: SQLiteRow) {
        self.row = row
    }

    private func value(_ column: String) throws -> SQLiteData {
        guard let value = self.row.column(column) else { throw StoreRowError(column: column, problem: "is not in the result") }
        return value
    }

    public func string(_ column: String) throws -> String {
        guard case .text(let text) = try self.value(column) else {
            throw StoreRowError(column: column, problem: "is not text")
        }
        return text
    }

    public func optionalString(_ column: String) throws -> String? {
        switch try self.value(column) {
        case .null: nil
        case .text(let text): text
        default: throw StoreRowError(column: column, problem: "is not text")
        }
    }

    public func int(_ column: String) throws -> Int {
        guard case .integer(let value) = try self.value(column) else {
            throw StoreRowError(column: column, problem: "is not an integer")
        }
        return Int(value)
    }

    public func optionalInt(_ column: String) throws -> Int? {
        switch try self.value(column) {
        case .null: nil
        case .integer(let value): Int(value)
        default: throw StoreRowError(column: column, problem: "is not an integer")
        }
    }
}

/// A row did not have the shape the store expects: a bug or a damaged database, never a client mistake.
struct StoreRowError: Error, CustomStringConvertible {
    var column: String
    var problem: String

    var description: String { "column \(self.column) \(self.problem)" }
}
