import KeysmithCore
import Testing

@Suite("Percent-encoding")
struct PercentEncodingTests {
    @Test("Encoding keeps only RFC 3986's unreserved characters, with uppercase digits, and decodes back")
    func roundTrip() throws {
        #expect(PercentEncoding.encode("aZ09-._~") == "aZ09-._~")
        #expect(PercentEncoding.encode("a b/c?d&e=f+g%h") == "a%20b%2Fc%3Fd%26e%3Df%2Bg%25h")
        #expect(PercentEncoding.encode("é") == "%C3%A9")
        for text in ["a b/c?d&e=f+g%h", "é", "", "~user@host:5432"] {
            #expect(PercentEncoding.decode(PercentEncoding.encode(text), plusAsSpace: false) == text)
            #expect(try PercentEncoding.decodeStrictly(PercentEncoding.encode(text)) == text)
        }
    }

    @Test("Query strings decode leniently (a stray % stays as sent, + may be a space); database URLs refuse a stray %")
    func leniency() {
        #expect(PercentEncoding.decode("100%", plusAsSpace: false) == "100%")
        #expect(PercentEncoding.decode("%zz%4", plusAsSpace: false) == "%zz%4")
        #expect(PercentEncoding.decode("a+b%2b", plusAsSpace: true) == "a b+")
        #expect(PercentEncoding.decode("a+b", plusAsSpace: false) == "a+b")
        #expect(throws: PercentEncoding.MalformedPercentEncoding.self) { try PercentEncoding.decodeStrictly("100%") }
        #expect(throws: PercentEncoding.MalformedPercentEncoding.self) { try PercentEncoding.decodeStrictly("%4g") }
    }

    @Test("A duration in whole nanoseconds")
    func nanoseconds() {
        #expect(Duration.seconds(2).nanoseconds == 2_000_000_000)
        #expect(Duration.milliseconds(1_500).nanoseconds == 1_500_000_000)
        #expect(Duration.nanoseconds(7).nanoseconds == 7)
    }
}
