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
        case invite
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
    /// A list's `before` cursor is not an item of that list.
    case unknownBeforeCursor(String)
    /// An archived project refuses updates, new service accounts, new members and new keys.
    case projectArchived(projectID: ProjectID)
    /// A user-owned key needs its owner to be a member of the project.
    case ownerNotProjectMember(userID: UserID, projectID: ProjectID)
    case alreadyProjectMember(userID: UserID, projectID: ProjectID)
    /// Email addresses are unique in an organization, compared case-insensitively.
    case emailTaken(String)
    /// A service account's keys go with the account; they cannot be deleted one by one.
    case serviceAccountKey(keyID: APIKeyID, serviceAccountID: ServiceAccountID)
    case keyExpired(keyID: APIKeyID, operation: KeyOperation)
    /// An organization keeps at least one admin key, or nobody could manage it through the API.
    case lastAdminKey(keyID: AdminKeyID)
    /// An organization keeps at least one owner.
    case lastOwner(userID: UserID)
    /// A pending invite for this email exists already.
    case inviteExists(email: String)
    /// An accepted invite can be neither accepted again nor deleted.
    case inviteAccepted(inviteID: InviteID)
    case inviteExpired(inviteID: InviteID)
    /// A project an invite grants does not exist in the organization, or is archived.
    case inviteProject(projectID: ProjectID, archived: Bool)
}

extension KeysmithError {
    /// ``notFound(_:id:)`` for a typed id.
    public static func notFound(_ resource: Resource, id: some TypedID) -> KeysmithError {
        .notFound(resource, id: id.rawValue)
    }

    /// ``referenceNotFound(_:id:)`` for a typed id.
    public static func referenceNotFound(_ resource: Resource, id: some TypedID) -> KeysmithError {
        .referenceNotFound(resource, id: id.rawValue)
    }
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
        case .unknownBeforeCursor(let before):
            "Invalid 'before': '\(before)' is not an object of this list."
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
        case .lastOwner(let userID):
            "User \(userID) is the organization's last owner; make another user an owner first."
        case .inviteExists(let email):
            "A pending invite for \(email) exists already; delete it to invite again."
        case .inviteAccepted(let inviteID):
            "Invite \(inviteID) has been accepted already."
        case .inviteExpired(let inviteID):
            "Invite \(inviteID) has expired; invite the person again."
        case .inviteProject(let projectID, let archived):
            archived
                ? "Invalid 'projects': project \(projectID) is archived; archived projects cannot gain members."
                : "Invalid 'projects': no such project: \(projectID)."
        }
    }
}
