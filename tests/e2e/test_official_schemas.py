"""Every method of the official SDK's `client.admin.organization` that Keysmith serves, called once with success
(its raw JSON checked against OpenAI's own schema for it, openai-response-schemas.yaml) and once with an error the
method can raise."""

from pathlib import Path

import jsonschema
import openai
import pytest
import yaml

OFFICIAL = yaml.safe_load((Path(__file__).with_name("openai-response-schemas.yaml")).read_text())


def official(response, schema_name: str):
    """The raw response's JSON, after checking it against OpenAI's schema `schema_name`."""
    assert response.http_response.status_code == 200
    body = response.http_response.json()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OFFICIAL["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    return body


def test_every_served_method_against_openais_schemas(shared_server):
    admin = shared_server.client().admin.organization
    raw = shared_server.client().admin.organization.with_raw_response

    project = official(raw.projects.create(name="official"), "Project")
    pid = project["id"]
    official(raw.projects.retrieve(pid), "Project")
    official(raw.projects.update(pid, name="official, renamed"), "Project")
    official(raw.projects.list(), "ProjectListResponse")

    user = official(raw.users.retrieve(shared_server.request("POST", "/organization/users", {"email": "o@example.com"})[2]["id"]), "User")
    official(raw.users.list(), "UserListResponse")
    official(raw.users.update(user["id"], role="owner"), "User")
    second = shared_server.request("POST", "/organization/users", {"email": "o2@example.com", "role": "owner"})[2]

    official(raw.projects.users.create(pid, user_id=second["id"], role="member"), "ProjectUser")
    official(raw.projects.users.retrieve(second["id"], project_id=pid), "ProjectUser")
    official(raw.projects.users.update(second["id"], project_id=pid, role="owner"), "ProjectUser")
    official(raw.projects.users.list(pid), "ProjectUserListResponse")

    key = shared_server.request("POST", f"/organization/projects/{pid}/api_keys", {"name": "k", "user_id": second["id"]})[2]
    official(raw.projects.api_keys.list(pid), "ProjectApiKeyListResponse")
    official(raw.projects.api_keys.retrieve(key["id"], project_id=pid), "ProjectApiKey")
    official(raw.projects.api_keys.delete(key["id"], project_id=pid), "ProjectApiKeyDeleteResponse")

    account = official(raw.projects.service_accounts.create(pid, name="bot"), "ProjectServiceAccountCreateResponse")
    official(raw.projects.service_accounts.retrieve(account["id"], project_id=pid), "ProjectServiceAccount")
    official(raw.projects.service_accounts.update(account["id"], project_id=pid, name="robot"), "ProjectServiceAccount")
    official(raw.projects.service_accounts.list(pid), "ProjectServiceAccountListResponse")
    assert admin.projects.service_accounts.api_keys.create(account["id"], project_id=pid).value.startswith("sk-svcacct-")
    official(raw.projects.service_accounts.delete(account["id"], project_id=pid), "ProjectServiceAccountDeleteResponse")
    official(raw.projects.users.delete(second["id"], project_id=pid), "ProjectUserDeleteResponse")

    invite = official(raw.invites.create(email="official@example.com", role="reader"), "Invite")
    official(raw.invites.retrieve(invite["id"]), "Invite")
    official(raw.invites.list(), "InviteListResponse")
    official(raw.invites.delete(invite["id"]), "InviteDeleteResponse")

    admin_key = raw.admin_api_keys.create(name="official").http_response.json()
    official(raw.admin_api_keys.retrieve(admin_key["id"]), "AdminApiKey")
    official(raw.admin_api_keys.list(), "ApiKeyList")
    assert admin.admin_api_keys.delete(admin_key["id"]).deleted is True

    official(raw.projects.model_permissions.retrieve(pid), "ProjectModelPermissions")
    official(raw.projects.model_permissions.update(pid, mode="allow_list", model_ids=["gemma-3-270m"]), "ProjectModelPermissions")
    official(raw.projects.model_permissions.delete(pid), "ProjectModelPermissionsDeleteResponse")
    official(raw.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=pid, max_requests_per_1_minute=30), "ProjectRateLimit")
    official(raw.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=pid, max_requests_per_1_day=9), "ProjectRateLimit")
    official(raw.projects.rate_limits.list_rate_limits(pid), "ProjectRateLimitListResponse")

    official(raw.users.delete(user["id"]), "UserDeleteResponse")
    official(raw.projects.archive(pid), "Project")
    logs = official(raw.audit_logs.list(limit=100), "ListAuditLogsResponse")
    # Every event type Keysmith wrote above, each readable as OpenAI's AuditLog.
    assert {event["type"] for event in logs["data"]} >= {
        "project.created", "project.updated", "project.archived", "user.added", "user.updated", "user.deleted",
        "api_key.created", "api_key.deleted", "service_account.created", "service_account.updated",
        "service_account.deleted", "invite.sent", "invite.deleted", "tenant.admin_api_key.created",
        "tenant.admin_api_key.deleted", "rate_limit.updated",
    }  # fmt: skip


