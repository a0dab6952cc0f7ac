"""Project rate limits, as the official SDK lists and updates them, enforced by Keysmith as the gateway and the check.

The upstream is test_gateway's fake model server, which records what reaches it: a refused request never does.
"""

import json
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import Server, database_url
from test_gateway import FakeUpstream, model_client

DEFAULTS = {
    "models": {
        "gemma-3-270m": {"max_requests_per_1_minute": 600, "max_tokens_per_1_minute": 150000},
        "qwen-2.5": {"max_requests_per_1_minute": 60, "max_tokens_per_1_minute": 10000, "max_requests_per_1_day": 1000},
    },
    "default_max_tokens": 100,
}


def limits_file(directory, settings=DEFAULTS):
    path = directory / "rate-limits.json"
    path.write_text(json.dumps(settings))
    return str(path)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rate-limits")
    upstream = FakeUpstream(models=["gemma-3-270m", "qwen-2.5"])
    server = Server(directory, args=["--upstream", upstream.url, "--rate-limits", limits_file(directory)])
    admin = server.client().admin.organization
    yield server, upstream, admin
    server.stop()
    upstream.stop()


def new_project(admin, name):
    project = admin.projects.create(name=name)
    key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
    return project, key


def wait_for_room_in_the_minute(seconds=20):
    """Windows are clock minutes: start a burst that must fall in one with time to spare."""
    while 60 - time.time() % 60 < seconds:
        time.sleep(0.5)


def test_the_sdk_lists_and_updates_a_projects_rate_limits(limited):
    server, upstream, admin = limited
    project, _ = new_project(admin, "listed")
    rate_limits = admin.projects.rate_limits
    listed = list(rate_limits.list_rate_limits(project.id))
    assert [(limit.object, limit.id, limit.model) for limit in listed] == [
        ("project.rate_limit", "rl-gemma-3-270m", "gemma-3-270m"),
        ("project.rate_limit", "rl-qwen-2.5", "qwen-2.5"),
    ]
    assert (listed[0].max_requests_per_1_minute, listed[0].max_tokens_per_1_minute, listed[0].max_requests_per_1_day) == (600, 150000, None)
    assert listed[1].max_requests_per_1_day == 1000

    updated = rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_requests_per_1_minute=30)
    assert (updated.id, updated.max_requests_per_1_minute, updated.max_tokens_per_1_minute) == ("rl-gemma-3-270m", 30, 150000)
    # A model with a slash in its id: the SDK encodes it in the path.
    own = rate_limits.update_rate_limit("rl-org/with-slash", project_id=project.id, max_requests_per_1_day=5)
    assert (own.model, own.max_requests_per_1_minute, own.max_requests_per_1_day) == ("org/with-slash", 0, 5)
    # The SDK pages through them, one at a time here.
    paged = [limit.id for limit in rate_limits.list_rate_limits(project.id, limit=1)]
    assert paged == ["rl-gemma-3-270m", "rl-org/with-slash", "rl-qwen-2.5"]

    with pytest.raises(openai.BadRequestError) as negative:
        rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_requests_per_1_minute=-1)
    assert negative.value.body["param"] == "max_requests_per_1_minute"
    with pytest.raises(openai.BadRequestError) as images:
        rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_images_per_1_minute=10)
    assert images.value.body["param"] == "max_images_per_1_minute"
    with pytest.raises(openai.NotFoundError):
        list(rate_limits.list_rate_limits("proj_missing"))
    assert rate_limits.list_rate_limits(project.id).data[0].max_requests_per_1_minute == 30

    # Audited as OpenAI's event type.
    events = admin.audit_logs.list(event_types=["rate_limit.updated"], project_ids=[project.id]).data
    assert len(events) == 2 and events[-1].type == "rate_limit.updated"


