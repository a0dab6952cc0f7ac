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

    def __init__(self, models: list[str] | None = None):
        self.requests: list[dict] = []
        self.models = models or ["gemma-3-270m", "org/with-slash"]
        self.closed_early = threading.Event()
        self.huge_sent = 0
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
                        {"id": model, "object": "model", "created": 1700000000 + index, "owned_by": "llamacpp"}
                        for index, model in enumerate(upstream.models)
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
                        if (request.get("stream_options") or {}).get("include_usage"):
                            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": request["model"],
                                     "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
                            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                        self._chunk(b"data: [DONE]\n\n")
                        self._chunk(b"")
                        return
                    self._json(200, {
                        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": request["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "prompt_tokens_details": {"cached_tokens": 2}},
                    }, extra={"X-Upstream": "yes", "Connection": "keep-alive, X-Hop", "X-Hop": "drop me"})
                elif self.path == "/v1/embeddings":
                    self._json(200, {"object": "list", "path": self.path, "model": "embedder",
                                     "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                                     "usage": {"prompt_tokens": 4, "total_tokens": 4}})
                elif self.path == "/v1/completions":
                    # An answer that reports no usage.
                    self._json(200, {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gemma-3-270m",
                                     "choices": [{"index": 0, "text": "Hi", "finish_reason": "stop"}]})
                elif self.path == "/v1/audio/transcriptions":
                    self._json(200, {"text": "heard", "content_type": self.headers.get("Content-Type"), "length": len(body),
                                     "has_file": b"RIFF-fake-audio" in body})
                elif self.path == "/v1/fails":
                    self._json(500, {"error": {"message": "model crashed", "type": "server_error", "param": None, "code": None}})
                elif self.path == "/v1/huge":
                    # 256 MiB as fast as the socket takes it.
                    size = 256 * 1024 * 1024
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    block = b"x" * (1024 * 1024)
                    try:
                        for _ in range(size // len(block)):
                            self.wfile.write(block)
                            upstream.huge_sent += len(block)
                    except OSError:
                        pass
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


def test_client_connections_are_kept_alive_across_proxied_requests(gateway):
    server, _, _, key = gateway
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):
        connection.request("POST", "/v1/chat/completions", body=json.dumps({"model": "m", "messages": []}),
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["object"] == "chat.completion"
    connection.close()


def test_multipart_bodies_pass_through(gateway):
    server, upstream, _, key = gateway
    transcription = model_client(server, key).audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF-fake-audio" * 100))
    assert transcription.text == "heard"
    request = upstream.requests[-1]
    assert request["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert b"RIFF-fake-audio" in request["body"] and b'name="model"' in request["body"]


def test_an_upstreams_own_error_reaches_the_client_as_it_sent_it(gateway):
    server, _, _, key = gateway
    status, _, body = server.request("POST", "/fails", body={}, key=key)
    assert status == 500 and body["error"]["message"] == "model crashed", body


def test_a_client_that_stops_reading_slows_the_upstream_instead_of_growing_memory(gateway):
    server, upstream, _, key = gateway
    rss = lambda: int(next(l for l in open(f"/proc/{server.process.pid}/status") if l.startswith("VmRSS:")).split()[1]) // 1024
    before = rss()
    upstream.huge_sent = 0
    client = socket.create_connection(("127.0.0.1", server.port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.sendall(b"POST /v1/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() + b"\r\nContent-Length: 0\r\n\r\n")
    time.sleep(3)
    # The client has read nothing: the upstream got only as far as the buffers between them take.
    stalled_at = upstream.huge_sent
    grown = rss() - before
    client.close()
    assert stalled_at < 64 * 1024 * 1024, stalled_at
    assert grown < 64, f"Keysmith grew {grown} MiB while its client read nothing"


def test_many_concurrent_streams_each_arrive_whole(gateway):
    server, _, _, key = gateway
    from concurrent.futures import ThreadPoolExecutor

    def stream(_):
        client = model_client(server, key)
        pieces = client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in pieces)

    with ThreadPoolExecutor(max_workers=50) as pool:
        assert list(pool.map(stream, range(50))) == ["Hello from upstream"] * 50


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


def test_each_requests_usage_is_recorded_and_served_by_the_usage_api(tmp_path):
    upstream = FakeUpstream()
    server = Server(tmp_path, args=["--upstream", upstream.url])
    restarted = None
    try:
        admin = server.client()
        project = admin.admin.organization.projects.create(name="metered")
        account = admin.admin.organization.projects.service_accounts.create(project.id, name="app")
        key, key_id = account.api_key.value, account.api_key.id
        client = model_client(server, key)
        started = int(time.time())
        client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}])
        # A stream that did not ask for usage: Keysmith asks for it and leaves its chunk out of what the client gets.
        chunks = list(client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], stream=True))
        assert all(chunk.usage is None and chunk.choices for chunk in chunks), chunks
        # One that asked gets it.
        chunks = list(client.chat.completions.create(
            model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}], stream=True, stream_options={"include_usage": True}
        ))
        assert chunks[-1].usage.prompt_tokens == 7 and chunks[-1].choices == []
        # An answer without usage: a request whose tokens are unknown, not zero.
        client.completions.create(model="gemma-3-270m", prompt="Hi")
        client.embeddings.create(model="embedder", input="Hi")
        upstream_requests = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
        assert json.loads(upstream_requests[1]["body"])["stream_options"] == {"include_usage": True}

        # Written in batches (every 10 s), not per request.
        usage_api = admin.admin.organization.usage
        deadline = time.time() + 20
        while True:
            page = usage_api.completions(start_time=started - 60, bucket_width="1d", group_by=["api_key_id", "model", "project_id", "user_id"])
            results = [result for bucket in page.data for result in bucket.results]
            if results or time.time() > deadline:
                break
            time.sleep(0.5)
        assert len(results) == 1, page
        result = results[0]
        assert result.object == "organization.usage.completions.result"
        assert (result.api_key_id, result.model, result.project_id, result.user_id) == (key_id, "gemma-3-270m", project.id, account.id)
        assert result.num_model_requests == 4
        assert result.input_tokens == 5 + 7 + 7 and result.output_tokens == 1 + 3 + 3 and result.input_cached_tokens == 2
        assert result.model_extra["num_model_requests_without_usage"] == 1
        embeddings = usage_api.embeddings(start_time=started - 60, group_by=["model"])
        [embedded] = [result for bucket in embeddings.data for result in bucket.results]
        assert (embedded.object, embedded.model, embedded.input_tokens, embedded.num_model_requests) == (
            "organization.usage.embeddings.result", "embedder", 4, 1)

        # Minute buckets from the start, paged; filters that match nothing give empty buckets.
        minutes = usage_api.completions(start_time=started - 120, end_time=started + 3600, bucket_width="1m", limit=3)
        assert [b.end_time - b.start_time for b in minutes.data] == [60, 60, 60] and minutes.has_more
        assert minutes.data[0].start_time == started - 120 and minutes.next_page
        following = usage_api.completions(start_time=started - 120, end_time=started + 3600, bucket_width="1m", limit=3, page=minutes.next_page)
        assert following.data[0].start_time == started + 60
        none = usage_api.completions(start_time=started - 60, project_ids=["proj_other"])
        assert all(bucket.results == [] for bucket in none.data)

        # Bad parameters are the API's 400s, naming them.
        for params, param in [({}, "start_time"), ({"start_time": started, "bucket_width": "2h"}, "bucket_width"),
                              ({"start_time": started, "limit": 32}, "limit"), ({"start_time": started, "group_by": "colour"}, "group_by"),
                              ({"start_time": started, "end_time": started}, "end_time"), ({"start_time": started, "page": "nope"}, "page")]:
            query = "&".join(f"{name}={value}" for name, value in params.items())
            status, _, body = server.request("GET", f"/organization/usage/completions?{query}")
            assert status == 400 and body["error"]["param"] == param, (params, body)

        # The last request before a shutdown is written by the shutdown's flush.
        client.embeddings.create(model="embedder", input="Hi")
        server.stop()
        first_log = "\n".join(line for line in server.stderr().splitlines() if " request " not in line)
        restarted = Server(tmp_path, args=["--upstream", upstream.url])
        embeddings = restarted.client(key=server.admin_key).admin.organization.usage.embeddings(start_time=started - 60)
        [total] = [result for bucket in embeddings.data for result in bucket.results]
        assert total.num_model_requests == 2 and total.input_tokens == 8, first_log
    finally:
        (restarted or server).stop()
        upstream.stop()


