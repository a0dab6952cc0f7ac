import Foundation
import HTTPTypes
import NIOHTTP1
import Testing

@testable import KeysmithServer

@Suite("Gateway")
struct GatewayTests {
    @Test("An upstream is an absolute http(s) base URL, without query, fragment or credentials")
    func upstreamURLs() throws {
        #expect(try GatewayConfiguration.Upstream(parsing: "http://127.0.0.1:8000/v1/").baseURL == "http://127.0.0.1:8000/v1")
        #expect(try GatewayConfiguration.Upstream(parsing: "https://models.internal/openai/v1").baseURL == "https://models.internal/openai/v1")
        #expect(try GatewayConfiguration.Upstream(parsing: "http://127.0.0.1:8000/v1", apiKey: "").apiKey == nil)
        for bad in ["ftp://host/v1", "127.0.0.1:8000/v1", "http:///v1", "http://host/v1?x=1", "http://host/v1#f", "http://user:pw@host/v1", ""] {
            #expect(throws: InvalidUpstreamError.self, "\(bad)") { try GatewayConfiguration.Upstream(parsing: bad) }
        }
        // The credential is never printed with the upstream.
        #expect("\(try GatewayConfiguration.Upstream(parsing: "http://h/v1", apiKey: "secret-key"))" == "http://h/v1")
    }

    @Test("Only paths the upstream resolves as Keysmith judged them are forwarded, as sent")
    func forwardablePaths() {
        #expect(Gateway.forwardablePath("/v1/chat/completions") == "/chat/completions")
        #expect(Gateway.forwardablePath("/v1/files/file-1/content") == "/files/file-1/content")
        #expect(Gateway.forwardablePath("/v1/models/org%40x") == "/models/org%40x")
        for refused in [
            "/v1/files/../chat/completions", "/v1/./chat/completions", "/v1//chat/completions", "/v1/chat/completions/",
            "/v1/chat%2Fcompletions", "/v1/chat%2fcompletions", "/v1/%2e%2e/organization", "/v1/a%5Cb", "/v1/a\\b", "/v2/x",
        ] {
            #expect(Gateway.forwardablePath(refused) == nil, "\(refused)")
        }
        #expect(Gateway.isKeysmithPath("/v1/organization/projects") && Gateway.isKeysmithPath("/v1/auth/check"))
        #expect(!Gateway.isKeysmithPath("/v1/organizations") && !Gateway.isKeysmithPath("/v1/chat/completions"))
    }

    @Test("The upstream's hop-by-hop headers, and those its Connection header names, stay between it and Keysmith")
    func returnedHeaders() {
        let returned = Gateway.returnedHeaders(
            [
                "Content-Type": "text/event-stream", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Transfer-Encoding": "chunked",
                "Keep-Alive": "timeout=5", "X-Request-Id": "upstream-id", "X-Kept": "yes",
            ]
        )
        #expect(returned[.contentType] == "text/event-stream" && returned[HTTPField.Name("X-Kept")!] == "yes")
        for dropped in ["Connection", "X-Hop", "Transfer-Encoding", "Keep-Alive", "X-Request-Id"] {
            #expect(returned[HTTPField.Name(dropped)!] == nil, "\(dropped)")
        }
    }

    @Test("An upstreams file names each upstream's models, credential variable and timeouts; a bad one says what is wrong")
    func upstreamsFile() throws {
        let file = """
            {"upstreams": [
              {"name": "vllm", "base_url": "http://127.0.0.1:8000/v1", "models": ["llama-3*"], "api_key_env": "VLLM_KEY", "read_timeout": 30},
              {"base_url": "http://127.0.0.1:11434/v1", "models": ["qwen2.5", "*-instruct"]}
            ], "max_request_body_size": 1000}
            """
        let loaded = try GatewayConfiguration.load(contentsOf: Data(file.utf8), file: "u.json") { $0 == "VLLM_KEY" ? "secret" : nil }
        #expect(loaded.upstreams.map(\.name) == ["vllm", "upstream 2"] && loaded.maximumRequestBodySize == 1000)
        #expect(loaded.upstreams[0].apiKey == "secret" && loaded.upstreams[1].apiKey == nil)
        #expect(loaded.upstreams[0].readTimeout == .seconds(30) && loaded.upstreams[1].readTimeout == .seconds(120))
        #expect(loaded.upstreams[0].serves("llama-3-8b") && !loaded.upstreams[0].serves("qwen2.5"))
        #expect(loaded.upstreams[1].serves("qwen2.5") && !loaded.upstreams[1].serves("qwen2.5-coder"))
        // A prefix pattern matches from the start only; "*" ends it.
        #expect(!loaded.upstreams[1].serves("mistral-instruct"))
        for (bad, problem) in [
            ("[]", "not a JSON object"),
            (#"{"upstreams": []}"#, "non-empty array"),
            (#"{"upstreams": [{"base_url": "ftp://h/v1", "models": ["m"]}]}"#, "is not an upstream URL"),
            (#"{"upstreams": [{"base_url": "http://h/v1", "models": []}]}"#, "models must be"),
            (#"{"upstreams": [{"base_url": "http://h/v1", "models": ["m"], "api_key_env": "UNSET"}]}"#, "UNSET, which is not set"),
            (#"{"upstreams": [{"base_url": "http://h/v1", "models": ["m"], "read_timeout": 0}]}"#, "read_timeout"),
            (#"{"upstreams": [{"base_url": "http://h/v1", "models": ["m"], "colour": 1}]}"#, "unknown field 'colour'"),
            (
                #"{"upstreams": [{"name": "a", "base_url": "http://h/v1", "models": ["m"]}, {"name": "a", "base_url": "http://h/v1", "models": ["n"]}]}"#,
                "two upstreams"
            ),
        ] {
            #expect {
                try GatewayConfiguration.load(contentsOf: Data(bad.utf8), file: "u.json") { _ in nil }
            } throws: { error in
                "\(error)".contains(problem) && "\(error)".contains("u.json")
            }
        }
    }
}