def test_the_gateway_refuses_past_the_requests_limit_with_openais_429_and_headers(limited):
    server, upstream, admin = limited
    project, key = new_project(admin, "requests")
    admin.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_requests_per_1_minute=3)
    client = model_client(server, key)
    wait_for_room_in_the_minute()
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}])
        assert raw.parse().choices[0].message.content == "Hi"
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "150000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]

    before = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 429
    body = refused.value.body
    assert (body["type"], body["param"], body["code"]) == ("requests", None, "rate_limit_exceeded")
    assert body["message"].startswith(
        f"Rate limit reached for gemma-3-270m in project {project.id} on requests per min (RPM): Limit 3, Used 3, Requested 1."
    )
    retry_after = int(refused.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(upstream.requests) == before
    # Another model keeps its own limit.
    assert client.chat.completions.create(model="qwen-2.5", messages=[]).choices[0].message.content == "Hi"


def test_tokens_are_reserved_and_settled_with_the_reported_usage(limited):
    server, upstream, admin = limited
    project, key = new_project(admin, "tokens")
    # Each request reserves its prompt's bytes / 4 plus max_tokens (10): about 30 tokens. The fake reports 6 used.
    admin.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_tokens_per_1_minute=100)
    client = model_client(server, key)
    wait_for_room_in_the_minute()
    for _ in range(6):
        # Settled at 6 each, six fit in 100; left reserved, only three would.
        raw = client.chat.completions.with_raw_response.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], max_tokens=10
        )
        assert raw.headers["x-ratelimit-limit-tokens"] == "100"
    # Asking for more than the limit can ever give is refused at once.
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gemma-3-270m", messages=[], max_tokens=100)
    assert refused.value.body["type"] == "tokens"
    assert "on tokens per min (TPM): Limit 100" in refused.value.body["message"]


