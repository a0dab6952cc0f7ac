"""The gateway recipes of docs/gateways.md (nginx and Caddy), run as documented in front of a small upstream, with
clients that forge every header a gateway uses to describe the request."""

import json
import os
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

from conftest import Server

GATEWAYS = Path(__file__).resolve().parents[2] / "docs" / "gateways.md"


def documented_config(name: str, language: str) -> str:
    text = GATEWAYS.read_text()
    block = re.search(rf"<!-- {name}-config:start -->\s*```{language}\n(.*?)```\s*<!-- {name}-config:end -->", text, re.S)
    assert block, f"docs/gateways.md has no {name} configuration block"
    return block.group(1)


class EchoHandler(BaseHTTPRequestHandler):
    """The model server: answers every request with what it received."""

    protocol_version = "HTTP/1.1"

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


def wait_for_port(port: int, process: subprocess.Popen, name: str):
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start: {process.stderr.read().decode()}")
            time.sleep(0.05)


def substituted(config: str, keysmith: int | str, upstream_port: int, port: int) -> str:
    """The recipe for these ports; `keysmith` is Keysmith's port, or the path of its Unix socket, which the recipe
    reaches as docs/gateways.md says: `server unix:PATH;` in nginx, `forward_auth unix//PATH` in Caddy."""
    if isinstance(keysmith, str):
        unix = config.replace("server 127.0.0.1:8080;", f"server unix:{keysmith};").replace(
            "forward_auth 127.0.0.1:8080", f"forward_auth unix/{keysmith}"
        )
        assert "127.0.0.1:8080" not in unix, "the recipe reaches Keysmith some other way than docs/gateways.md says"
        config = unix
    return (
        config.replace("127.0.0.1:8080", f"127.0.0.1:{keysmith}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
        .replace("127.0.0.1:8443", f"127.0.0.1:{port}")
    )


def start_nginx(tmp_path: Path, keysmith_port: int | str, upstream_port: int, port: int) -> subprocess.Popen:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (scripts/test installs it from Debian's packages)")
    config = substituted(documented_config("nginx", "nginx"), keysmith_port, upstream_port, port)
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
    return subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], stderr=subprocess.PIPE)


def start_caddy(tmp_path: Path, keysmith_port: int | str, upstream_port: int, port: int) -> subprocess.Popen:
    caddy = shutil.which("caddy")
    if not caddy:
        pytest.fail("caddy is not installed (scripts/test installs it from Debian's packages)")
    config = substituted(documented_config("caddy", "caddyfile"), keysmith_port, upstream_port, port)
    (tmp_path / "Caddyfile").write_text("{\n    admin off\n    auto_https off\n}\n" + config)
    environment = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    return subprocess.Popen(
        [caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=environment,
    )


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """Keysmith on TCP and on a Unix socket: each recipe runs over both."""
    directory = tmp_path_factory.mktemp("keysmith")
    running = Server(directory, args=["--unix-socket", str(directory / "keysmith.sock")])
    running.socket = str(directory / "keysmith.sock")
    yield running
    running.stop()


@pytest.fixture(params=["nginx-tcp", "nginx-unix", "caddy-tcp", "caddy-unix"])
def gateway(request, shared_server, tmp_path):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    name, transport = request.param.split("-")
    start = start_nginx if name == "nginx" else start_caddy
    keysmith = shared_server.socket if transport == "unix" else shared_server.port
    process = start(tmp_path, keysmith, upstream.server_address[1], port)
    wait_for_port(port, process, name)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)
    upstream.shutdown()


