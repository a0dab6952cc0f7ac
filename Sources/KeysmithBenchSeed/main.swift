// Seeds a database for `scripts/bench` faster than the HTTP API can: through the domain layer (`Keysmith`), one
// write transaction per key as the API does, without HTTP. Not part of the product; scripts/bench builds and runs it.
//
//   keysmith-bench-seed sqlite:PATH KEYS MEMBERS SAMPLE_FILE SAMPLE
//
// Creates the default organization (its admin key is the first line of standard output), one project, MEMBERS users
// in it, and KEYS user keys spread over them; writes the first SAMPLE keys' "id plaintext" lines to SAMPLE_FILE.

import Foundation
import KeysmithCore
import KeysmithDomain
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 6, let keyCount = Int(arguments[2]), let memberCount = Int(arguments[3]), let sample = Int(arguments[5]) else {
    FileHandle.standardError.write(Data("usage: keysmith-bench-seed sqlite:PATH KEYS MEMBERS SAMPLE_FILE SAMPLE\n".utf8))
    exit(2)
}
let logger = Logger(label: "seed")
let (keysmith, database) = try await Keysmith.open(try DatabaseURL(parsing: arguments[1]), logger: logger)
guard let bootstrap = try await keysmith.bootstrapIfEmpty(adminKeyName: "bench"), let adminKey = bootstrap.adminKey else {
    FileHandle.standardError.write(Data("the database is not empty\n".utf8))
    exit(1)
}
print(adminKey)
let organizationID = bootstrap.organization.id
let project = try await keysmith.createProject(organizationID: organizationID, name: "bench", externalKeyID: nil, residency: nil)
var members: [UserID] = []
for index in 0..<memberCount {
    let user = try await keysmith.createUser(organizationID: organizationID, email: "bench\(index)@example.com", name: nil, role: .reader)
    _ = try await keysmith.addProjectMember(organizationID: organizationID, projectID: project.id, user: .id(user.id), role: .member)
    members.append(user.id)
}
print(project.id)

let started = ContinuousClock.now
var sampled: [String] = []
// A few creations in flight at once, so that hashing and id making overlap the single writer's transactions.
let width = 8
try await withThrowingTaskGroup(of: (Int, String, String).self) { group in
    var next = 0
    func add() {
        let index = next
        next += 1
        group.addTask {
            let created = try await keysmith.createAPIKey(
                organizationID: organizationID,
                projectID: project.id,
                owner: .user(id: members[index % members.count]),
                name: "bench key \(index)",
                scopes: [],
                expiresInSeconds: nil
            )
            return (index, created.key.id.rawValue, created.plaintext)
        }
    }
    for _ in 0..<min(width, keyCount) { add() }
    var done = 0
    var kept: [(Int, String)] = []
    while let (index, id, plaintext) = try await group.next() {
        done += 1
        if index < sample { kept.append((index, "\(id) \(plaintext)")) }
        if next < keyCount { add() }
        if done % 100_000 == 0 {
            let seconds = Double((ContinuousClock.now - started).components.seconds)
            FileHandle.standardError.write(Data("seeded \(done) keys (\(Int(Double(done) / max(seconds, 1))) keys/s)\n".utf8))
        }
    }
    sampled = kept.sorted { $0.0 < $1.0 }.map(\.1)
}
try (sampled.joined(separator: "\n") + "\n").write(toFile: arguments[4], atomically: true, encoding: .utf8)
try await database.close()
