"""Users, invites and the audit log through the official `openai` SDK's admin client, unchanged: every method
once with success and once with an error it can raise, objects checked field by field."""

import time

import openai
import pytest

from test_sdk_admin import create_user


def test_users_update_and_delete(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="people")
    user_id = create_user(shared_server, "sdk-user@example.com")
    admin.projects.users.create(project.id, user_id=user_id, role="member")
    key = shared_server.request(
        "POST", f"/organization/projects/{project.id}/api_keys", {"name": "theirs", "user_id": user_id}
    )[2]

    updated = admin.users.update(user_id, role="owner")
    assert (updated.object, updated.id, updated.role, updated.email) == (
        "organization.user",
        user_id,
        "owner",
        "sdk-user@example.com",
    )
    with pytest.raises(openai.BadRequestError) as bad_role:
        admin.users.update(user_id, role="admin")
    assert bad_role.value.param == "role"
    with pytest.raises(openai.NotFoundError):
        admin.users.update("user-missing", role="reader")

    other = create_user(shared_server, "sdk-other@example.com")
    admin.users.update(other, role="owner")
    deleted = admin.users.delete(user_id)
    assert (deleted.object, deleted.id, deleted.deleted) == ("organization.user.deleted", user_id, True)
    with pytest.raises(openai.NotFoundError):
        admin.users.retrieve(user_id)
    with pytest.raises(openai.NotFoundError):
        admin.users.delete(user_id)
    # The deleted user's key stays, inactive, and stops verifying.
    status, _, _ = shared_server.request("GET", "/auth/check", key=key["value"])
    assert status == 401
    inactive = admin.projects.api_keys.list(project.id, extra_query={"owner_project_access": "inactive"})
    assert [item.id for item in inactive.data] == [key["id"]]

    # The last owner stays one.
    owners = [user.id for user in admin.users.list(limit=100).data if user.role == "owner"]
    for owner in owners[1:]:
        admin.users.update(owner, role="reader")
    with pytest.raises(openai.BadRequestError) as last:
        admin.users.delete(owners[0])
    assert (last.value.param, last.value.code) == ("user_id", "last_owner")


def test_invites(shared_server):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="invited into")
    invite = admin.invites.create(email="sdk-invitee@example.com", role="reader", projects=[{"id": project.id, "role": "owner"}])
    assert invite.object == "organization.invite"
    assert invite.id.startswith("invite-")
    assert (invite.email, invite.role, invite.status, invite.accepted_at) == ("sdk-invitee@example.com", "reader", "pending", None)
    assert abs(invite.created_at - time.time()) < 60
    assert invite.expires_at == invite.created_at + 7 * 24 * 3600
    assert [(grant.id, grant.role) for grant in invite.projects] == [(project.id, "owner")]

    assert admin.invites.retrieve(invite.id) == invite
    assert invite.id in [item.id for item in admin.invites.list()]
    listed = admin.invites.list(limit=1)
    assert len(listed.data) == 1

    with pytest.raises(openai.BadRequestError) as duplicate:
        admin.invites.create(email="SDK-invitee@example.com", role="owner")
    assert (duplicate.value.param, duplicate.value.code) == ("email", "invite_already_exists")
    with pytest.raises(openai.NotFoundError):
        admin.invites.retrieve("invite-missing")

    # Keysmith's extension accepts on the invitee's behalf; the SDK's generic post reaches it.
    user = shared_server.request("POST", f"/organization/invites/{invite.id}/accept", {"name": "Invitee"})[2]
    assert admin.users.retrieve(user["id"]).email == "sdk-invitee@example.com"
    assert admin.projects.users.retrieve(user["id"], project_id=project.id).role == "owner"
    assert admin.invites.retrieve(invite.id).status == "accepted"
    with pytest.raises(openai.BadRequestError) as accepted:
        admin.invites.delete(invite.id)
    assert accepted.value.code == "invite_already_accepted"

    pending = admin.invites.create(email="sdk-second@example.com", role="owner", projects=[])
    assert pending.projects == []
    deleted = admin.invites.delete(pending.id)
    assert (deleted.object, deleted.id, deleted.deleted) == ("organization.invite.deleted", pending.id, True)
    with pytest.raises(openai.NotFoundError):
        admin.invites.delete(pending.id)


