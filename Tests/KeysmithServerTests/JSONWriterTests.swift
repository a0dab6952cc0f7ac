import Foundation
import KeysmithServer
import NIOCore
import Testing

@Suite("JSON writer")
struct JSONWriterTests {
    private func written(_ body: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter(capacity: 8)
        body(&writer)
        return String(buffer: writer.buffer)
    }

    @Test("Integers are written in full, from Int.min to Int.max")
    func integers() throws {
        let values = [0, 7, -7, 10, 99, 100, -100, 1_795_719_337, Int(Int32.max), Int.max, Int.min, Int.min + 1]
        let json = self.written { writer in
            writer.array { writer in
                for value in values { writer.int(value) }
            }
        }
        #expect(json == "[" + values.map(String.init).joined(separator: ",") + "]")
    }

    @Test("Strings are escaped so that any value parses back to itself; literals and nulls are written as they are")
    func strings() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t control \u{01}\u{1F} unicode é ✓ 🔑 slash /"
        let json = self.written { writer in
            writer.object { writer in
                writer.field("object", literal: "organization.project.api_key")
                writer.field("name", tricky)
                writer.field("empty", "")
                writer.field("missing", nil as String?)
                writer.field("count", -3)
                writer.field("scopes", ["a.read", "b\"c"])
            }
        }
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(parsed["object"] as? String == "organization.project.api_key")
        #expect(parsed["name"] as? String == tricky)
        #expect(parsed["empty"] as? String == "")
        #expect(parsed["missing"] is NSNull)
        #expect(parsed["count"] as? Int == -3)
        #expect(parsed["scopes"] as? [String] == ["a.read", "b\"c"])
        #expect(json.hasPrefix(#"{"object":"organization.project.api_key","name":"quote \"#))
    }
}
