/// Why a presented key is or is not good, as `POST /v1/keys/verify` names it (`code`).
public enum VerificationCode: String, Sendable, CaseIterable, Codable {
    case valid
    case malformed
    case notFound = "not_found"
    case expired
    case revoked
    case projectArchived = "project_archived"
    case ownerInactive = "owner_inactive"
}