def call(base: str, method: str, path: str, key: str | None, body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def lower(headers: dict) -> dict:
    return {name.lower(): value for name, value in headers.items()}


# What a client behind the gateway could send to make a request look like a read of the model list.
CLAIMS_A_READ = {
    "X-Forwarded-Method": "GET",
    "X-Forwarded-Uri": "/v1/models",
    "X-Original-Method": "GET",
    "X-Original-URI": "/v1/models",
}
# And to make a read look like a write, which a recipe that passed the headers on would have Keysmith refuse.
CLAIMS_A_WRITE = {
    "X-Forwarded-Method": "POST",
    "X-Forwarded-Uri": "/v1/chat/completions",
    "X-Original-Method": "POST",
    "X-Original-URI": "/v1/chat/completions",
}


def model_reader_key(server, project_id: str) -> dict:
    """A new member's key in the project, scoped to api.model.read: what the forged descriptions try to talk past."""
    status, _, user = server.request("POST", "/organization/users", {"email": f"reader-{time.time_ns()}@example.com"})
    assert status == 200, user
    server.client().admin.organization.projects.users.create(project_id, user_id=user["id"], role="member")
    status, _, key = server.request(
        "POST", f"/organization/projects/{project_id}/api_keys", {"name": "reader", "user_id": user["id"], "scopes": ["api.model.read"]}
    )
    assert status == 200, key
    return key


def test_gateway_recipe(shared_server, gateway):
    admin = shared_server.client().admin.organization
    project = admin.projects.create(name="behind a gateway")
    account = admin.projects.service_accounts.create(project.id, name="app")
    user_key = model_reader_key(shared_server, project.id)

    # A good key reaches the model server, with who it is and without the key itself; the body goes to the model
    # server only (a prompt bigger than a check's body limit passes), and identity headers the client made up do not.
    prompt = "x" * 20_000
    status, _, echoed = call(
        gateway,
        "POST",
        "/v1/chat/completions?stream=false",
        account.api_key.value,
        {"model": "m", "prompt": prompt},
        headers={"X-Keysmith-Project-Id": "proj_forged", "X-Keysmith-Owner-Id": "user-forged", "X-Keysmith-Stale": "true"},
    )
    assert status == 200, echoed
    headers = lower(echoed["headers"])
    assert headers["x-keysmith-project-id"] == project.id
    assert headers["x-keysmith-key-id"] == account.api_key.id
    assert headers["x-keysmith-owner-type"] == "service_account"
    assert headers["x-keysmith-owner-id"] == account.id
    assert "x-keysmith-stale" not in headers
    # Unrestricted: an empty value, which nginx does not pass on at all.
    assert headers.get("x-keysmith-scopes", "") == ""
    assert "authorization" not in headers
    # The model server sees the host the client asked for, not the upstream block's name.
    assert headers["host"] == gateway.removeprefix("http://")
    assert echoed["path"] == "/v1/chat/completions?stream=false"
    assert json.loads(echoed["body"]) == {"model": "m", "prompt": prompt}

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
    assert lower(echoed["headers"])["x-keysmith-scopes"] == "api.model.read"
    status, _, body = call(gateway, "POST", "/v1/chat/completions", user_key["value"], {"model": "m"})
    assert status == 403 and body["error"]["code"] == "missing_scope"

    # Forged descriptions of the request do not reach Keysmith: a write that claims to be a read is judged as the
    # write it is, and a read that claims to be a write passes (were the forgery passed on, Keysmith would refuse
    # it as conflicting).
    status, _, body = call(gateway, "POST", "/v1/chat/completions", user_key["value"], {"model": "m"}, CLAIMS_A_READ)
    assert status == 403 and body["error"]["code"] == "missing_scope", body
    status, _, echoed = call(gateway, "GET", "/v1/models", user_key["value"], headers=CLAIMS_A_WRITE)
    assert status == 200, echoed
    # A path that ends like the model list, under the check's own path, is still its own path.
    status, _, body = call(gateway, "GET", "/v1/auth/check/v1/models", user_key["value"], headers=CLAIMS_A_READ)
    assert status == 403 and body["error"]["code"] == "missing_scope", body

    # Deleted through the admin API: refused on the very next request.
    assert call(gateway, "GET", "/v1/models", user_key["value"])[0] == 200
    admin.projects.api_keys.delete(user_key["id"], project_id=project.id)
    status, _, body = call(gateway, "GET", "/v1/models", user_key["value"])
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_the_reviews_replay_is_refused_by_keysmith_itself(shared_server):
    """Without a gateway in between: a scoped key that sends two descriptions claiming different requests."""
    project = shared_server.client().admin.organization.projects.create(name="replay")
    key = model_reader_key(shared_server, project.id)
    headers = {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"} | {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/v1/models",
    }
    status, _, body = shared_server.request_root("GET", "/v1/auth/check", key=key["value"], headers=headers)
    assert status == 403 and body["error"]["code"] == "conflicting_original_request", body
    status, _, body = shared_server.request_root("GET", "/v1/auth/check", key=key["value"])
    assert status == 403 and body["error"]["code"] == "original_request_required", body
