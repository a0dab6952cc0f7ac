"""`keysmith serve --unix-socket PATH`: the same application on a Unix domain socket, for a gateway on the same host."""

import http.client
import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Server, keysmith_bin, database_url


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.socket_path)


def over_socket(path: str, method: str, target: str, key: str | None = None, headers: dict | None = None):
    connection = UnixConnection(path)
    all_headers = dict(headers or {})
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    connection.request(method, target, headers=all_headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode()
    return response.status, {name.lower(): value for name, value in response.getheaders()}, parsed


def test_the_same_application_answers_on_the_socket_with_its_mode(tmp_path):
    path = tmp_path / "keysmith.sock"
    server = Server(tmp_path, args=["--unix-socket", str(path)])
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert f"also listening on the Unix socket {path}" in server.stderr()
        status, _, body = over_socket(str(path), "GET", "/healthz")
        assert status == 200, body
        # The admin API and checks are the same as over TCP.
        admin = server.client().admin.organization
        project = admin.projects.create(name="on the socket")
        status, _, body = over_socket(str(path), "GET", "/v1/organization/projects?limit=100", key=server.admin_key)
        assert status == 200 and project.id in [item["id"] for item in body["data"]], body
        account = admin.projects.service_accounts.create(project.id, name="app")
        status, headers, _ = over_socket(str(path), "GET", "/v1/auth/check", key=account.api_key.value)
        assert status == 200
        assert headers["x-keysmith-project-id"] == project.id
        status, headers, body = over_socket(str(path), "GET", "/v1/auth/check", key="sk-proj-forged")
        assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    finally:
        server.stop()
    # A clean shutdown removes the socket.
    assert not path.exists()


def test_the_mode_is_configurable_and_a_bad_one_is_refused(tmp_path):
    path = tmp_path / "owner-only.sock"
    server = Server(tmp_path, env={"KEYSMITH_UNIX_SOCKET": str(path), "KEYSMITH_UNIX_SOCKET_MODE": "600"})
    try:
        # The mode is set once the socket's own listener runs, which logs it; the server's start is the TCP port's.
        deadline = time.monotonic() + 10
        while "also listening on the Unix socket" not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        server.stop()
    for mode in ("rw-rw----", "1777", "9"):
        result = subprocess.run(
            [keysmith_bin(), "serve", "--port", "0", "--database", database_url(tmp_path), "--unix-socket", str(path), "--unix-socket-mode", mode],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert f"'{mode}' is not a socket mode" in result.stderr.decode(), result.stderr.decode()


def test_a_stale_socket_is_replaced_and_a_live_one_or_a_file_is_refused(tmp_path):
    path = tmp_path / "keysmith.sock"
    # A socket left behind by a process that died: bound, never unlinked, nobody listening.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    server = Server(tmp_path, args=["--unix-socket", str(path)])
    try:
        assert over_socket(str(path), "GET", "/healthz")[0] == 200
        # A second server on the same path is refused while the first answers there, and the first keeps it.
        second = tmp_path / "second"
        second.mkdir()
        result = subprocess.run(
            [keysmith_bin(), "serve", "--port", "0", "--database", database_url(second), "--unix-socket", str(path)],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "another process is serving on it" in result.stderr.decode(), result.stderr.decode()
        assert over_socket(str(path), "GET", "/healthz")[0] == 200
    finally:
        server.stop()
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    result = subprocess.run(
        [keysmith_bin(), "serve", "--port", "0", "--database", database_url(tmp_path), "--unix-socket", str(regular)],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "it exists and is not a socket" in result.stderr.decode(), result.stderr.decode()
    assert regular.read_text() == "keep me"
