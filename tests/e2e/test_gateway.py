"""`keysmith serve --upstream URL`: Keysmith as the gateway, the OpenAI model API verified and proxied to a model server.

The upstream here is a fake OpenAI-compatible server in this process (`FakeUpstream`), so that each test can say
what the model server does (stream with gaps, stall, fail halfway, look at what reached it) and see what the client
gets through Keysmith, with the official SDK where a client would use it.
"""

import http.client
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import Server

UPSTREAM_KEY = "upstream-secret-for-vllm"
EVENT_GAP = 0.4


class FakeUpstream:
    """An OpenAI-compatible server on a loopback port that records every request it receives."""

    def __init__(self):
        self.requests: list[dict] = []
        self.closed_early = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.requests.append(
                    {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                return body

            def _json(self, status, payload, extra=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._record()
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": "gemma-3-270m", "object": "model", "created": 1700000000, "owned_by": "llamacpp"},
                        {"id": "org/with-slash", "object": "model", "created": 1700000001, "owned_by": "llamacpp"},
                    ]})
                else:
                    self._json(200, {"path": self.path})

            def do_DELETE(self):
                self._record()
                self._json(200, {"deleted": True, "path": self.path})

            def do_POST(self):
                body = self._record()
                if self.path == "/v1/chat/completions":
                    request = json.loads(body)
                    if request.get("stream"):
                        self.send_response(200)
                        self.send_header("Content-Type", "text/event-stream")
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for index, word in enumerate(["Hello", " from", " upstream"]):
                            if index:
                                time.sleep(EVENT_GAP)
                            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": request["model"],
                                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                        self._chunk(b"data: [DONE]\n\n")
                        self._chunk(b"")
                        return
                    self._json(200, {
                        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": request["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    }, extra={"X-Upstream": "yes", "Connection": "keep-alive, X-Hop", "X-Hop": "drop me"})
                elif self.path == "/v1/slow":
                    # Waits for up to 10 s, watching whether the caller (Keysmith) closes the connection first.
                    deadline = time.time() + 10
                    while time.time() < deadline:
                        readable, _, _ = select.select([self.connection], [], [], 0.1)
                        if readable and not self.connection.recv(1, socket.MSG_PEEK):
                            upstream.closed_early.set()
                            return
                    self._json(200, {"late": True})
                elif self.path == "/v1/breaks":
                    # One event, then the connection closes without the chunked stream's end.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._chunk(b"data: {\"first\": true}\n\n")
                    self.wfile.flush()
                    time.sleep(0.2)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    self._json(200, {"path": self.path, "length": len(body)})

            def _chunk(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    upstream = FakeUpstream()
    server = Server(
        tmp_path_factory.mktemp("gateway"),
        args=["--upstream", upstream.url, "--upstream-response-timeout", "3", "--max-request-body-size", "100000"],
        env={"KEYSMITH_UPSTREAM_API_KEY": UPSTREAM_KEY},
    )
    admin = server.client().admin.organization
    project = admin.projects.create(name="gateway")
    account = admin.projects.service_accounts.create(project.id, name="app")
    yield server, upstream, project, account.api_key.value
    server.stop()
    upstream.stop()


def model_client(server, key):
    return openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=0)


def test_a_completion_reaches_the_upstream_with_its_own_key_and_the_identity_not_the_clients_key(gateway):
    server, upstream, project, key = gateway
    before = len(upstream.requests)
    completion = model_client(server, key).chat.completions.with_raw_response.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"X-Keysmith-Project-Id": "proj_forged", "Cookie": "keysmith_session=abc", "X-Request-Id": "req-from-client-1"},
    )
    assert completion.parse().choices[0].message.content == "Hi"
    assert completion.headers["x-upstream"] == "yes"
    # Hop-by-hop headers stay between the upstream and Keysmith, including those its Connection header names.
    assert "x-hop" not in completion.headers
    assert completion.headers["x-request-id"] == "req-from-client-1"
    seen = upstream.requests[before:]
    assert len(seen) == 1
    request = seen[0]
    assert request["method"] == "POST" and request["path"] == "/v1/chat/completions"
    assert json.loads(request["body"])["messages"] == [{"role": "user", "content": "Hi"}]
    headers = request["headers"]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key not in json.dumps(headers)
    assert headers["x-keysmith-project-id"] == project.id
    assert headers["x-keysmith-owner-type"] == "service_account"
    assert headers["x-request-id"] == "req-from-client-1"
    assert "cookie" not in headers and "accept-encoding" not in headers


