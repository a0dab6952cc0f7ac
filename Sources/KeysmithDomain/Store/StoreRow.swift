import KeysmithCore

/// A value as the database hands it over, or as the store binds it.
enum StoreValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// The column names of a result, shared by all of its rows, with the position of each.
final class StoreColumns: Sendable {
    let names: [String]
    private let positions: [String: Int]

    init(_ names: [String]) {
        self.names = names
        var positions: [String: Int] = [:]
        for (position, name) in names.enumerated() where positions[name] == nil {
            positions[name] = position
        }
        self.positions = positions
    }

    func position(of name: String) -> Int? {
        self.positions[name]
    }
}

/// A result row read by position, as the hot paths read rows: a ``StoreRow`` that was copied out, or the row an
/// engine's statement is on, read in place (see ``SQLSession/rows(_:decode:)``).
protocol StoreRowReader {
    var columnNames: [String] { get }
    /// The row as values of its own, to keep.
    func copy() -> StoreRow
    func string(at position: Int) throws -> String
    func optionalString(at position: Int) throws -> String?
    func int(at position: Int) throws -> Int
    func optionalInt(at position: Int) throws -> Int?
}

extension StoreRowReader {
    /// The column as the id of the object the caller's context names.
    func id<Object>(at position: Int) throws -> ObjectID<Object> {
        ObjectID(rawValue: try self.string(at: position))
    }

    func optionalID<Object>(at position: Int) throws -> ObjectID<Object>? {
        try self.optionalString(at: position).map(ObjectID.init(rawValue:))
    }
}

/// A result row, read by column name as plain values.
struct StoreRow: StoreRowReader, Sendable {
    let columns: StoreColumns
    let values: [StoreValue]

    init(columns: StoreColumns, values: [StoreValue]) {
        self.columns = columns
        self.values = values
    }

    private func position(_ column: String) throws -> Int {
        guard let position = self.columns.position(of: column) else {
            throw StoreRowError(column: column, problem: "is not in the result")
        }
        return position
    }

    func string(_ column: String) throws -> String { try self.string(at: self.position(column)) }
    func optionalString(_ column: String) throws -> String? { try self.optionalString(at: self.position(column)) }
    func int(_ column: String) throws -> Int { try self.int(at: self.position(column)) }
    func optionalInt(_ column: String) throws -> Int? { try self.optionalInt(at: self.position(column)) }
    func id<Object>(_ column: String) throws -> ObjectID<Object> { try self.id(at: self.position(column)) }

    // By position, for the hot paths whose SELECT lists are built from the same enumeration that reads them.

    var columnNames: [String] { self.columns.names }
    func copy() -> StoreRow { self }

    func string(at position: Int) throws -> String {
        guard case .text(let text) = self.values[position] else { throw self.error(at: position, "is not text") }
        return text
    }

    func optionalString(at position: Int) throws -> String? {
        switch self.values[position] {
        case .null: nil
        case .text(let text): text
        default: throw self.error(at: position, "is not text")
        }
    }

    func int(at position: Int) throws -> Int {
        guard case .integer(let value) = self.values[position] else { throw self.error(at: position, "is not an integer") }
        return Int(value)
    }

    func optionalInt(at position: Int) throws -> Int? {
        switch self.values[position] {
        case .null: nil
        case .integer(let value): Int(value)
        default: throw self.error(at: position, "is not an integer")
        }
    }

    private func error(at position: Int, _ problem: String) -> StoreRowError {
        StoreRowError(column: self.columns.names[position], problem: problem)
    }
}

/// A row did not have the shape the store expects: a bug or a damaged database, never a client mistake.
struct StoreRowError: Error, CustomStringConvertible {
    var column: String
    var problem: String

    var description: String { "column \(self.column) \(self.problem)" }
}
