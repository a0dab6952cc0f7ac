"""Every object Keysmith answers, held field by field against the official SDK's own model of it (the newest
`openai` on PyPI): no field the model requires is missing, each value has the model's type, and every field the model
does not know is one of Keysmith's documented extensions. The SDK's models accept missing and extra fields silently,
so a client would not notice a drift; this test does."""

import json
import types
import typing
import urllib.request

import pydantic
import pytest
from openai import BaseModel
from openai.types.admin.organization import (
    admin_api_key,
    admin_api_key_create_response,
    admin_api_key_delete_response,
    audit_log_list_response,
    invite,
    invite_delete_response,
    organization_user,
    project,
)
from openai.types.admin.organization.projects import (
    api_key_delete_response,
    project_api_key,
    project_service_account,
    project_user,
    service_account_create_response,
    service_account_delete_response,
    user_delete_response,
)
from openai.types.admin.organization.projects.service_accounts import api_key_create_response

# Fields the SDK's models do not declare, by model, and why each is there. Each is documented in docs/api.md (and, on
# objects, in openapi.yaml as x-keysmith-extension). Anything else the SDK does not know is a drift.
EXTENSIONS: dict[type, set[str]] = {
    # A key's scope restrictions: Keysmith's, on every key object.
    project_api_key.ProjectAPIKey: {"scopes"},
    service_account_create_response.APIKey: {"scopes"},
    api_key_create_response.APIKeyCreateResponse: {"scopes"},
    # Audit details: what the audit table in docs/api.md lists beyond OpenAI's detail objects.
    audit_log_list_response.APIKeyCreatedData: {"name", "owner", "redacted_value"},
    audit_log_list_response.ServiceAccountCreatedData: {"api_key_id", "name"},
    # OpenAI's own example event has a session's user_agent; the SDK's model leaves it out.
    audit_log_list_response.ActorSession: {"user_agent"},
    # OpenAI gives admin key events no detail object; Keysmith's is under the type's name, as for every other type.
    audit_log_list_response.AuditLogListResponse: {"tenant.admin_api_key.created", "tenant.admin_api_key.deleted"},
}


