"""openapi.yaml describes what the server does: every documented operation is served, and responses match."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")


def check(body, schema_name: str):
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": SPEC["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def test_openapi_document_is_valid():
    validate(SPEC)


def test_no_value_is_lost_to_yaml_flow_syntax():
    """In a flow mapping, an unquoted ', ' ends a value: `description: a, b` would become a key `b` with no value."""

    def walk(node, path):
        if isinstance(node, dict):
            for name, value in node.items():
                assert value is not None, f"{path}/{name} has no value (an unquoted comma in a description?)"
                walk(value, f"{path}/{name}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(SPEC, "")


def test_the_server_serves_this_description_without_a_key(shared_server):
    status, headers, body = shared_server.request("GET", "/openapi.yaml", key=False)
    assert status == 200
    assert headers["Content-Type"] == "application/yaml"
    assert yaml.safe_load(body) == SPEC


def test_every_documented_operation_is_served_and_others_are_405(shared_server):
    for path, item in SPEC["paths"].items():
        concrete = (
            path.replace("{project_id}", "proj_x")
            .replace("{api_key_id}", "key_x")
            .replace("{service_account_id}", "svc_acct_x")
            .replace("{user_id}", "user-x")
            .replace("{invite_id}", "invite-x")
            .replace("{key_id}", "key_x")
            .replace("{original_path}", "v1/models")
        )
        # Operations outside /v1 (/healthz, /readyz, /metrics) name their own server.
        prefix = "" if "servers" in item else None
        for method in METHODS + (("head", "options") if "head" in item else ()):
            if prefix is None:
                status, _, body = shared_server.request(method.upper(), concrete, {} if method == "post" else None)
            else:
                status, _, body = shared_server.request_root(method.upper(), concrete)
            if method in item:
                routed = not (status == 404 and body and body["error"]["code"] == "unknown_url")
                assert routed, f"{method} {path} is not routed"
                assert status != 405, f"{method} {path} answered 405"
            else:
                assert status == 405, f"{method} {path}: undocumented method answered {status}"


def test_responses_match_the_documented_schemas(shared_server):
    def call(method, path, body=None, expect=200):
        status, _, parsed = shared_server.request(method, path, body)
        assert status == expect, parsed
        return parsed

    project = call("POST", "/organization/projects", {"name": "schema check", "residency": "GLOBAL"})
    check(project, "Project")
    check(call("GET", "/organization/projects"), "ProjectListResponse")
    user = call("POST", "/organization/users", {"email": "schema@example.com", "name": "Schema"})
    check(user, "User")
    check(call("GET", "/organization/users"), "UserListResponse")
    member = call("POST", f"/organization/projects/{project['id']}/users", {"user_id": user["id"], "role": "member"})
    check(member, "ProjectUser")
    check(call("GET", f"/organization/projects/{project['id']}/users"), "ProjectUserListResponse")
    key = call("POST", f"/organization/projects/{project['id']}/api_keys", {"name": "k", "user_id": user["id"]})
    check(key, "ProjectApiKeyWithValue")
    check(call("GET", f"/organization/projects/{project['id']}/api_keys/{key['id']}"), "ProjectApiKey")
    account = call("POST", f"/organization/projects/{project['id']}/service_accounts", {"name": "bot"})
    check(account, "ProjectServiceAccountCreateResponse")
    bare = call(
        "POST",
        f"/organization/projects/{project['id']}/service_accounts",
        {"name": "bare", "create_service_account_only": True},
    )
    check(bare, "ProjectServiceAccountCreateResponse")
    check(call("GET", f"/organization/projects/{project['id']}/service_accounts"), "ProjectServiceAccountListResponse")
    check(call("GET", f"/organization/projects/{project['id']}/service_accounts/{account['id']}"), "ProjectServiceAccount")
    extra = call("POST", f"/organization/projects/{project['id']}/service_accounts/{account['id']}/api_keys", {})
    check(extra, "ServiceAccountApiKeyBody")
    rotated = call("POST", f"/organization/projects/{project['id']}/api_keys/{extra['id']}/rotate", {"grace_period_seconds": 60})
    check(rotated, "ProjectApiKeyWithValue")
    verdict = call("POST", "/keys/verify", {"key": rotated["value"]})
    check(verdict, "KeyVerification")
    check(call("POST", "/keys/verify", {"key": "sk-nope"}), "KeyVerification")
    listed = call("GET", f"/organization/projects/{project['id']}/api_keys?owner_project_access=any")
    check(listed, "ProjectApiKeyListResponse")
    assert {item["owner"]["type"] for item in listed["data"]} == {"user", "service_account"}
    updated = call("POST", f"/organization/projects/{project['id']}/api_keys/{key['id']}", {"scopes": ["api.model.read"]})
    check(updated, "ProjectApiKey")
    check(call("DELETE", f"/organization/projects/{project['id']}/api_keys/{key['id']}"), "ProjectApiKeyDeleteResponse")
    check(call("DELETE", f"/organization/projects/{project['id']}/users/{user['id']}"), "ProjectUserDeleteResponse")
    check(
        call("DELETE", f"/organization/projects/{project['id']}/service_accounts/{account['id']}"),
        "ProjectServiceAccountDeleteResponse",
    )
    admin_key = call("POST", "/organization/admin_api_keys", {"name": "schema"})
    check(admin_key, "AdminApiKeyCreateResponse")
    check(call("GET", f"/organization/admin_api_keys/{admin_key['id']}"), "AdminApiKey")
    check(call("GET", "/organization/admin_api_keys"), "ApiKeyList")
    invite = call("POST", "/organization/invites", {"email": "invitee@example.com", "role": "reader"})
    check(invite, "Invite")
    check(call("GET", "/organization/invites"), "InviteListResponse")
    check(call("GET", f"/organization/invites/{invite['id']}"), "Invite")
    accepted = call("POST", f"/organization/invites/{invite['id']}/accept", {"name": "Invitee"})
    check(accepted, "User")
    other = call("POST", "/organization/invites", {"email": "other@example.com", "role": "owner", "projects": []})
    check(call("DELETE", f"/organization/invites/{other['id']}"), "InviteDeleteResponse")
    check(call("POST", f"/organization/users/{accepted['id']}", {"role": "owner"}), "User")
    check(call("DELETE", f"/organization/users/{user['id']}"), "UserDeleteResponse")
    check(call("POST", f"/organization/projects/{project['id']}/archive"), "Project")
    logs = call("GET", "/organization/audit_logs?limit=100")
    check(logs, "ListAuditLogsResponse")
    assert {event["type"] for event in logs["data"]} >= {"project.created", "api_key.created", "invite.accepted", "user.deleted"}

    for method, path, body, status in [
        ("GET", "/organization/projects/proj_missing", None, 404),
        ("POST", "/organization/projects", {"name": 7}, 400),
        ("GET", "/organization/projects?limit=0", None, 400),
        ("PUT", "/organization/projects", None, 405),
        ("GET", "/organization/nothing", None, 404),
    ]:
        check(call(method, path, body, expect=status), "ErrorResponse")
