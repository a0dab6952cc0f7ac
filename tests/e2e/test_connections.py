"""Hostile connections: thousands of idle and half-open ones, with the server's own open-file limit low, do not stop
it from answering, and are closed after their timeouts."""

import socket
import time

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