def test_a_bad_key_is_refused_as_a_check_refuses_it_and_the_upstream_never_sees_it(gateway):
    server, upstream, _, _ = gateway
    before = len(upstream.requests)
    with pytest.raises(openai.AuthenticationError) as refused:
        model_client(server, "sk-proj-not-a-real-key").chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "invalid_api_key"
    status, _, body = server.request("POST", "/chat/completions", body={"model": "x"}, key=False)
    assert status == 401 and body["error"]["code"] is None and "You didn't provide an API key" in body["error"]["message"], body
    # An admin key is not a model key.
    status, _, body = server.request("POST", "/chat/completions", body={"model": "x"})
    assert status == 401 and "Admin keys cannot call the API" in body["error"]["message"], body
    assert len(upstream.requests) == before


def test_scopes_are_judged_on_the_real_request_with_no_header_to_forge(gateway):
    server, upstream, project, _ = gateway
    admin = server.client().admin.organization
    account = admin.projects.service_accounts.create(project.id, name="reader")
    admin.projects.api_keys.update(account.api_key.id, project_id=project.id, scopes=["api.model.read"])
    scoped_key = account.api_key.value
    before = len(upstream.requests)
    status, _, body = server.request(
        "POST", "/chat/completions", body={"model": "gemma-3-270m", "messages": []}, key=scoped_key,
        headers={"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/models"},
    )
    assert status == 403 and body["error"]["code"] == "missing_scope" and "api.model.request" in body["error"]["message"], body
    assert len(upstream.requests) == before
    models = model_client(server, scoped_key).models.list()
    assert [model.id for model in models.data] == ["gemma-3-270m", "org/with-slash"]


