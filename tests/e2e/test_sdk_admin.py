"""The official `openai` SDK's admin client against a real Keysmith server, unchanged."""

import openai
import pytest


def create_user(server, email: str, name: str = "Member") -> str:
    status, _, body = server.request("POST", "/organization/users", {"email": email, "name": name})
    assert status == 200, body
    return body["id"]


def test_sdk_works_from_environment_variables(shared_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", shared_server.base_url)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", shared_server.admin_key)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = openai.OpenAI(max_retries=0)
    project = client.admin.organization.projects.create(name="from env")
    assert project.id.startswith("proj_")
    assert client.admin.organization.projects.retrieve(project.id).name == "from env"


def test_250_user_keys_auto_paginate_once_each_in_order(shared_server):
    client = shared_server.client()
    admin = client.admin.organization
    project = admin.projects.create(name="pagination")
    members = []
    for index in range(5):
        user_id = create_user(shared_server, f"dev{index}@pagination.example.com")
        member = admin.projects.users.create(project.id, user_id=user_id, role="member")
        assert member.id == user_id
        members.append(user_id)
    accounts = [admin.projects.service_accounts.create(project.id, name=f"bot{index}") for index in range(3)]
    assert all(account.api_key and account.api_key.value.startswith("sk-svcacct-") for account in accounts)

    created = [account.api_key.id for account in accounts]
    values = set()
    for index in range(250):
        status, _, body = shared_server.request(
            "POST",
            f"/organization/projects/{project.id}/api_keys",
            {"name": f"key {index}", "user_id": members[index % len(members)]},
        )
        assert status == 200, body
        assert body["value"].startswith("sk-proj-")
        values.add(body["value"])
        created.append(body["id"])
    assert len(values) == 250

    seen = [key.id for key in admin.projects.api_keys.list(project.id, limit=17)]
    assert seen == created, "every key exactly once, in creation order"
    first_page = admin.projects.api_keys.list(project.id)
    assert len(first_page.data) == 20 and first_page.has_more
    assert first_page.last_id == created[19]
    full = admin.projects.api_keys.list(project.id, limit=100, owner_project_access="any")
    assert [key.id for key in full] == created

    for key in admin.projects.api_keys.list(project.id, limit=100):
        assert key.redacted_value.endswith(key.redacted_value[-4:])
        assert "*" in key.redacted_value
        assert key.last_used_at is None
        assert key.owner_project_access == "active"
        assert key.owner.type in ("user", "service_account")
        assert not any(value in key.model_dump_json() for value in list(values)[:3])


def test_retrieve_and_delete_keys(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="retrieve and delete")
    user_id = create_user(shared_server, "retriever@example.com", "Retriever")
    admin.projects.users.create(project.id, user_id=user_id, role="owner")
    status, _, created = shared_server.request(
        "POST", f"/organization/projects/{project.id}/api_keys", {"name": "laptop", "user_id": user_id}
    )
    assert status == 200

    key = admin.projects.api_keys.retrieve(created["id"], project_id=project.id)
    assert key.id == created["id"]
    assert key.name == "laptop"
    assert key.owner.type == "user"
    assert key.owner.user.id == user_id
    assert key.owner.user.email == "retriever@example.com"
    assert key.owner.user.role == "owner"
    assert key.redacted_value.startswith("sk-proj-") and key.redacted_value.endswith(created["value"][-4:])

    updated = admin.projects.api_keys.update(key.id, project_id=project.id, expires_in_seconds=3600, scopes=["api.model.read"])
    assert updated.expires_at is not None and updated.expires_at >= key.created_at + 3600
    # An update must change something, as OpenAI's reference says.
    with pytest.raises(openai.BadRequestError):
        admin.projects.api_keys.update(key.id, project_id=project.id)
    # The audit log says what was asked, in the SDK's own model.
    event = admin.audit_logs.list(event_types=["api_key.updated"], resource_ids=[key.id]).data[0]
    assert event.api_key_updated.changes_requested.expires_in_seconds == 3600
    assert event.api_key_updated.changes_requested.scopes == ["api.model.read"]

    deleted = admin.projects.api_keys.delete(key.id, project_id=project.id)
    assert deleted.deleted is True
    assert deleted.id == key.id
    assert deleted.object == "organization.project.api_key.deleted"
    with pytest.raises(openai.NotFoundError):
        admin.projects.api_keys.retrieve(key.id, project_id=project.id)


