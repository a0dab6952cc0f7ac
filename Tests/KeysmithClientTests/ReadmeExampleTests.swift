import KeysmithClient
import KeysmithTestSupport
import Testing

/// The README's Swift client example, as it is printed there (but for the prints, which are collected), run against
/// a live server: if it stops compiling or working, the README is wrong.
@Suite("The README's client example")
struct ReadmeExampleTests {
    @Test("runs as printed")
    func readmeExample() async throws {
        try await LiveServer.run(.sqlite) { server in
            let adminKey = server.adminKey
            var printed: [String] = []
            func print(_ items: Any...) { printed.append(items.map { "\($0)" }.joined(separator: " ")) }
            let baseURL = "http://127.0.0.1:\(server.port)"

            // README: from here
            let client = try AdminClient(baseURL: baseURL, adminKey: adminKey)
            let project = try await client.createProject(name: "Gateway")
            let bot = try await client.createServiceAccount(project: project.id, name: "inference-bot")
            print(bot.apiKey?.value ?? "")  // sk-svcacct-…, shown once
            for try await key in client.apiKeys(project: project.id) {  // follows every page
                print(key.id, key.redactedValue, key.lastUsedAt ?? 0)
            }
            do {
                _ = try await client.retrieveProject(id: "proj_missing")
            } catch let error as KeysmithClientError {
                if let api = error.apiError {  // status, type, code, param, message
                    print(api.status, api.message)  // 404 No such project: proj_missing
                }
            }
            // README: to here

            #expect(printed.count == 3)
            #expect(printed[0].hasPrefix("sk-svcacct-"))
            #expect(printed[1].hasPrefix("key_") && printed[1].hasSuffix(" 0"))
            #expect(printed[2] == "404 No such project: proj_missing")
        }
    }
}