def test_audit_logs(shared_server):
    admin = shared_server.client().admin.organization
    before = int(time.time()) - 1
    project = admin.projects.create(name="audited")
    admin.projects.update(project.id, name="audited, renamed")
    account = admin.projects.service_accounts.create(project.id, name="auditor")
    admin.projects.archive(project.id)

    events = admin.audit_logs.list(project_ids=[project.id], limit=100)
    assert [event.type for event in events.data] == [
        "project.archived",
        "service_account.created",
        "project.updated",
        "project.created",
    ]
    for event in events.data:
        assert event.id.startswith("audit_log-")
        assert event.effective_at >= before
        assert event.project.id == project.id
        assert event.actor.type == "api_key"
        assert event.actor.api_key.id.startswith("key_")
    created = events.data[3]
    assert created.project_created.id == project.id
    assert created.project_created.data.name == "audited"
    assert events.data[1].service_account_created.id == account.id
    assert events.data[1].service_account_created.data.role == "member"

    only = admin.audit_logs.list(event_types=["project.archived"], resource_ids=[project.id])
    assert [event.type for event in only.data] == ["project.archived"]
    assert admin.audit_logs.list(effective_at={"gt": before}, project_ids=[project.id]).data[0].type == "project.archived"
    first = admin.audit_logs.list(project_ids=[project.id], limit=2)
    assert first.has_more
    second = admin.audit_logs.list(project_ids=[project.id], limit=2, after=first.last_id)
    assert [event.type for event in second.data] == ["project.updated", "project.created"]
    back = admin.audit_logs.list(project_ids=[project.id], limit=2, before=second.first_id)
    assert [event.id for event in back.data] == [event.id for event in first.data]
    # The SDK's auto-pagination follows `after` to the end, each event once.
    walked = [event.id for event in admin.audit_logs.list(project_ids=[project.id], limit=1)]
    assert walked == [event.id for event in events.data]

    with pytest.raises(openai.BadRequestError) as bad_cursor:
        admin.audit_logs.list(after="audit_log-missing")
    assert bad_cursor.value.param == "after"
    # A type OpenAI defines and Keysmith never records matches nothing, as at OpenAI; alone it is an empty list, not
    # every event. A string that is no event type at all is refused.
    assert admin.audit_logs.list(event_types=["login.succeeded"]).data == []
    assert [e.type for e in admin.audit_logs.list(event_types=["login.succeeded", "project.archived"], project_ids=[project.id])] == [
        "project.archived"
    ]
    with pytest.raises(openai.BadRequestError) as bad_type:
        admin.audit_logs.list(event_types=["project.exploded"])
    assert bad_type.value.param == "event_types"


def test_keysmith_knows_every_event_type_the_sdk_can_filter_by():
    """Keysmith's copy of OpenAI's event types (OpenAIAuditEventTypes.swift) against the installed SDK's Literal."""
    import re
    import typing
    from pathlib import Path

    from openai.types.admin.organization import audit_log_list_params

    def literals(annotation):
        found = []
        for argument in typing.get_args(annotation):
            found += list(typing.get_args(argument)) if typing.get_origin(argument) is typing.Literal else literals(argument)
        return found

    sdk = set(literals(typing.get_type_hints(audit_log_list_params.AuditLogListParams, include_extras=True)["event_types"]))
    source = (Path(__file__).resolve().parents[2] / "Sources/KeysmithCore/OpenAIAuditEventTypes.swift").read_text()
    keysmith = set(re.findall(r'"([a-z_.]+)"', source.split("openAIEventTypes")[1]))
    assert sdk - keysmith == set(), "types the SDK can send that Keysmith would refuse"
    assert keysmith - sdk == set(), "types Keysmith accepts that OpenAI no longer defines"
