import Foundation
import Testing

@testable import KeysmithCore

@Suite("JSON strings")
struct JSONStringTests {
    @Test("Every string comes back from a JSON parser as it went in; only what JSON requires is escaped")
    func roundTrip() throws {
        let samples = [
            "", "plain", "quote \" and backslash \\", "line\nreturn\rtab\t", "\u{0}\u{1}\u{8}\u{C}\u{1F}\u{7F}",
            "é 中文 🔑", "</script>", "\u{2028}\u{2029}",
        ]
        for sample in samples {
            let quoted = JSONString.quoted(sample)
            let parsed = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
            #expect(parsed == [sample], "\(quoted)")
        }
        #expect(JSONString.quoted("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
        #expect(JSONString.quoted("é🔑") == "\"é🔑\"")
    }
}
