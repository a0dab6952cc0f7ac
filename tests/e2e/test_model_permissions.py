"""Project model permissions, as the official SDK sets them, enforced by Keysmith as the gateway.

The upstream is test_gateway's fake model server, which records what reaches it: a refused request never does.
"""

import json
import urllib.error
import urllib.request

import openai
import pytest

from conftest import Server, database_url
from test_gateway import FakeUpstream, model_client


@pytest.fixture(scope="module")
def permitted(tmp_path_factory):
    upstream = FakeUpstream(models=["gemma-3-270m", "qwen-2.5", "org/with-slash"])
    server = Server(tmp_path_factory.mktemp("model-permissions"), args=["--upstream", upstream.url])
    admin = server.client().admin.organization
    project = admin.projects.create(name="limited")
    key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
    yield server, upstream, admin, project, key
    server.stop()
    upstream.stop()


def chat(client, model):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])


def test_the_sdk_sets_reads_and_deletes_a_projects_model_permissions(permitted):
    server, upstream, admin, project, key = permitted
    permissions = admin.projects.model_permissions
    unset = permissions.retrieve(project.id)
    assert (unset.object, unset.mode, unset.api_model_ids) == ("project.model_permissions", "deny_list", [])

    updated = permissions.update(project.id, mode="allow_list", model_ids=["gemma-3-270m", "org/with-slash"])
    assert (updated.mode, updated.api_model_ids) == ("allow_list", ["gemma-3-270m", "org/with-slash"])
    assert permissions.retrieve(project.id).api_model_ids == ["gemma-3-270m", "org/with-slash"]

    deleted = permissions.delete(project.id)
    assert (deleted.object, deleted.deleted) == ("project.model_permissions.deleted", True)
    assert permissions.retrieve(project.id).mode == "deny_list"

    with pytest.raises(openai.BadRequestError) as bad:
        permissions.update(project.id, mode="block_list", model_ids=[])
    assert bad.value.body["param"] == "mode"
    with pytest.raises(openai.NotFoundError):
        permissions.retrieve("proj_missing")


def test_an_allow_list_is_enforced_before_the_upstream_sees_the_request(permitted):
    server, upstream, admin, project, key = permitted
    admin.projects.model_permissions.update(project.id, mode="allow_list", model_ids=["gemma-3-270m", "org/with-slash"])
    try:
        client = model_client(server, key)
        assert chat(client, "gemma-3-270m").choices[0].message.content == "Hi"

        before = len(upstream.requests)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            chat(client, "qwen-2.5")
        assert refused.value.status_code == 403
        assert refused.value.body == {
            "message": f"Project `{project.id}` does not have access to model `qwen-2.5`",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
        # A request that does not say its model, or says it twice, cannot be judged: refused too.
        status, _, body = server.request("POST", "/chat/completions", {"messages": []}, key=key)
        assert status == 403 and body["error"]["code"] == "model_required"
        twice = urllib.request.Request(
            server.base_url + "/chat/completions",
            data=b'{"model":"gemma-3-270m","model":"qwen-2.5","messages":[]}',
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as ambiguous:
            urllib.request.urlopen(twice, timeout=10)
        assert ambiguous.value.code == 403 and json.load(ambiguous.value)["error"]["code"] == "model_required"
        assert len(upstream.requests) == before

        # The model list shows only what the project may use; a model it may not use is unknown to it.
        assert [model.id for model in client.models.list()] == ["gemma-3-270m", "org/with-slash"]
        assert client.models.retrieve("org/with-slash").id == "org/with-slash"
        with pytest.raises(openai.NotFoundError) as unknown:
            client.models.retrieve("qwen-2.5")
        assert unknown.value.body["code"] == "model_not_found"
        # A request without a body uses no model.
        status, _, _ = server.request("GET", "/files", key=key)
        assert status == 200
    finally:
        admin.projects.model_permissions.delete(project.id)


def test_a_deny_list_refuses_only_what_it_lists_and_changes_apply_at_once(permitted):
    server, upstream, admin, project, key = permitted
    client = model_client(server, key)
    admin.projects.model_permissions.update(project.id, mode="deny_list", model_ids=["qwen-2.5"])
    try:
        assert chat(client, "gemma-3-270m").choices[0].message.content == "Hi"
        with pytest.raises(openai.PermissionDeniedError):
            chat(client, "qwen-2.5")
        assert "qwen-2.5" not in [model.id for model in client.models.list()]
    finally:
        admin.projects.model_permissions.delete(project.id)
    # Deleted: the next request may use any model.
    assert chat(client, "qwen-2.5").choices[0].message.content == "Hi"
    assert [model.id for model in client.models.list()] == ["gemma-3-270m", "qwen-2.5", "org/with-slash"]


def test_permissions_survive_a_restart(tmp_path):
    upstream = FakeUpstream(models=["gemma-3-270m", "qwen-2.5"])
    server = Server(tmp_path, args=["--upstream", upstream.url])
    admin_key = server.admin_key
    try:
        admin = server.client().admin.organization
        project = admin.projects.create(name="kept")
        key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
        admin.projects.model_permissions.update(project.id, mode="allow_list", model_ids=["gemma-3-270m"])
        # A project whose first key comes after a restart starts with the policy it had before.
        later = admin.projects.create(name="later")
        admin.projects.model_permissions.update(later.id, mode="allow_list", model_ids=[])
        server.stop()
        server = Server(tmp_path, args=["--upstream", upstream.url])
        client = model_client(server, key)
        with pytest.raises(openai.PermissionDeniedError):
            chat(client, "qwen-2.5")
        assert chat(client, "gemma-3-270m").choices[0].message.content == "Hi"
        admin = server.client(key=admin_key).admin.organization
        late_key = admin.projects.service_accounts.create(later.id, name="app").api_key.value
        with pytest.raises(openai.PermissionDeniedError):
            chat(model_client(server, late_key), "gemma-3-270m")
    finally:
        server.stop()
        upstream.stop()


@pytest.mark.postgres_only
def test_a_policy_set_on_one_replica_holds_on_the_other(tmp_path):
    from test_replicas import until

    database = database_url(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", database=database)
    second = Server(tmp_path / "b", database=database)
    try:
        admin = first.client().admin.organization
        project = admin.projects.create(name="replicated")
        key = admin.projects.service_accounts.create(project.id, name="app").api_key.value

        def check(server, model):
            # A check as Envoy sends it with `with_request_body`: the original request's method, path and body.
            request = urllib.request.Request(
                server.base_url + "/auth/check/v1/chat/completions",
                data=json.dumps({"model": model, "messages": []}).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        # The new key reaches the second replica through its change feed: a push, applied within milliseconds.
        until(lambda: check(second, "qwen-2.5") == 200, within=5)
        admin.projects.model_permissions.update(project.id, mode="allow_list", model_ids=["gemma-3-270m"])
        # The write's replica enforces it when the write returns; the other as soon as its change feed hears of it.
        assert check(first, "qwen-2.5") == 403
        until(lambda: check(second, "qwen-2.5") == 403, within=5)
        assert check(second, "gemma-3-270m") == 200
        admin.projects.model_permissions.delete(project.id)
        until(lambda: check(second, "qwen-2.5") == 200, within=5)
    finally:
        first.stop()
        second.stop()
