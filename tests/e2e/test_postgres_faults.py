"""PostgreSQL going away under running replicas: admin calls fail fast with 503, checks go on from memory and say
so, readiness says the database is down, and everything recovers by itself when it returns, including changes
another replica made meanwhile. And a replica stopped gracefully, or killed, loses nothing it acknowledged."""

import os
import signal
import subprocess
import time

import pytest

from conftest import Server, database_url
from test_replicas import check, create_key, setup, until

pytestmark = pytest.mark.postgres_only


def cluster(action: str):
    control = os.environ.get("KEYSMITH_TEST_POSTGRES_CTL")
    if not control:
        pytest.fail("KEYSMITH_TEST_POSTGRES_CTL must name the test cluster's control script (scripts/test sets it)")
    subprocess.run([control, action], check=True, capture_output=True, timeout=120)


def test_an_outage_is_survived_and_recovered_from_without_a_restart(tmp_path):
    database = database_url(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", database=database)
    second = Server(tmp_path / "b", database=database)
    second.admin_key = first.admin_key
    try:
        project, user = setup(first)
        key = create_key(first, project, user)
        doomed = create_key(first, project, user)
        until(lambda: check(second, key["value"]) == 200 and check(second, doomed["value"]) == 200, within=1.0)

        cluster("stop")
        try:
            # Admin calls: 503 in OpenAI's envelope, within 5 seconds, no hang.
            started = time.monotonic()
            status, _, body = first.request("GET", "/organization/projects")
            assert time.monotonic() - started < 5.0
            assert status == 503 and body["error"]["code"] == "database_unavailable" and body["error"]["type"] == "server_error"
            # Checks: every key the replica knew, from its last known state, saying so.
            status, headers, _ = first.request_root("GET", "/v1/auth/check", key=key["value"])
            assert status == 200
            until(lambda: first.request_root("GET", "/v1/auth/check", key=key["value"])[1].get("X-Keysmith-Stale") == "true", within=3.0)
            assert check(second, key["value"]) == 200
            # Readiness says the database is down; liveness stays up.
            status, _, body = first.request_root("GET", "/readyz", key=False)
            assert status == 503 and body["error"]["code"] == "database_unavailable"
            assert first.request_root("GET", "/healthz", key=False)[0] == 200
        finally:
            cluster("start")

        # It comes back: readiness, admin calls and fresh checks recover without a restart.
        until(lambda: first.request_root("GET", "/readyz", key=False)[0] == 200, within=10.0)
        # A change made through the other replica as soon as it can: the first picks it up.
        until(lambda: second.request("DELETE", f"/organization/projects/{project}/api_keys/{doomed['id']}")[0] == 200, within=10.0)
        until(lambda: check(first, doomed["value"]) == 401, within=5.0)
        until(lambda: first.request_root("GET", "/v1/auth/check", key=key["value"])[1].get("X-Keysmith-Stale") is None, within=10.0)
        status, _, _ = first.request("GET", "/organization/projects")
        assert status == 200
        # The gap was noticed and counted.
        _, _, metrics = first.request_root("GET", "/metrics")
        losses = next(line for line in metrics.splitlines() if line.startswith("keysmith_change_feed_listener_losses_total "))
        assert float(losses.split()[-1]) >= 1
        assert "Lost the connection that listens" in first.stderr()
        assert "Listening for changes again" in first.stderr()
    finally:
        first.stop()
        second.stop()


def test_a_replica_stopped_gracefully_writes_its_pending_uses(tmp_path):
    server = Server(tmp_path)
    project, user = setup(server)
    key = create_key(server, project, user)
    assert check(server, key["value"]) == 200
    server.stop()  # SIGTERM: uses are written before the database closes
    restarted = Server(tmp_path)
    restarted.admin_key = server.admin_key
    try:
        status, _, stored = restarted.request("GET", f"/organization/projects/{project}/api_keys/{key['id']}")
        assert status == 200 and stored["last_used_at"] is not None
    finally:
        restarted.stop()