def test_a_check_counts_requests_by_the_forwarded_body(limited):
    server, upstream, admin = limited
    project, key = new_project(admin, "checked")
    admin.projects.rate_limits.update_rate_limit("rl-qwen-2.5", project_id=project.id, max_requests_per_1_minute=2)

    def check(body):
        # As Envoy sends it with `with_request_body`.
        request = urllib.request.Request(
            server.base_url + "/auth/check/v1/chat/completions",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    wait_for_room_in_the_minute()
    statuses = [check({"model": "qwen-2.5", "messages": []})[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, headers = check({"model": "qwen-2.5"})
    assert status == 429 and headers["x-ratelimit-remaining-requests"] == "0" and headers["retry-after"]
    # A check that does not say its model might be for a limited one: refused.
    assert check(None)[0] == 403


def test_a_days_limit_survives_a_restart(tmp_path):
    upstream = FakeUpstream(models=["gemma-3-270m"])
    server = Server(tmp_path, args=["--upstream", upstream.url])
    admin_key = server.admin_key
    try:
        admin = server.client().admin.organization
        project, key = new_project(admin, "daily")
        admin.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_requests_per_1_day=2)
        for _ in range(2):
            model_client(server, key).chat.completions.create(model="gemma-3-270m", messages=[])
        server.stop()
        server = Server(tmp_path, args=["--upstream", upstream.url])
        with pytest.raises(openai.RateLimitError) as refused:
            model_client(server, key).chat.completions.create(model="gemma-3-270m", messages=[])
        assert "requests per day (RPD): Limit 2, Used 2" in refused.value.body["message"]
        assert server.client(key=admin_key).admin.organization.projects.rate_limits.list_rate_limits(project.id).data[0].max_requests_per_1_day == 2
    finally:
        server.stop()
        upstream.stop()


@pytest.mark.postgres_only
def test_two_replicas_under_uneven_load_never_pass_the_limit(tmp_path):
    database = database_url(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    upstream = FakeUpstream(models=["gemma-3-270m"])
    first = Server(tmp_path / "a", database=database, args=["--upstream", upstream.url])
    second = Server(tmp_path / "b", database=database, args=["--upstream", upstream.url])
    limit = 50
    try:
        admin = first.client().admin.organization
        project, key = new_project(admin, "shared")
        admin.projects.rate_limits.update_rate_limit("rl-gemma-3-270m", project_id=project.id, max_requests_per_1_minute=limit)
        # The second replica hears of the limit through its change feed.
        from test_replicas import until

        def limited_on(server):
            status, headers, _ = server.request("POST", "/chat/completions", {"model": "gemma-3-270m", "messages": []}, key=key)
            return headers.get("x-ratelimit-limit-requests") == str(limit)

        wait_for_room_in_the_minute(30)
        assert limited_on(first)
        until(lambda: limited_on(second), within=5)

        results = {"a": [], "b": []}

        def load(server, name, count):
            for _ in range(count):
                status, _, _ = server.request("POST", "/chat/completions", {"model": "gemma-3-270m", "messages": []}, key=key)
                results[name].append(status)

        # 80/20 across the two, four clients on each, well past the limit.
        threads = [threading.Thread(target=load, args=(first, "a", 40)) for _ in range(4)]
        threads += [threading.Thread(target=load, args=(second, "b", 10)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        admitted = sum(status == 200 for statuses in results.values() for status in statuses)
        refused = sum(status == 429 for statuses in results.values() for status in statuses)
        # The two probes above were admitted too.
        assert admitted + refused == 200
        assert admitted + 2 <= limit, results
        # Leases are a tenth of the limit: at most one lease a replica goes unused.
        assert admitted + 2 >= limit - 2 * (limit // 10), results
        assert sum(status == 200 for status in results["b"]) > 0
    finally:
        first.stop()
        second.stop()
        upstream.stop()


@pytest.mark.postgres_only
def test_with_postgresql_stopped_a_replica_admits_from_its_lease_then_does_as_configured(tmp_path):
    from test_postgres_faults import cluster
    from test_replicas import until

    servers = {}
    for policy in ("refuse", "admit"):
        directory = tmp_path / policy
        directory.mkdir()
        settings = {"models": {"gemma-3-270m": {"max_requests_per_1_minute": 100}}, "when_database_unavailable": policy}
        servers[policy] = Server(directory, args=["--rate-limits", limits_file(directory, settings)])
    try:
        keys = {}
        for policy, server in servers.items():
            admin = server.client().admin.organization
            keys[policy] = new_project(admin, policy)[1]

        def check(policy):
            request = urllib.request.Request(
                servers[policy].base_url + "/auth/check/v1/chat/completions",
                data=json.dumps({"model": "gemma-3-270m"}).encode(),
                headers={"Authorization": f"Bearer {keys[policy]}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, None
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)["error"]["code"]

        wait_for_room_in_the_minute(40)
        # Each takes its first lease: a tenth of the limit.
        assert check("refuse")[0] == 200 and check("admit")[0] == 200
        cluster("stop")
        try:
            # What was leased is admitted from memory; then the operator's choice.
            refused = [check("refuse") for _ in range(12)]
            assert [status for status, _ in refused[:9]] == [200] * 9, refused
            assert refused[9:] == [(503, "rate_limits_unavailable")] * 3, refused
            assert [check("admit")[0] for _ in range(12)] == [200] * 12
        finally:
            cluster("start")
        # The database back, leases are taken again.
        until(lambda: check("refuse")[0] == 200, within=15)
    finally:
        for server in servers.values():
            server.stop()


def test_a_keys_own_limits_bind_beside_its_projects_and_hold_its_concurrent_requests(limited):
    server, upstream, admin = limited
    project, key = new_project(admin, "per key")
    key_id = admin.projects.api_keys.list(project.id).data[0].id
    path = f"/organization/projects/{project.id}/api_keys/{key_id}/rate_limits"
    status, _, body = server.request("POST", path, {"max_concurrent_requests": 1, "max_requests_per_1_minute": 100})
    assert status == 200 and body["object"] == "organization.project.api_key.rate_limits" and body["max_concurrent_requests"] == 1
    client = model_client(server, key)
    wait_for_room_in_the_minute()

    # A stream holds the key's one slot until it ends (the fake upstream takes 0.8 s over it).
    streamed = []
    stream = threading.Thread(
        target=lambda: streamed.extend(
            client.chat.completions.create(model="gemma-3-270m", messages=[], stream=True)
        )
    )
    stream.start()
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="qwen-2.5", messages=[])
    assert "on concurrent requests: Limit 1" in refused.value.body["message"]
    stream.join()
    assert len(streamed) >= 3
    # Over: the slot is free again, and the key's own per-minute limit is the binding one in the headers.
    raw = client.chat.completions.with_raw_response.create(model="qwen-2.5", messages=[])
    assert raw.headers["x-ratelimit-limit-requests"] == "60"  # qwen's 60 a minute binds before the key's 100
    status, _, body = server.request("POST", path, {"max_requests_per_1_minute": 2, "max_concurrent_requests": 0})
    assert body["max_requests_per_1_minute"] == 2
    # The key has used 2 of its 2 this minute (the stream and the request above; the refused one took nothing).
    with pytest.raises(openai.RateLimitError) as spent:
        client.chat.completions.create(model="gemma-3-270m", messages=[])
    assert spent.value.body["message"].startswith(f"Rate limit reached for API key {key_id} in project {project.id} on requests per min")