def annotation_models(annotation) -> list[type]:
    """The SDK models an annotation can hold (through Optional, Union, List, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for argument in typing.get_args(annotation):
        found += annotation_models(argument)
    return found


def allows_none(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return type(None) in typing.get_args(annotation)
    return annotation is type(None)


def differences(model: type, data, path: str) -> list[str]:
    """What in `data` does not match `model`, field by field, recursively."""
    if not isinstance(data, dict):
        return [f"{path}: expected an object for {model.__name__}, got {data!r}"]
    problems = []
    declared = {}
    for name, field in model.model_fields.items():
        declared[field.alias or name] = field
    for key, field in declared.items():
        where = f"{path}.{key}"
        if key not in data:
            # A field the model gives a default (None) may be absent, as OpenAI leaves it out; a required one may not.
            if field.is_required():
                problems.append(f"{where}: missing ({model.__name__} requires it)")
            continue
        value = data[key]
        if value is None:
            if not allows_none(field.annotation):
                problems.append(f"{where}: null, which {model.__name__} does not allow")
            continue
        candidates = annotation_models(field.annotation)
        if candidates:
            values = value if isinstance(value, list) else [value]
            for index, item in enumerate(values):
                # A union of models (an owner that is a user or a service account): the one whose fields match best.
                best = min((differences(candidate, item, f"{where}[{index}]" if isinstance(value, list) else where) for candidate in candidates), key=len)
                problems += best
        else:
            try:
                pydantic.TypeAdapter(field.annotation).validate_python(value, strict=False)
            except pydantic.ValidationError as error:
                problems.append(f"{where}: {value!r} is not {field.annotation}: {error.errors()[0]['msg']}")
    extra = set(data) - set(declared) - EXTENSIONS.get(model, set())
    if extra:
        problems.append(f"{path}: fields {model.__name__} does not declare and Keysmith does not document: {sorted(extra)}")
    return problems


def raw(server, method: str, path: str, body=None):
    status, _, parsed = server.request(method, path, body)
    assert status == 200, parsed
    return parsed


def test_every_object_matches_the_sdks_model(shared_server):
    admin = shared_server.client().admin.organization
    checked: list[tuple[type, dict, str]] = []

    made = raw(shared_server, "POST", "/organization/projects", {"name": "typed"})
    checked.append((project.Project, made, "project (create)"))
    checked.append((project.Project, raw(shared_server, "GET", f"/organization/projects/{made['id']}"), "project"))
    pid = made["id"]

    user = raw(shared_server, "POST", "/organization/users", {"email": "typed@example.com", "name": "Typed"})
    checked.append((organization_user.OrganizationUser, raw(shared_server, "GET", f"/organization/users/{user['id']}"), "user"))
    member = raw(shared_server, "POST", f"/organization/projects/{pid}/users", {"user_id": user["id"], "role": "member"})
    checked.append((project_user.ProjectUser, member, "project user"))

    account = raw(shared_server, "POST", f"/organization/projects/{pid}/service_accounts", {"name": "bot", "expires_in_seconds": 60})
    checked.append((service_account_create_response.ServiceAccountCreateResponse, account, "service account (create)"))
    checked.append(
        (project_service_account.ProjectServiceAccount, raw(shared_server, "GET", f"/organization/projects/{pid}/service_accounts/{account['id']}"), "service account")
    )
    extra_key = raw(shared_server, "POST", f"/organization/projects/{pid}/service_accounts/{account['id']}/api_keys", {"name": "second"})
    checked.append((api_key_create_response.APIKeyCreateResponse, extra_key, "service account key (create)"))

    user_key = raw(shared_server, "POST", f"/organization/projects/{pid}/api_keys", {"name": "k", "user_id": user["id"]})
    for key_id in (user_key["id"], account["api_key"]["id"]):
        checked.append((project_api_key.ProjectAPIKey, raw(shared_server, "GET", f"/organization/projects/{pid}/api_keys/{key_id}"), "project key"))
    for listed in raw(shared_server, "GET", f"/organization/projects/{pid}/api_keys")["data"]:
        checked.append((project_api_key.ProjectAPIKey, listed, "project key (list)"))
    checked.append(
        (project_api_key.ProjectAPIKey, raw(shared_server, "POST", f"/organization/projects/{pid}/api_keys/{user_key['id']}", {"scopes": ["api.model.read"]}), "project key (update)")
    )

    sent = raw(shared_server, "POST", "/organization/invites", {"email": "invited@example.com", "role": "reader"})
    checked.append((invite.Invite, sent, "invite"))

    admin_key = raw(shared_server, "POST", "/organization/admin_api_keys", {"name": "typed"})
    checked.append((admin_api_key_create_response.AdminAPIKeyCreateResponse, admin_key, "admin key (create)"))
    checked.append((admin_api_key.AdminAPIKey, raw(shared_server, "GET", f"/organization/admin_api_keys/{admin_key['id']}"), "admin key"))

    checked.append((api_key_delete_response.APIKeyDeleteResponse, raw(shared_server, "DELETE", f"/organization/projects/{pid}/api_keys/{user_key['id']}"), "key (delete)"))
    checked.append(
        (service_account_delete_response.ServiceAccountDeleteResponse, raw(shared_server, "DELETE", f"/organization/projects/{pid}/service_accounts/{account['id']}"), "service account (delete)")
    )
    checked.append((user_delete_response.UserDeleteResponse, raw(shared_server, "DELETE", f"/organization/projects/{pid}/users/{user['id']}"), "project user (delete)"))
    checked.append((invite_delete_response.InviteDeleteResponse, raw(shared_server, "DELETE", f"/organization/invites/{sent['id']}"), "invite (delete)"))
    checked.append((admin_api_key_delete_response.AdminAPIKeyDeleteResponse, raw(shared_server, "DELETE", f"/organization/admin_api_keys/{admin_key['id']}"), "admin key (delete)"))
    archived = raw(shared_server, "POST", f"/organization/projects/{pid}/archive")
    checked.append((project.Project, archived, "project (archive)"))

    for event in raw(shared_server, "GET", "/organization/audit_logs?limit=100")["data"]:
        checked.append((audit_log_list_response.AuditLogListResponse, event, f"audit event {event['type']}"))

    problems = []
    for model, data, name in checked:
        problems += differences(model, data, name)
    assert problems == [], "\n".join(problems)
    assert len(checked) > 30