def test_service_accounts_through_the_sdk(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="service accounts")
    account = admin.projects.service_accounts.create(project.id, name="Production App")
    assert account.role == "member"
    extra = admin.projects.service_accounts.api_keys.create(
        account.id, project_id=project.id, name="second", scopes=["api.responses.write"]
    )
    assert extra.value.startswith("sk-svcacct-")
    only = admin.projects.service_accounts.create(project.id, name="terraform", create_service_account_only=True)
    assert only.api_key is None and only.role == "none"
    # The SDK's expires_in_seconds (3.57 on) is the first key's lifetime, not dropped.
    expiring = admin.projects.service_accounts.create(project.id, name="expiring", expires_in_seconds=3600)
    assert expiring.api_key.expires_at is not None and expiring.api_key.expires_at >= expiring.created_at + 3600
    assert admin.projects.api_keys.retrieve(expiring.api_key.id, project_id=project.id).expires_at == expiring.api_key.expires_at
    with pytest.raises(openai.BadRequestError) as both:
        admin.projects.service_accounts.create(project.id, name="x", create_service_account_only=True, expires_in_seconds=60)
    assert both.value.param == "expires_in_seconds"

    listed = [item.id for item in admin.projects.service_accounts.list(project.id)]
    assert listed == [account.id, only.id, expiring.id]
    updated = admin.projects.service_accounts.update(account.id, project_id=project.id, name="renamed", role="owner")
    assert (updated.name, updated.role) == ("renamed", "owner")
    assert admin.projects.service_accounts.retrieve(account.id, project_id=project.id).name == "renamed"

    with pytest.raises(openai.BadRequestError) as refused:
        admin.projects.api_keys.delete(extra.id, project_id=project.id)
    assert refused.value.status_code == 400

    deleted = admin.projects.service_accounts.delete(account.id, project_id=project.id)
    assert deleted.deleted is True
    # Its keys went with it; the other account's key stays.
    assert [key.id for key in admin.projects.api_keys.list(project.id, owner_project_access="any")] == [expiring.api_key.id]


def test_projects_through_the_sdk(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="lifecycle")
    assert project.status == "active" and project.archived_at is None
    assert admin.projects.update(project.id, name="renamed").name == "renamed"
    archived = admin.projects.archive(project.id)
    assert archived.status == "archived" and archived.archived_at is not None
    assert project.id not in [item.id for item in admin.projects.list(limit=100)]
    assert project.id in [item.id for item in admin.projects.list(limit=100, include_archived=True)]
    with pytest.raises(openai.BadRequestError):
        admin.projects.service_accounts.create(project.id, name="too late")


def test_sdk_raises_the_right_errors(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="errors")

    with pytest.raises(openai.NotFoundError) as not_found:
        admin.projects.retrieve("proj_doesnotexist")
    assert not_found.value.status_code == 404

    with pytest.raises(openai.NotFoundError):
        admin.projects.api_keys.retrieve("key_doesnotexist", project_id=project.id)

    with pytest.raises(openai.BadRequestError) as bad_limit:
        admin.projects.api_keys.list(project.id, limit=101)
    assert bad_limit.value.param == "limit"

    with pytest.raises(openai.BadRequestError) as bad_after:
        admin.projects.api_keys.list(project.id, after="key_unknown")
    assert bad_after.value.param == "after"

    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        shared_server.client(key="sk-admin-wrong").admin.organization.projects.list()
    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.code == "invalid_api_key"

    account = admin.projects.service_accounts.create(project.id, name="not an admin")
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        shared_server.client(key=account.api_key.value).admin.organization.projects.list()
    assert forbidden.value.status_code == 403
    assert "api.management.read" in forbidden.value.message


def test_admin_keys_through_the_sdk(shared_server):
    admin = shared_server.client().admin.organization
    created = admin.admin_api_keys.create(name="ci")
    assert created.value.startswith("sk-admin-")
    assert admin.admin_api_keys.retrieve(created.id).name == "ci"
    assert created.id in [key.id for key in admin.admin_api_keys.list()]
    assert shared_server.client(key=created.value).admin.organization.projects.list() is not None
    assert admin.admin_api_keys.delete(created.id).deleted is True
    with pytest.raises(openai.AuthenticationError):
        shared_server.client(key=created.value).admin.organization.projects.list()