def test_every_served_method_raises_its_error(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="errors everywhere").id
    missing = {
        "projects.retrieve": lambda: admin.projects.retrieve("proj_missing"),
        "projects.update": lambda: admin.projects.update("proj_missing", name="x"),
        "projects.archive": lambda: admin.projects.archive("proj_missing"),
        "projects.api_keys.retrieve": lambda: admin.projects.api_keys.retrieve("key_missing", project_id=project),
        "projects.api_keys.delete": lambda: admin.projects.api_keys.delete("key_missing", project_id=project),
        "projects.api_keys.list": lambda: admin.projects.api_keys.list("proj_missing"),
        "projects.service_accounts.retrieve": lambda: admin.projects.service_accounts.retrieve("svc_acct_missing", project_id=project),
        "projects.service_accounts.update": lambda: admin.projects.service_accounts.update("svc_acct_missing", project_id=project, name="x"),
        "projects.service_accounts.delete": lambda: admin.projects.service_accounts.delete("svc_acct_missing", project_id=project),
        "projects.service_accounts.list": lambda: admin.projects.service_accounts.list("proj_missing"),
        "projects.service_accounts.create": lambda: admin.projects.service_accounts.create("proj_missing", name="x"),
        "projects.service_accounts.api_keys.create": lambda: admin.projects.service_accounts.api_keys.create("svc_acct_missing", project_id=project),
        "projects.users.retrieve": lambda: admin.projects.users.retrieve("user-missing", project_id=project),
        "projects.users.update": lambda: admin.projects.users.update("user-missing", project_id=project, role="owner"),
        "projects.users.delete": lambda: admin.projects.users.delete("user-missing", project_id=project),
        "projects.users.list": lambda: admin.projects.users.list("proj_missing"),
        "users.retrieve": lambda: admin.users.retrieve("user-missing"),
        "users.update": lambda: admin.users.update("user-missing", role="owner"),
        "users.delete": lambda: admin.users.delete("user-missing"),
        "invites.retrieve": lambda: admin.invites.retrieve("invite-missing"),
        "invites.delete": lambda: admin.invites.delete("invite-missing"),
        "admin_api_keys.retrieve": lambda: admin.admin_api_keys.retrieve("key_missing"),
        "admin_api_keys.delete": lambda: admin.admin_api_keys.delete("key_missing"),
        "projects.model_permissions.retrieve": lambda: admin.projects.model_permissions.retrieve("proj_missing"),
        "projects.rate_limits.list_rate_limits": lambda: admin.projects.rate_limits.list_rate_limits("proj_missing"),
        "projects.rate_limits.update_rate_limit": lambda: admin.projects.rate_limits.update_rate_limit(
            "rl-gemma-3-270m", project_id="proj_missing", max_requests_per_1_minute=1
        ),
    }
    for name, call in missing.items():
        with pytest.raises(openai.NotFoundError):
            call()
            pytest.fail(f"{name} did not raise")
    bad = {
        "projects.create": (lambda: admin.projects.create(name=""), "name"),
        "projects.list": (lambda: admin.projects.list(after="proj_unknown"), "after"),
        "projects.users.create": (lambda: admin.projects.users.create(project, user_id="user-missing", role="member"), "user_id"),
        "users.list": (lambda: admin.users.list(after="user-unknown"), "after"),
        "invites.create": (lambda: admin.invites.create(email="nobody", role="reader"), "email"),
        "invites.list": (lambda: admin.invites.list(after="invite-unknown"), "after"),
        "admin_api_keys.create": (lambda: admin.admin_api_keys.create(name=""), "name"),
        "admin_api_keys.list": (lambda: admin.admin_api_keys.list(after="key_unknown"), "after"),
        "audit_logs.list": (lambda: admin.audit_logs.list(before="audit_log-unknown"), "before"),
        "projects.model_permissions.update": (lambda: admin.projects.model_permissions.update(project, mode="block_list", model_ids=[]), "mode"),
        "projects.rate_limits.update_rate_limit": (
            lambda: admin.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project, max_tokens_per_1_minute=-5),
            "max_tokens_per_1_minute",
        ),
    }
    for name, (call, param) in bad.items():
        with pytest.raises(openai.BadRequestError) as error:
            call()
            pytest.fail(f"{name} did not raise")
        assert error.value.param == param, name
