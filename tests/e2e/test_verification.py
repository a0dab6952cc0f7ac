"""Forward auth and key lifecycle against the real server: plain HTTP for the check, the SDK for the admin side."""

import socket
import time

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


def read_responses(connection: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """Reads `count` HTTP/1.1 responses (each with a Content-Length) from a raw socket, in the order they came."""
    data, responses = b"", []
    connection.settimeout(10)
    while len(responses) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            lines = data[:end].decode().split("\r\n")
            headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(data) >= end + 4 + length:
                responses.append((int(lines[0].split()[1]), headers, data[end + 4 : end + 4 + length]))
                data = data[end + 4 + length :]
                continue
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection after {len(responses)} of {count} responses"
        data += chunk
    return responses


def test_pipelined_checks_and_admin_calls_are_answered_in_order(shared_server):
    """HTTP/1.1 pipelining on one connection: checks, answered on the event loop, never overtake an admin call that
    is still being answered, and every response carries its own request's id."""
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="pipelined")
    key = admin.projects.service_accounts.create(project.id, name="pipelined client").api_key.value
    host = f"Host: 127.0.0.1:{shared_server.port}\r\n"
    requests, expected = [], []
    for index in range(60):
        if index % 3 == 1:
            # An admin call: a database read in Hummingbird, slower than any check.
            requests.append(
                f"GET /v1/organization/projects/{project.id}/api_keys?limit=100 HTTP/1.1\r\n{host}"
                f"Authorization: Bearer {shared_server.admin_key}\r\nX-Request-Id: r{index}\r\n\r\n"
            )
            expected.append((f"r{index}", 200, "list"))
        elif index % 3 == 2:
            requests.append(f"GET /v1/auth/check HTTP/1.1\r\n{host}Authorization: Bearer sk-proj-forged\r\nX-Request-Id: r{index}\r\n\r\n")
            expected.append((f"r{index}", 401, "refused"))
        else:
            requests.append(f"POST /v1/auth/check HTTP/1.1\r\n{host}Authorization: Bearer {key}\r\nX-Request-Id: r{index}\r\nContent-Length: 2\r\n\r\n{{}}")
            expected.append((f"r{index}", 200, "check"))
    with socket.create_connection(("127.0.0.1", shared_server.port)) as connection:
        # All at once, then in pieces that split heads and bodies, on the same connection.
        connection.sendall("".join(requests).encode())
        received = read_responses(connection, len(requests))
        for piece in [r.encode() for r in requests]:
            for start in range(0, len(piece), 17):
                connection.sendall(piece[start : start + 17])
        received += read_responses(connection, len(requests))
    for (status, headers, body), (request_id, expected_status, kind) in zip(received, expected + expected):
        assert headers["x-request-id"] == request_id and status == expected_status, (request_id, status, body[:200])
        if kind == "list":
            assert body.startswith(b'{"object":"list"')
        elif kind == "check":
            assert headers["x-keysmith-project-id"] == project.id and body == b""
        else:
            assert b'"code":"invalid_api_key"' in body and headers["www-authenticate"] == "Bearer"


def test_connection_close_on_a_check_closes_after_the_answer(shared_server):
    with socket.create_connection(("127.0.0.1", shared_server.port)) as connection:
        connection.sendall(b"GET /v1/auth/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        [(status, headers, _)] = read_responses(connection, 1)
        assert status == 401 and headers["date"].endswith(" GMT")
        connection.settimeout(5)
        assert connection.recv(1) == b""  # closed by the server


def answered_checks(server) -> float:
    """How many GET /v1/auth/check requests without a key the server has answered, from /metrics."""
    _, _, text = server.request_root("GET", "/metrics")
    name = 'keysmith_http_requests_total{route="/v1/auth/check",method="GET",status="401"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_client_that_does_not_read_its_answers_is_held_back(shared_server):
    """300,000 pipelined checks (22 MB) from a client that reads nothing: once the answers fill the sockets' buffers
    the server stops reading from that connection, instead of queueing some 80 MB of answers in memory, and goes on
    answering other connections."""
    import threading

    host = f"Host: 127.0.0.1:{shared_server.port}\r\n"
    count = 300_000
    requests = b"".join(f"GET /v1/auth/check HTTP/1.1\r\n{host}X-Request-Id: n{index}\r\n\r\n".encode() for index in range(count))
    before = answered_checks(shared_server)
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        connection.connect(("127.0.0.1", shared_server.port))

        def send():
            try:
                connection.sendall(requests)
            except OSError:
                pass  # the test shuts the socket down while this is still blocked

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        # Wait until the server stops answering this client (two samples a second apart agree).
        answered, deadline = answered_checks(shared_server), time.time() + 60
        while time.time() < deadline:
            time.sleep(1)
            now = answered_checks(shared_server)
            if now == answered:
                break
            answered = now
        stalled = answered - before
        assert 0 < stalled < count / 2, f"answered {stalled:.0f} of {count} checks that nobody read"
        assert sender.is_alive()  # the rest is still waiting in the client
        status, _, _ = check(shared_server, None)
        assert status == 401  # other connections are answered meanwhile
        connection.shutdown(socket.SHUT_RDWR)
    sender.join(timeout=10)


def test_checks_through_the_router_answer_alike_and_a_bad_switch_is_refused(tmp_path, shared_server):
    """KEYSMITH_CHECKS_ON_EVENT_LOOP=false (the diagnosis switch) sends every check through the router: the same
    answers, pipelined in order; anything but true or false is refused at start in one line."""
    from conftest import assert_one_clear_line, database_url, run_cli

    (tmp_path / "router").mkdir()
    server = Server(tmp_path / "router", env={"KEYSMITH_CHECKS_ON_EVENT_LOOP": "false"}, database=shared_server.database_url)
    try:
        admin = shared_server.client().admin.organization
        project = admin.projects.create(name="through the router")
        key = admin.projects.service_accounts.create(project.id, name="router client").api_key.value
        for target in (shared_server, server):
            # The second process learns of the key from the change log (within a second).
            deadline = time.time() + 5
            while (status := check(target, key)[0]) != 200 and time.time() < deadline:
                time.sleep(0.05)
            status, headers, body = check(target, key)
            assert status == 200 and headers["X-Keysmith-Project-Id"] == project.id and not body
            status, headers, body = check(target, "sk-proj-forged")
            assert status == 401 and body["error"]["code"] == "invalid_api_key" and headers["X-Request-Id"]
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            connection.sendall(
                b"".join(f"GET /v1/auth/check HTTP/1.1\r\nHost: x\r\nX-Request-Id: p{index}\r\n\r\n".encode() for index in range(50))
            )
            assert [headers["x-request-id"] for _, headers, _ in read_responses(connection, 50)] == [f"p{index}" for index in range(50)]
    finally:
        server.stop()
    refused = run_cli("serve", "--port", "0", "--database", database_url(tmp_path), env={"KEYSMITH_CHECKS_ON_EVENT_LOOP": "maybe"})
    assert_one_clear_line(refused, "KEYSMITH_CHECKS_ON_EVENT_LOOP", "maybe")
