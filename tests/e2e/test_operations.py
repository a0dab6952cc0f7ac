"""What an operator runs and reads: the metrics listener, logs (text and JSON), TLS."""

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from openai import DefaultHttpxClient, OpenAI

from conftest import Server, assert_one_clear_line, run_cli


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, context=None, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_metrics_listener_needs_no_token_and_the_main_port_does(tmp_path):
    port = free_port()
    server = Server(tmp_path, args=["--metrics-address", f"127.0.0.1:{port}"])
    try:
        server.client().admin.organization.projects.create(name="counted")
        status, _, body = server.request_root("GET", "/metrics", key=False)
        assert status == 401 and body["error"]["code"] is None
        status, headers, text = server.request_root("GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert 'keysmith_http_requests_total{route="/v1/organization/projects",method="POST",status="200"} 1' in text

        status, headers, text = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200, text
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "keysmith_build_info{" in text
        assert "keysmith_verification_index_secrets" in text
        # The private listener serves the metrics and nothing else.
        assert get(f"http://127.0.0.1:{port}/v1/organization/projects")[0] == 404
        assert f"Serving /metrics without authentication on 127.0.0.1:{port}" in server.stderr()
    finally:
        server.stop()


def test_json_logs_with_start_access_and_stop_lines(tmp_path):
    server = Server(tmp_path, args=["--log-format", "json"], env={"KEYSMITH_LOG_LEVEL": "info"})
    admin_key = server.admin_key
    try:
        status, headers, _ = server.request_root("GET", "/healthz", headers={"X-Request-Id": "from-the-gateway-1"})
        assert status == 200 and headers["X-Request-Id"] == "from-the-gateway-1"
        server.client().admin.organization.projects.list()
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
    assert all({"time", "level", "label", "message"} <= set(line) for line in lines)
    messages = [line["message"] for line in lines]

    start = next(line for line in lines if "is listening on" in line["message"])
    assert start["level"] == "info" and start["version"]
    assert start["address"] == f"http://127.0.0.1:{server.port}"
    if server.database_url.startswith("sqlite"):
        assert start["database"] == f"sqlite://{server.database}"
    else:
        # The URL without its password.
        password = server.database_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert start["database"].startswith("postgres://keysmith@127.0.0.1:") and password not in start["database"]
    assert start["migrations_applied"] == "0001_create_schema,0002_add_key_rotation,0003_create_change_log,0004_users_invites_audit_log,0005_index_audit_log_times,0006_order_change_log_by_transaction,0007_record_model_usage,0008_project_model_permissions,0009_project_rate_limits"

    access = [line for line in lines if line["message"] == "request"]
    traced = next(line for line in access if line.get("request_id") == "from-the-gateway-1")
    assert traced["method"] == "GET" and traced["route"] == "/healthz" and traced["status"] == "200"
    assert float(traced["duration_ms"]) >= 0
    listed = next(line for line in access if line["route"] == "/v1/organization/projects")
    assert listed["request_id"] and listed["status"] == "200"

    stopping = next(i for i, message in enumerate(messages) if message.startswith("Stopping"))
    stopped = next(i for i, message in enumerate(messages) if message == "Keysmith stopped")
    assert messages.index(start["message"]) < stopping < stopped
    assert admin_key not in server.stderr()


def test_text_logs_say_when_the_server_starts_and_stops(tmp_path):
    server = Server(tmp_path)
    server.stop()
    log = server.stderr()
    assert f"is listening on 127.0.0.1:{server.port} (http)" in log
    assert "migrations_applied=0001_create_schema,0002_add_key_rotation,0003_create_change_log,0004_users_invites_audit_log,0005_index_audit_log_times,0006_order_change_log_by_transaction,0007_record_model_usage,0008_project_model_permissions,0009_project_rate_limits" in log
    assert "Stopping: finishing requests in flight" in log
    assert "Keysmith stopped" in log


def test_unknown_log_levels_and_formats_are_refused(tmp_path):
    database = f"sqlite:{tmp_path / 'k.sqlite'}"
    verbose = run_cli("serve", "--port", "0", "--database", database, env={"KEYSMITH_LOG_LEVEL": "verbose"})
    assert_one_clear_line(verbose, "KEYSMITH_LOG_LEVEL", "verbose", "trace")
    xml = run_cli("serve", "--port", "0", "--database", database, env={"KEYSMITH_LOG_FORMAT": "xml"})
    assert_one_clear_line(xml, "KEYSMITH_LOG_FORMAT", "xml")
    flag = run_cli("serve", "--port", "0", "--database", database, "--log-format", "xml")
    assert flag.returncode != 0 and "xml" in flag.stderr
    # Nothing was created by the refused starts.
    assert not (tmp_path / "k.sqlite").exists()


@pytest.fixture
def certificate(tmp_path):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl is not installed (scripts/test installs it from Debian's packages)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_with_a_self_signed_certificate(tmp_path, certificate):
    cert, key = certificate
    server = Server(tmp_path, args=["--tls-certificate", str(cert), "--tls-key", str(key)], scheme="https")
    try:
        assert f"is listening on 127.0.0.1:{server.port} (https)" in server.stderr()
        context = ssl.create_default_context(cafile=str(cert))
        status, _, body = get(f"https://127.0.0.1:{server.port}/healthz", context=context)
        assert status == 200 and body == "ok"

        # The official SDK, trusting the certificate, manages keys over HTTPS.
        client = OpenAI(
            admin_api_key=server.admin_key,
            base_url=server.base_url,
            max_retries=0,
            http_client=DefaultHttpxClient(verify=context),
        )
        project = client.admin.organization.projects.create(name="over tls")
        account = client.admin.organization.projects.service_accounts.create(project.id, name="bot")
        status, headers, _ = get(
            f"https://127.0.0.1:{server.port}/v1/auth/check",
            context=context,
            headers={"Authorization": f"Bearer {account.api_key.value}"},
        )
        assert status == 200 and headers["X-Keysmith-Project-Id"] == project.id

        # Without the certificate trusted, the client refuses; plain HTTP gets no answer.
        with pytest.raises(urllib.error.URLError):
            get(f"https://127.0.0.1:{server.port}/healthz", context=ssl.create_default_context())
        with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
            get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()


def test_tls_files_must_be_given_together_and_readable(tmp_path, certificate):
    cert, key = certificate
    database = f"sqlite:{tmp_path / 'k.sqlite'}"
    alone = run_cli("serve", "--port", "0", "--database", database, "--tls-certificate", str(cert))
    assert_one_clear_line(alone, "--tls-certificate and --tls-key go together")
    missing = run_cli("serve", "--port", "0", "--database", database, "--tls-certificate", str(cert), "--tls-key", "/nonexistent.pem")
    assert_one_clear_line(missing, "/nonexistent.pem")
