/// What the domain and the store refuse, in the domain's own terms. The server alone knows how each is spelled on
/// the wire (OpenAI's status, `param` and `code`); the command-line tool prints ``description``.
public enum KeysmithError: Error, Sendable, Equatable {
    /// The kinds of object an error can name.
    public enum Resource: String, Sendable {
        case organization
        case project
        case user
        /// A user's membership of a project.
        case projectUser = "project user"
        case serviceAccount = "service account"
        case apiKey = "API key"
        case adminKey = "admin API key"
    }

    /// What was attempted on an expired key.
    public enum KeyOperation: String, Sendable {
        case update = "updated"
        case rotate = "rotated"
    }

    /// The object the request is about does not exist in the caller's organization.
    case notFound(Resource, id: String)
    /// An object the request refers to (a user to add, say) does not exist in the caller's organization.
    case referenceNotFound(Resource, id: String)
    /// No user of the organization has this email address.
    case noUserWithEmail(String)
    /// A list's `after` cursor is not an item of that list.
    case unknownCursor(String)
    /// An archived project refuses updates, new service accounts, new members and new keys.
    case projectArchived(projectID: String)
    /// A user-owned key needs its owner to be a member of the project.
    case ownerNotProjectMember(userID: String, projectID: String)
    case alreadyProjectMember(userID: String, projectID: String)
    /// Email addresses are unique in an organization, compared case-insensitively.
    case emailTaken(String)
    /// A service account's keys go with the account; they cannot be deleted one by one.
    case serviceAccountKey(keyID: String, serviceAccountID: String)
    case keyExpired(keyID: String, operation: KeyOperation)
    /// An organization keeps at least one admin key, or nobody could manage it through the API.
    case lastAdminKey(keyID: String)
}

extension KeysmithError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .notFound(let resource, let id):
            "No such \(resource.rawValue): \(id)"
        case .referenceNotFound(.user, let id):
            "No such user: \(id). Add the user to the organization first."
        case .referenceNotFound(let resource, let id):
            "No such \(resource.rawValue): \(id)"
        case .noUserWithEmail(let email):
            "No user with email \(email) in this organization."
        case .unknownCursor(let after):
            "Invalid 'after': '\(after)' is not an object of this list."
        case .projectArchived(let projectID):
            "Project \(projectID) is archived; archived projects cannot be used or updated."
        case .ownerNotProjectMember(let userID, let projectID):
            "User \(userID) is not a member of project \(projectID); add them to the project first."
        case .alreadyProjectMember(let userID, let projectID):
            "User \(userID) is already a member of project \(projectID)."
        case .emailTaken(let email):
            "A user with email \(email) already exists in this organization."
        case .serviceAccountKey(let keyID, let accountID):
            "API key \(keyID) belongs to service account \(accountID); service account keys cannot be deleted one by "
                + "one. Delete the service account instead."
        case .keyExpired(let keyID, let operation):
            "API key \(keyID) has expired; expired keys cannot be \(operation.rawValue)."
        case .lastAdminKey(let keyID):
            "Admin API key \(keyID) is the organization's last; create another before deleting it."
        }
    }
}
