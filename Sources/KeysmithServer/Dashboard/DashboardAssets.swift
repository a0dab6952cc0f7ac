import Foundation
import Hummingbird
import KeysmithCore
import Mustache
import NIOCore

/// The dashboard's templates, stylesheet and script, compiled into the binary (no files to ship, no CDN).
enum DashboardAssets {
    static let templateNames: [(String, [UInt8])] = [
        ("layout", PackageResources.layout_mustache),
        ("sign-in", PackageResources.sign_in_mustache),
        ("error", PackageResources.error_mustache),
        ("confirm", PackageResources.confirm_mustache),
        ("secret", PackageResources.secret_mustache),
        ("pager", PackageResources.pager_mustache),
        ("projects", PackageResources.projects_mustache),
        ("project-header", PackageResources.project_header_mustache),
        ("project-keys", PackageResources.project_keys_mustache),
        ("project-settings", PackageResources.project_settings_mustache),
        ("project-service-accounts", PackageResources.project_service_accounts_mustache),
        ("project-members", PackageResources.project_members_mustache),
        ("people", PackageResources.people_mustache),
        ("admin-keys", PackageResources.admin_keys_mustache),
        ("audit-log", PackageResources.audit_log_mustache),
    ]

    static func templates() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, bytes) in self.templateNames {
            try library.register(String(decoding: bytes, as: UTF8.self), named: name)
        }
        return library
    }

    static var stylesheet: Response { self.asset(PackageResources.style_css, type: "text/css; charset=utf-8") }
    static var script: Response { self.asset(PackageResources.dashboard_js, type: "text/javascript; charset=utf-8") }

    /// Assets change only with the binary: cached for an hour (the pages themselves never are).
    private static func asset(_ bytes: [UInt8], type: String) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: type, .cacheControl: "public, max-age=3600"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }
}

/// Small helpers the pages need: the audit log's JSON text as objects, times as timestamps.
enum DashboardJSON {
    static func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func timestamp(_ time: UnixSeconds) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(time)))
    }

}

extension DashboardForm {
    static let empty = DashboardForm()

    /// The named fields as typed, to put back into a form that failed.
    func fields(_ names: String...) -> [String: String] {
        Dictionary(uniqueKeysWithValues: names.map { ($0, self[$0] ?? "") })
    }
}
