"""Hostile connections: thousands of idle and half-open ones, with the server's own open-file limit low, do not stop
it from answering, and are closed after their timeouts."""

import signal
import socket
import time
import urllib.request

from conftest import Server


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


def is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_idle_and_half_open_connections_cannot_starve_the_server(tmp_path):
    # 1,024 open files: about 900 connections at most.
    server = Server(tmp_path, args=["--idle-timeout", "6", "--request-head-timeout", "6"], open_files=1024)
    sockets: list[socket.socket] = []
    try:
        admin = server.client().admin.organization
        project = admin.projects.create(name="under siege")
        key = admin.projects.service_accounts.create(project.id, name="bot").api_key.value
        started = time.monotonic()
        for index in range(3000):
            sock = connect(server.port)
            if index % 2:
                sock.sendall(b"GET /healthz HT")  # half a request line, never finished
            sockets.append(sock)
        opened = time.monotonic() - started

        # New clients are still answered, at once, while all of those are open.
        started = time.monotonic()
        status, _, body = server.request_root("GET", "/healthz", key=False)
        assert status == 200 and body == "ok"
        assert server.request_root("GET", "/v1/auth/check", key=key)[0] == 200
        assert time.monotonic() - started < 5

        # The limit held: the oldest idle connections were closed to admit newer ones (some may have timed out
        # already on a slow machine).
        status, _, metrics = server.request_root("GET", "/metrics")
        assert status == 200
        evicted = metric(metrics, 'keysmith_http_connections_closed_total{reason="evicted_at_limit"}')
        timed_out = metric(metrics, 'keysmith_http_connections_closed_total{reason="idle_timeout"}') + metric(
            metrics, 'keysmith_http_connections_closed_total{reason="request_head_timeout"}'
        )
        assert evicted > 0 and evicted + timed_out >= 3000 - 1024, f"opening took {opened:.1f} s\n{metrics}"
        assert metric(metrics, "keysmith_http_connections_open") < 1024

        # And every one of them is closed by its timeout, with a margin for a loaded machine.
        deadline = time.monotonic() + 6 + 10
        while time.monotonic() < deadline and not all(is_closed(sock) for sock in sockets):
            time.sleep(0.25)
        still_open = sum(1 for sock in sockets if not is_closed(sock))
        assert still_open == 0, f"{still_open} connections still open (opening them took {opened:.1f} s)"
        _, _, metrics = server.request_root("GET", "/metrics")
        assert metric(metrics, 'keysmith_http_connections_closed_total{reason="idle_timeout"}') > 0
        assert metric(metrics, 'keysmith_http_connections_closed_total{reason="request_head_timeout"}') > 0
        assert server.request_root("GET", "/healthz", key=False)[0] == 200
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    assert "At the connection limit" in server.stderr()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics")


def read_responses(sock: socket.socket, count: int, timeout: float = 10) -> list[bytes]:
    """Reads `count` HTTP/1.1 responses (each with a Content-Length) from `sock`; fewer if it closes first."""
    sock.settimeout(timeout)
    data = b""
    responses = []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(data) >= head_end + 4 + length:
                responses.append(data[: head_end + 4 + length])
                data = data[head_end + 4 + length :]
                continue
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return responses


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_closed(sock):
            return True
        time.sleep(0.1)
    return False