def test_a_stream_reaches_the_client_event_by_event_not_buffered(gateway):
    server, _, _, key = gateway
    arrivals = []
    stream = model_client(server, key).chat.completions.create(
        model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    words = []
    for chunk in stream:
        arrivals.append(time.monotonic())
        words.append(chunk.choices[0].delta.content)
    assert "".join(words) == "Hello from upstream"
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    # The upstream sleeps EVENT_GAP between events: each arrives when sent, none held back for the next.
    assert len(gaps) == 2 and all(gap > EVENT_GAP * 0.6 for gap in gaps), gaps


def test_the_model_list_is_the_upstreams_in_openais_shape(gateway):
    server, _, _, key = gateway
    client = model_client(server, key)
    listed = client.models.list()
    assert [(m.id, m.object, m.created, m.owned_by) for m in listed.data] == [
        ("gemma-3-270m", "model", 1700000000, "llamacpp"),
        ("org/with-slash", "model", 1700000001, "llamacpp"),
    ]
    assert client.models.retrieve("gemma-3-270m").created == 1700000000
    status, _, body = server.request("GET", "/models/org/with-slash", key=key)
    assert status == 200 and body["id"] == "org/with-slash", body
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


def test_keysmiths_own_paths_are_never_proxied(gateway):
    server, upstream, _, key = gateway
    before = len(upstream.requests)
    for path in ["/organization/no-such-thing", "/auth/other", "/keys/other"]:
        status, _, body = server.request("GET", path, key=key)
        assert status == 404 and body["error"]["code"] == "unknown_url", (path, body)
    # The admin API still answers as before.
    status, _, body = server.request("GET", "/organization/projects?limit=1")
    assert status == 200 and body["object"] == "list"
    assert len(upstream.requests) == before


def test_paths_an_upstream_could_resolve_elsewhere_are_refused(gateway):
    server, upstream, _, key = gateway
    before = len(upstream.requests)
    for target in ["/v1/files/../chat/completions", "/v1/chat%2Fcompletions", "/v1//chat/completions", "/v1/chat/./completions"]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", target, body=b"{}", headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        assert response.status == 400 and body["error"]["code"] == "invalid_path", (target, body)
    assert len(upstream.requests) == before


def test_other_methods_paths_and_queries_pass_through(gateway):
    server, upstream, _, key = gateway
    status, _, body = server.request("DELETE", "/files/file-123", key=key)
    assert status == 200 and body == {"deleted": True, "path": "/v1/files/file-123"}, body
    status, _, body = server.request("GET", "/files?purpose=batch&limit=2", key=key)
    assert status == 200 and body == {"path": "/v1/files?purpose=batch&limit=2"}, body


def test_a_body_past_the_limit_is_413_and_not_forwarded(gateway):
    server, upstream, _, key = gateway
    before = len(upstream.requests)
    status, _, body = server.request("POST", "/embeddings", body={"input": "x" * 200_000, "model": "m"}, key=key)
    assert status == 413 and body["error"]["code"] == "request_too_large", body
    status, _, body = server.request("POST", "/embeddings", body={"input": "x" * 1000, "model": "m"}, key=key)
    assert status == 200 and body["path"] == "/v1/embeddings", body
    assert len(upstream.requests) == before + 1


def test_an_upstream_that_does_not_answer_in_time_is_504(gateway):
    server, upstream, _, key = gateway
    started = time.monotonic()
    status, _, body = server.request("POST", "/slow", body={}, key=key)
    assert status == 504 and body["error"]["code"] == "upstream_timeout" and body["error"]["type"] == "server_error", body
    assert time.monotonic() - started < 8


def test_a_client_that_leaves_cancels_the_upstream_request(gateway):
    server, upstream, _, key = gateway
    upstream.closed_early.clear()
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(
        b"POST /v1/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    time.sleep(0.5)
    client.close()
    assert upstream.closed_early.wait(timeout=2.5), "the upstream request was not cancelled when the client left"


def test_an_upstream_that_breaks_mid_stream_ends_the_clients_stream_cleanly(gateway):
    server, _, _, key = gateway
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/v1/breaks", body=b"{}", headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    # What came, then the end of the chunked stream: no IncompleteRead.
    assert response.read() == b"data: {\"first\": true}\n\n"
    connection.close()
    status, _, metrics = server.request_root("GET", "/metrics")
    assert 'keysmith_gateway_requests_total{outcome="failed_mid_stream"} 1' in metrics
    assert 'keysmith_gateway_requests_total{outcome="timeout"} 1' in metrics


def test_an_upstream_that_cannot_be_reached_is_502(tmp_path):
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    server = Server(tmp_path, args=["--upstream", f"http://127.0.0.1:{port}/v1"])
    try:
        admin = server.client().admin.organization
        project = admin.projects.create(name="down")
        key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
        status, _, body = server.request("POST", "/chat/completions", body={"model": "m", "messages": []}, key=key)
        assert status == 502 and body["error"]["code"] == "upstream_unavailable", body
        status, _, body = server.request("GET", "/models", key=key)
        assert status == 502 and body["error"]["code"] == "upstream_unavailable", body
    finally:
        server.stop()


def test_without_upstream_nothing_is_proxied(server):
    admin = server.client().admin.organization
    project = admin.projects.create(name="no gateway")
    key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
    status, _, body = server.request("POST", "/chat/completions", body={"model": "m"}, key=key)
    assert status == 404 and body["error"]["code"] == "unknown_url", body


def test_a_bad_upstream_url_is_one_clear_error(tmp_path):
    from conftest import run_cli, assert_one_clear_line

    result = run_cli("serve", "--port", "0", "--database", f"sqlite:{tmp_path}/k.sqlite", "--upstream", "ftp://example/v1")
    assert_one_clear_line(result, "ftp://example/v1", "is not an upstream URL")
