"""The gateway in front of a real inference server: llama-cpp-python's OpenAI-compatible server with Gemma 3 270M,
driven through Keysmith by the official SDK. scripts/test builds the server's venv (scripts/lib/model-server.sh) and
sets KEYSMITH_MODEL_SERVER_PYTHON and KEYSMITH_MODEL_PATH; run by hand without them, these tests are skipped."""

import os
import socket
import subprocess
import time
import urllib.request

import openai
import pytest

from conftest import Server

MODEL_PYTHON = os.environ.get("KEYSMITH_MODEL_SERVER_PYTHON", "")
MODEL_PATH = os.environ.get("KEYSMITH_MODEL_PATH", "")
MODEL = "gemma-3-270m"

pytestmark = pytest.mark.skipif(
    not (MODEL_PYTHON and MODEL_PATH), reason="no model server: scripts/test sets KEYSMITH_MODEL_SERVER_PYTHON and KEYSMITH_MODEL_PATH"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("model") / "server.log", "wb")
    process = subprocess.Popen(
        [MODEL_PYTHON, "-m", "llama_cpp.server", "--model", MODEL_PATH, "--model_alias", MODEL, "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--embedding", "true", "--api_key", "upstream-only-key"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            request = urllib.request.Request(url + "/models", headers={"Authorization": "Bearer upstream-only-key"})
            urllib.request.urlopen(request, timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"the model server did not start: {open(log.name).read()[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def gateway(model_server, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("gateway"), args=["--upstream", model_server],
                    env={"KEYSMITH_UPSTREAM_API_KEY": "upstream-only-key"})
    yield server
    server.stop()


def test_the_sdk_reaches_the_model_through_keysmith_and_its_usage_is_recorded_as_reported(gateway):
    admin = gateway.client().admin.organization
    project = admin.projects.create(name="real model")
    account = admin.projects.service_accounts.create(project.id, name="app")
    client = openai.OpenAI(api_key=account.api_key.value, base_url=gateway.base_url, max_retries=0)
    started = int(time.time())

    assert MODEL in [model.id for model in client.models.list().data]
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12)
    assert chat.model == MODEL and chat.usage.prompt_tokens > 0
    completion = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8)
    assert completion.choices[0].text and completion.usage.completion_tokens > 0
    # A stream: llama-cpp-python ignores stream_options.include_usage, so this request's tokens are unknown.
    pieces = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to three."}],
                                                 max_tokens=12, stream=True))
    assert pieces and pieces[-1].choices[0].finish_reason in ("stop", "length")
    embedding = client.embeddings.create(model=MODEL, input="hello")
    assert embedding.data and embedding.usage.prompt_tokens > 0

    deadline = time.time() + 20
    while True:
        page = admin.usage.completions(start_time=started - 60, project_ids=[project.id], group_by=["model", "api_key_id"])
        results = [result for bucket in page.data for result in bucket.results]
        if results or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(results) == 1, page
    [recorded] = results
    assert (recorded.model, recorded.api_key_id) == (MODEL, account.api_key.id)
    assert recorded.num_model_requests == 3
    assert recorded.model_extra["num_model_requests_without_usage"] == 1
    assert recorded.input_tokens == chat.usage.prompt_tokens + completion.usage.prompt_tokens
    assert recorded.output_tokens == chat.usage.completion_tokens + completion.usage.completion_tokens
    embeddings = admin.usage.embeddings(start_time=started - 60, project_ids=[project.id])
    [embedded] = [result for bucket in embeddings.data for result in bucket.results]
    assert (embedded.num_model_requests, embedded.input_tokens) == (1, embedding.usage.prompt_tokens)


def test_a_revoked_key_is_refused_on_the_next_request_and_a_scoped_key_on_a_route_it_lacks(gateway):
    admin = gateway.client().admin.organization
    project = admin.projects.create(name="real model, refusals")
    account = admin.projects.service_accounts.create(project.id, name="app")
    client = openai.OpenAI(api_key=account.api_key.value, base_url=gateway.base_url, max_retries=0)
    assert client.completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices

    reader = admin.projects.service_accounts.create(project.id, name="reader")
    admin.projects.api_keys.update(reader.api_key.id, project_id=project.id, scopes=["api.model.read"])
    scoped = openai.OpenAI(api_key=reader.api_key.value, base_url=gateway.base_url, max_retries=0)
    assert MODEL in [model.id for model in scoped.models.list().data]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        scoped.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert refused.value.code == "missing_scope"

    admin.projects.service_accounts.delete(account.id, project_id=project.id)
    with pytest.raises(openai.AuthenticationError) as revoked:
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert revoked.value.code == "invalid_api_key"