def test_stalled_request_bodies_cannot_hold_the_connections(tmp_path):
    # The review's replay: every slot held by a request head that promises a body and never sends it. The check
    # route and the dashboard's sign-in both read before any key is known.
    server = Server(
        tmp_path,
        args=["--max-connections", "64", "--request-body-timeout", "3", "--idle-timeout", "60", "--request-head-timeout", "10"],
    )
    held: list[socket.socket] = []
    try:
        for index in range(64):
            sock = connect(server.port)
            path = b"/v1/auth/check" if index % 2 else b"/dashboard/sign-in"
            sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: k\r\nContent-Length: 10\r\n\r\n")
            held.append(sock)
        time.sleep(0.5)
        # With every slot held by a stalled body, a gateway's new connection is still admitted (a stalled one goes).
        status, _, body = server.request_root("GET", "/healthz", key=False)
        assert status == 200 and body == "ok"
        # And each stalled request is answered 408 and closed once its body has made no progress for 3 s.
        answered = 0
        for sock in held:
            responses = read_responses(sock, 1, timeout=8)
            if responses:
                assert status_of(responses[0]) == 408, responses[0]
                assert b'"code":"request_timeout"' in responses[0] or b"408" in responses[0]
                answered += 1
            assert wait_closed(sock, 8)
        # Some were evicted to admit the /healthz request and the metrics request below; all the others got the 408.
        assert answered >= 60
        _, _, metrics = server.request_root("GET", "/metrics")
        assert metric(metrics, 'keysmith_http_connections_closed_total{reason="request_body_timeout"}') >= 60
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_a_pipelined_second_request_is_not_closed_as_idle(tmp_path):
    server = Server(tmp_path, args=["--idle-timeout", "2"])
    sock = connect(server.port)
    try:
        # Two requests in one write: the first answered at once, the second's body still to come.
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: k\r\n\r\n"
            b"POST /v1/auth/check HTTP/1.1\r\nHost: k\r\nContent-Length: 3\r\n\r\n"
        )
        first = read_responses(sock, 1)
        assert first and status_of(first[0]) == 200
        # Past the idle timeout, with the second request still being read: the connection is busy, not idle.
        time.sleep(3.5)
        sock.sendall(b"abc")
        second = read_responses(sock, 1)
        assert second and status_of(second[0]) == 401, second
        assert not is_closed(sock)
    finally:
        sock.close()
        server.stop()


def test_checks_refuse_a_body_beyond_8_kib(server):
    sock = connect(server.port)
    try:
        sock.sendall(b"POST /v1/auth/check HTTP/1.1\r\nHost: k\r\nContent-Length: 8192\r\n\r\n" + b"x" * 8192)
        responses = read_responses(sock, 1)
        assert responses and status_of(responses[0]) == 401
        sock.sendall(b"POST /v1/auth/check HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10000)
        responses = read_responses(sock, 1)
        assert responses and status_of(responses[0]) == 413, responses
        assert b'"code":"request_too_large"' in responses[0]
        assert wait_closed(sock, 5)
    finally:
        sock.close()


def test_the_metrics_listener_cannot_starve_the_main_port(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    server = Server(tmp_path, args=["--metrics-address", f"127.0.0.1:{metrics_port}"], open_files=1024)
    sockets: list[socket.socket] = []
    try:
        # The review's replay: 1,000 idle sockets on the metrics port at a 1,024-file limit.
        for _ in range(1000):
            try:
                sockets.append(connect(metrics_port))
            except OSError:
                break
        started = time.monotonic()
        status, _, body = server.request_root("GET", "/healthz", key=False)
        assert status == 200 and body == "ok"
        assert time.monotonic() - started < 5
        # The metrics listener keeps only a few connections of its own, and still answers a new one.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert response.status == 200
        closed = sum(1 for sock in sockets if is_closed(sock))
        assert closed >= len(sockets) - 64, f"{closed} of {len(sockets)} closed"
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    assert "At the connection limit" in server.stderr()


def test_graceful_shutdown_finishes_the_checks_already_read(tmp_path):
    server = Server(tmp_path)
    sock = connect(server.port)
    try:
        check = b"POST /v1/auth/check HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\n\r\nhello"
        # Three whole checks pipelined, and a fourth whose body is on its way when the server is told to stop.
        sock.sendall(check * 3 + check[:-3])
        first = read_responses(sock, 3)
        assert [status_of(r) for r in first] == [401, 401, 401]
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(check[-3:])
        last = read_responses(sock, 1)
        assert last and status_of(last[0]) == 401, last
        assert wait_closed(sock, 10)
    finally:
        sock.close()
    assert server.stop() == 0
