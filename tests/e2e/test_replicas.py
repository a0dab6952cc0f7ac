"""Several replicas on one PostgreSQL database: what one applies, every other applies within a second, without a
database read per check."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import Server, database_url

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def replicas(tmp_path):
    """Two `keysmith serve` on one database, as behind a load balancer."""
    database = database_url(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", database=database)
    second = Server(tmp_path / "b", database=database)
    assert first.admin_key and second.admin_key is None, "one replica bootstraps the database, the other finds it done"
    second.admin_key = first.admin_key
    yield first, second
    first.stop()
    second.stop()


def check(server: Server, key: str) -> int:
    """A gateway's check of `GET /v1/models`: a scoped key (api.model.read, below) is let through only on a check
    that says what the original request is."""
    original = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models"}
    return server.request_root("GET", "/v1/auth/check", key=key, headers=original)[0]


def until(condition, within: float) -> float:
    """Seconds until `condition()` held, polling every 10 ms; fails after `within` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.01)
    return time.monotonic() - started


def setup(server: Server):
    admin = server.client().admin.organization
    project = admin.projects.create(name="replicated")
    status, _, user = server.request("POST", "/organization/users", {"email": "replica@example.com"})
    assert status == 200
    admin.projects.users.create(project.id, user_id=user["id"], role="member")
    return project.id, user["id"]


def create_key(server: Server, project: str, user: str, **extra) -> dict:
    status, _, key = server.request("POST", f"/organization/projects/{project}/api_keys", {"name": "k", "user_id": user, **extra})
    assert status == 200, key
    return key


def test_a_revocation_on_one_replica_applies_on_the_other_within_a_second_twenty_times(replicas):
    first, second = replicas
    project, user = setup(first)
    delays = []
    for _ in range(20):
        key = create_key(first, project, user)
        until(lambda: check(second, key["value"]) == 200, within=1.0)
        status, _, _ = first.request("DELETE", f"/organization/projects/{project}/api_keys/{key['id']}")
        assert status == 200
        delays.append(until(lambda: check(second, key["value"]) == 401, within=1.0))
    assert max(delays) < 1.0


def test_every_kind_of_change_reaches_the_other_replica_within_a_second(replicas):
    first, second = replicas
    admin = first.client().admin.organization
    project, user = setup(first)

    # Created on one, verifies on the other.
    key = create_key(first, project, user)
    until(lambda: check(second, key["value"]) == 200, within=1.0)

    # A rotation without a grace period: the old secret stops, the new one starts.
    status, _, rotated = first.request("POST", f"/organization/projects/{project}/api_keys/{key['id']}/rotate", {})
    assert status == 200
    until(lambda: check(second, key["value"]) == 401 and check(second, rotated["value"]) == 200, within=1.0)

    # A scope change: the other replica enforces the new scope.
    status, _, _ = first.request("POST", f"/organization/projects/{project}/api_keys/{key['id']}", {"scopes": ["api.model.read"]})
    assert status == 200
    headers = {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"}
    until(lambda: second.request_root("GET", "/v1/auth/check", key=rotated["value"], headers=headers)[0] == 403, within=1.0)

    # The member leaves, and comes back.
    admin.projects.users.delete(user, project_id=project)
    until(lambda: check(second, rotated["value"]) == 401, within=1.0)
    admin.projects.users.create(project, user_id=user, role="member")
    until(lambda: check(second, rotated["value"]) == 200, within=1.0)

    # A user deleted from the organization: their keys stop on the other replica too.
    other = create_key(first, project, user)
    until(lambda: check(second, other["value"]) == 200, within=1.0)
    admin.users.delete(user)
    until(lambda: check(second, other["value"]) == 401, within=1.0)

    # A service account is deleted, with its keys.
    account = admin.projects.service_accounts.create(project, name="bot")
    until(lambda: check(second, account.api_key.value) == 200, within=1.0)
    admin.projects.service_accounts.delete(account.id, project_id=project)
    until(lambda: check(second, account.api_key.value) == 401, within=1.0)

    # The project is archived: a service account's key in it stops.
    survivor = admin.projects.service_accounts.create(project, name="survivor")
    until(lambda: check(second, survivor.api_key.value) == 200, within=1.0)
    admin.projects.archive(project)
    until(lambda: check(second, survivor.api_key.value) == 401, within=1.0)

    # An admin key made on one replica works on the other, and stops when deleted there.
    admin_key = admin.admin_api_keys.create(name="second")
    until(lambda: second.request("GET", "/organization/projects", key=admin_key.value)[0] == 200, within=1.0)
    admin.admin_api_keys.delete(admin_key.id)
    until(lambda: second.request("GET", "/organization/projects", key=admin_key.value)[0] == 401, within=1.0)


def test_a_thousand_creations_through_each_replica_at_once_lose_none(replicas):
    first, second = replicas
    project, user = setup(first)
    created: dict[str, str] = {}
    lock = threading.Lock()
    failures = []

    def create(server: Server, count: int):
        made = {}
        for _ in range(count):
            body = json.dumps({"name": "burst", "user_id": user}).encode()
            request = urllib.request.Request(
                f"{server.base_url}/organization/projects/{project}/api_keys",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {first.admin_key}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    key = json.loads(response.read())
                    made[key["id"]] = key["value"]
            except urllib.error.HTTPError as error:
                failures.append((error.code, error.read()))
        with lock:
            created.update(made)

    threads = [threading.Thread(target=create, args=(server, 125)) for server in (first, second) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    assert len(created) == 2000

    # The list shows each exactly once, through either replica.
    for server in (first, second):
        listed = [key.id for key in server.client().admin.organization.projects.api_keys.list(project, limit=100)]
        assert len(listed) == 2000 and set(listed) == set(created)
    # And every key verifies on both, from memory.
    for key_id, value in list(created.items())[::50]:
        until(lambda: check(first, value) == 200 and check(second, value) == 200, within=1.0)
