"""Forward auth and key lifecycle against the real server: plain HTTP for the check, the SDK for the admin side."""

import openai

from conftest import Server


def check(server, key=None, headers=None):
    return server.request_root("GET", "/v1/auth/check", key=key if key else False, headers=headers)


def test_check_lifecycle_with_the_sdk(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="check lifecycle")
    account = admin.projects.service_accounts.create(project.id, name="gateway client")
    key = account.api_key

    status, headers, body = check(shared_server, key.value)
    assert status == 200 and not body
    assert headers["X-Keysmith-Project-Id"] == project.id
    assert headers["X-Keysmith-Key-Id"] == key.id
    assert headers["X-Keysmith-Owner-Type"] == "service_account"
    assert headers["X-Keysmith-Owner-Id"] == account.id

    status, headers, body = check(shared_server, None)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert set(body["error"]) == {"message", "type", "param", "code"}

    # The SDK's update applies at once: scopes enforced for the original request nginx would pass.
    admin.projects.api_keys.update(key.id, project_id=project.id, scopes=["api.model.read"])
    status, _, body = check(shared_server, key.value, {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"})
    assert status == 403 and body["error"]["code"] == "missing_scope"
    status, _, _ = check(shared_server, key.value, {"X-Original-Method": "GET", "X-Original-URI": "/v1/models"})
    assert status == 200

    admin.projects.archive(project.id)
    status, _, body = check(shared_server, key.value)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_rotation_with_grace_keeps_the_key_and_both_secrets(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="rotation")
    account = admin.projects.service_accounts.create(project.id, name="rotating")
    old = account.api_key.value

    status, _, rotated = shared_server.request(
        "POST", f"/organization/projects/{project.id}/api_keys/{account.api_key.id}/rotate", {"grace_period_seconds": 300}
    )
    assert status == 200, rotated
    assert rotated["id"] == account.api_key.id and rotated["value"] != old
    assert rotated["previous_secret_expires_at"] is not None
    assert check(shared_server, old)[0] == 200
    assert check(shared_server, rotated["value"])[0] == 200
    listed = admin.projects.api_keys.retrieve(account.api_key.id, project_id=project.id)
    assert listed.redacted_value.endswith(rotated["value"][-4:])

    status, _, again = shared_server.request(
        "POST", f"/organization/projects/{project.id}/api_keys/{account.api_key.id}/rotate", {}
    )
    assert status == 200
    assert check(shared_server, old)[0] == 401, "a second rotation ends the first grace at once"
    assert check(shared_server, rotated["value"])[0] == 401, "no grace asked: the previous secret ends now"
    assert check(shared_server, again["value"])[0] == 200

    status, _, verdict = shared_server.request("POST", "/keys/verify", {"key": old})
    assert status == 200 and verdict["code"] == "revoked" and verdict["valid"] is False


def test_verify_api(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="verify")
    account = admin.projects.service_accounts.create(project.id, name="bot")
    status, _, verdict = shared_server.request("POST", "/keys/verify", {"key": account.api_key.value})
    assert status == 200
    assert verdict == {
        "object": "keysmith.key_verification",
        "valid": True,
        "code": "valid",
        "key": verdict["key"],
    }
    assert verdict["key"]["id"] == account.api_key.id
    assert verdict["key"]["owner"] == {"type": "service_account", "id": account.id}
    status, _, verdict = shared_server.request("POST", "/keys/verify", {"key": "sk-proj-typo"})
    assert verdict["code"] == "malformed" and verdict["key"] is None


def test_last_used_is_written_on_graceful_shutdown(tmp_path):
    server = Server(tmp_path)
    admin = server.client().admin.organization
    project = admin.projects.create(name="usage")
    account = admin.projects.service_accounts.create(project.id, name="bot")
    assert admin.projects.api_keys.retrieve(account.api_key.id, project_id=project.id).last_used_at is None
    assert check(server, account.api_key.value)[0] == 200
    # Well inside the 10 s flush interval: only the shutdown flush can have written it.
    server.stop()

    restarted = Server(tmp_path)
    try:
        key = restarted.client(key=server.admin_key).admin.organization.projects.api_keys.retrieve(
            account.api_key.id, project_id=project.id
        )
        assert key.last_used_at is not None
        assert key.last_used_at >= key.created_at
    finally:
        restarted.stop()


def test_deleted_key_is_refused_by_the_sdk_flow(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="delete then check")
    status, _, user = shared_server.request("POST", "/organization/users", {"email": "checker@example.com"})
    admin.projects.users.create(project.id, user_id=user["id"], role="member")
    status, _, key = shared_server.request(
        "POST", f"/organization/projects/{project.id}/api_keys", {"name": "k", "user_id": user["id"]}
    )
    assert check(shared_server, key["value"])[0] == 200
    admin.projects.api_keys.delete(key["id"], project_id=project.id)
    status, _, body = check(shared_server, key["value"])
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    try:
        shared_server.client(key=key["value"]).admin.organization.projects.list()
        raise AssertionError("a deleted project key must not reach the admin API")
    except openai.AuthenticationError:
        pass
