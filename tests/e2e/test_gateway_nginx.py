"""The nginx recipe of docs/gateways.md, run as documented in front of a small upstream."""

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GATEWAYS = Path(__file__).resolve().parents[2] / "docs" / "gateways.md"


def documented_nginx_config() -> str:
    text = GATEWAYS.read_text()
    block = re.search(r"<!-- nginx-config:start -->\s*```nginx\n(.*?)```\s*<!-- nginx-config:end -->", text, re.S)
    assert block, "docs/gateways.md has no nginx configuration block"
    return block.group(1)


class EchoHandler(BaseHTTPRequestHandler):
    """The model server: answers every request with what it received."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body.decode()}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gateway(shared_server, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (scripts/test installs it from Debian's packages)")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    config = (
        documented_nginx_config()
        .replace("127.0.0.1:8080", f"127.0.0.1:{shared_server.port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{upstream.server_address[1]}")
        .replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    )
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / name).mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
error_log {tmp_path}/error.log info;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
{config}
}}
"""
    )
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"nginx did not start: {process.stderr.read().decode()}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)
    upstream.shutdown()


def call(base: str, method: str, path: str, key: str | None, body: dict | None = None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def test_nginx_recipe(shared_server, gateway):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="behind nginx")
    account = admin.projects.service_accounts.create(project.id, name="app")
    status, _, user = shared_server.request("POST", "/organization/users", {"email": "nginx@example.com"})
    admin.projects.users.create(project.id, user_id=user["id"], role="member")
    status, _, user_key = shared_server.request(
        "POST",
        f"/organization/projects/{project.id}/api_keys",
        {"name": "reader", "user_id": user["id"], "scopes": ["api.model.read"]},
    )
    assert status == 200

    # A good key reaches the model server, with who it is and without the key itself.
    status, _, echoed = call(gateway, "POST", "/v1/chat/completions?stream=false", account.api_key.value, {"model": "m"})
    assert status == 200, echoed
    headers = {name.lower(): value for name, value in echoed["headers"].items()}
    assert headers["x-keysmith-project-id"] == project.id
    assert headers["x-keysmith-key-id"] == account.api_key.id
    assert headers["x-keysmith-owner-type"] == "service_account"
    # Unrestricted: an empty value, which nginx does not pass on at all.
    assert headers.get("x-keysmith-scopes", "") == ""
    assert "authorization" not in headers
    # The model server sees the host the client asked for, not the upstream block's name.
    assert headers["host"] == gateway.removeprefix("http://")
    assert echoed["path"] == "/v1/chat/completions?stream=false"
    assert json.loads(echoed["body"]) == {"model": "m"}

    # A bad key gets Keysmith's 401 JSON at the client, with one WWW-Authenticate, and never reaches the model server.
    for key in ("sk-proj-not-a-key", None):
        status, response_headers, body = call(gateway, "POST", "/v1/chat/completions", key, {"model": "m"})
        assert status == 401, body
        assert response_headers["Content-Type"].startswith("application/json")
        assert response_headers.get_all("WWW-Authenticate") == ["Bearer"]
        assert set(body["error"]) == {"message", "type", "param", "code"}
    status, _, body = call(gateway, "GET", "/v1/models", "sk-proj-not-a-key")
    assert body["error"]["code"] == "invalid_api_key"

    # A scoped key: allowed where its scope reaches, with its scopes passed on; Keysmith's 403 JSON elsewhere.
    status, _, echoed = call(gateway, "GET", "/v1/models", user_key["value"])
    assert status == 200
    assert {name.lower(): value for name, value in echoed["headers"].items()}["x-keysmith-scopes"] == "api.model.read"
    status, _, body = call(gateway, "POST", "/v1/chat/completions", user_key["value"], {"model": "m"})
    assert status == 403 and body["error"]["code"] == "missing_scope"

    # Deleted through the admin API: refused on the very next request.
    assert call(gateway, "GET", "/v1/models", user_key["value"])[0] == 200
    admin.projects.api_keys.delete(user_key["id"], project_id=project.id)
    status, _, body = call(gateway, "GET", "/v1/models", user_key["value"])
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
