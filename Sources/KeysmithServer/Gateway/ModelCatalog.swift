import AsyncHTTPClient
import Foundation
import HTTPTypes
import KeysmithCore
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// One model the upstream serves, as OpenAI's `model` object has it.
struct UpstreamModel: Sendable, Equatable {
    var id: String
    var created: Int
    var ownedBy: String

    func write(_ writer: inout JSONWriter) {
        writer.object { writer in
            writer.field("id", self.id)
            writer.field("object", literal: "model")
            writer.field("created", self.created)
            writer.field("owned_by", self.ownedBy)
        }
    }
}

/// The upstream's model list (`GET <base>/models`), kept for ``GatewayConfiguration/modelListLifetime`` and asked
/// again only when older: one request at a time, however many clients ask at once. When the upstream cannot be
/// asked, the last list it gave is served; with none, the client is told so (502 or 504).
actor ModelCatalog {
    private let upstream: GatewayConfiguration.Upstream
    private let lifetime: Duration
    private let client: HTTPClient
    private var cached: (models: [UpstreamModel], at: ContinuousClock.Instant)?
    private var refreshing: Task<[UpstreamModel], any Error>?

    init(upstream: GatewayConfiguration.Upstream, lifetime: Duration, client: HTTPClient) {
        self.upstream = upstream
        self.lifetime = lifetime
        self.client = client
    }

    func models(logger: Logger) async throws -> [UpstreamModel] {
        if let cached, ContinuousClock.now - cached.at < self.lifetime {
            return cached.models
        }
        let task: Task<[UpstreamModel], any Error>
        if let refreshing {
            task = refreshing
        } else {
            task = Task { try await self.fetch(logger: logger) }
            self.refreshing = task
        }
        do {
            let models = try await task.value
            self.refreshing = nil
            self.cached = (models, ContinuousClock.now)
            return models
        } catch {
            self.refreshing = nil
            logger.warning("Could not read the upstream's model list", metadata: ["upstream": "\(self.upstream)", "error": "\(error)"])
            if let cached { return cached.models }
            throw (error as? OpenAIError) ?? UpstreamFailure(error).envelope
        }
    }

    private func fetch(logger: Logger) async throws -> [UpstreamModel] {
        var request = HTTPClientRequest(url: self.upstream.baseURL + "/models")
        request.method = .GET
        if let apiKey = self.upstream.apiKey {
            request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        }
        let response = try await self.client.execute(request, timeout: .init(self.upstream.connectTimeout + .seconds(20)), logger: logger)
        let body = try await response.body.collect(upTo: 8 * 1024 * 1024)
        guard response.status == .ok else {
            throw OpenAIError(
                status: .badGateway,
                message: "The model server answered its model list with \(response.status.code).",
                type: "server_error",
                code: "upstream_unavailable"
            )
        }
        return try Self.parse(Data(buffer: body))
    }

    /// `{"data": [{"id": …, "created": …, "owned_by": …}, …]}`; `created` and `owned_by` default to 0 and
    /// "upstream" when the server leaves them out (llama.cpp's server and Ollama fill them, not every server does).
    static func parse(_ data: Data) throws -> [UpstreamModel] {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let entries = object["data"] as? [Any]
        else {
            throw OpenAIError(
                status: .badGateway,
                message: "The model server's model list is not an OpenAI list of models.",
                type: "server_error",
                code: "upstream_unavailable"
            )
        }
        var models: [UpstreamModel] = []
        var seen: Set<String> = []
        for case let entry as [String: Any] in entries {
            guard let id = entry["id"] as? String, !id.isEmpty, seen.insert(id).inserted else { continue }
            models.append(
                UpstreamModel(
                    id: id,
                    created: (entry["created"] as? NSNumber)?.intValue ?? 0,
                    ownedBy: (entry["owned_by"] as? String) ?? "upstream"
                )
            )
        }
        return models
    }
}