def test_several_upstreams_are_routed_by_model_each_with_its_own_credential(tmp_path):
    vllm = FakeUpstream(models=["llama-3-8b", "shared"])
    ollama = FakeUpstream(models=["qwen-2", "shared", "llama-3-70b"])
    config = tmp_path / "upstreams.json"
    config.write_text(json.dumps({"upstreams": [
        {"name": "vllm", "base_url": vllm.url, "models": ["llama-3*"], "api_key_env": "VLLM_KEY", "response_timeout": 30},
        {"name": "ollama", "base_url": ollama.url, "models": ["qwen*", "shared"]},
    ]}))
    server = Server(tmp_path, args=["--upstreams-file", str(config)], env={"VLLM_KEY": "vllm-secret"})
    try:
        admin = server.client().admin.organization
        project = admin.projects.create(name="routed")
        key = admin.projects.service_accounts.create(project.id, name="app").api_key.value
        client = model_client(server, key)
        for model, upstream, other in [("llama-3-8b", vllm, ollama), ("qwen-2", ollama, vllm), ("shared", ollama, vllm)]:
            before = (len(upstream.requests), len(other.requests))
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
            assert (len(upstream.requests), len(other.requests)) == (before[0] + 1, before[1]), model
        assert vllm.requests[-1]["headers"]["authorization"] == "Bearer vllm-secret"
        assert "authorization" not in ollama.requests[-1]["headers"]
        before = (len(vllm.requests), len(ollama.requests))
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="mistral-7b", messages=[{"role": "user", "content": "Hi"}])
        assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
        assert (len(vllm.requests), len(ollama.requests)) == before
        # A request that names no model goes to the first upstream.
        status, _, body = server.request("GET", "/files", key=key)
        assert status == 200 and vllm.requests[-1]["path"] == "/v1/files", body
        # The model list: each model once, from the upstream its requests go to.
        assert [model.id for model in client.models.list().data] == ["llama-3-8b", "qwen-2", "shared"]
    finally:
        server.stop()
        vllm.stop()
        ollama.stop()


def test_an_upstreams_file_that_cannot_be_used_is_one_clear_error(tmp_path):
    from conftest import run_cli, assert_one_clear_line

    config = tmp_path / "upstreams.json"
    config.write_text(json.dumps({"upstreams": [{"base_url": "http://127.0.0.1:1/v1", "models": ["x"], "api_key_env": "NOT_SET_ANYWHERE"}]}))
    result = run_cli("serve", "--port", "0", "--database", f"sqlite:{tmp_path}/k.sqlite", "--upstreams-file", str(config))
    assert_one_clear_line(result, str(config), "NOT_SET_ANYWHERE", "is not set")
    config.write_text(json.dumps({"upstreams": [{"base_url": "http://127.0.0.1:1/v1", "modles": ["x"]}]}))
    result = run_cli("serve", "--port", "0", "--database", f"sqlite:{tmp_path}/k.sqlite", "--upstreams-file", str(config))
    assert_one_clear_line(result, "unknown field 'modles'")
