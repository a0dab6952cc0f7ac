import Foundation
import KeysmithClient
import KeysmithCore

/// What a remote command prints on standard output: aligned tables and field lists for people, or with `--json`
/// the API's objects as one JSON document for scripts. Notes for people (more pages, store a key) go to standard
/// error, so that standard output stays what a script expects.
struct Output {
    var json: Bool
    var now = Int(Date().timeIntervalSince1970)

    init(json: Bool) {
        self.json = json
    }

    /// A list: a table with `columns`, one row per item; with `--json`, the array of the items' objects.
    func list<Item: Sendable>(_ items: [Item], json: (Item) -> JSONValue, columns: [String], row: (Item) -> [String]) {
        if self.json {
            self.write(.array(items.map(json)))
            return
        }
        print(Self.table(header: columns, rows: items.map(row)), terminator: "")
    }

    /// One object: `field  value` lines; with `--json`, its object.
    func object(_ json: JSONValue, _ fields: [(String, String)]) {
        if self.json {
            self.write(json)
            return
        }
        let width = fields.map(\.0.count).max() ?? 0
        for (name, value) in fields {
            print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
    }

    func write(_ value: JSONValue) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // A JSONValue always encodes.
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    /// A line for people on standard error (never part of what scripts read).
    func note(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// After a list: says more items exist than were shown, when they do.
    func more(_ hasMore: Bool) {
        if hasMore, !self.json {
            self.note("(more follow: --all lists every one)")
        }
    }

    /// The one time a key's plaintext is shown.
    func storeKeyWarning() {
        self.note("keysmith: store this key now: it is shown only this once.")
    }

    static func table(header: [String], rows: [[String]]) -> String {
        let all = [header.map { $0.uppercased() }] + rows
        var widths = Array(repeating: 0, count: header.count)
        for row in all {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        var out = ""
        for row in all {
            var line = ""
            for (index, cell) in row.enumerated() {
                line += index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) + "  "
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// A time as people read it, relative to now ("3 minutes ago", "in 30 days"); `none` when there is no time.
    func time(_ time: Int?, none: String = "never") -> String {
        RelativeTime.phrase(time, now: self.now, none: none)
    }
}
