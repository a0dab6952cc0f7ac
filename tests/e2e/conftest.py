"""Fixtures that run the real `keysmith` binary on loopback, each on a fresh database in a temporary folder."""

import hashlib
import json
import os
import resource
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from openai import OpenAI

KEYSMITH_BIN = os.environ.get("KEYSMITH_BIN", "")
# Which database the servers use: sqlite (a file in the test's folder), or postgres (a database of the test's own on
# the server KEYSMITH_TEST_POSTGRES_URL names). scripts/test runs the suites once with each.
ENGINE = os.environ.get("KEYSMITH_E2E_ENGINE", "sqlite")
POSTGRES_URL = os.environ.get("KEYSMITH_TEST_POSTGRES_URL", "")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite's files (backups, the file itself)")
    config.addinivalue_line("markers", "postgres_only: the test is about PostgreSQL (replicas, its outages)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ENGINE == "postgres" and "sqlite_only" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="SQLite only; this run is on PostgreSQL"))
        if ENGINE != "postgres" and "postgres_only" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only; this run is on SQLite"))


def postgres_server_url(database: str) -> str:
    """The test server's URL with `database` in place of its maintenance database."""
    base, _, query = POSTGRES_URL.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database + ("?" + query if query else "")


def psql(sql: str, database: str = "postgres") -> str:
    """Runs SQL with psql on the test server; returns its unaligned output."""
    url = postgres_server_url(database).partition("?")[0]
    result = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"psql: {result.stderr}")
    return result.stdout


def database_url(directory: Path) -> str:
    """The database a server started on `directory` uses: its SQLite file, or a PostgreSQL database named after the
    folder (created on first use), so that a restart on the same folder finds the same data."""
    if ENGINE == "postgres":
        name = "keysmith_e2e_" + hashlib.sha1(str(directory).encode()).hexdigest()[:16]
        if not psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            psql(f"CREATE DATABASE {name}")
        return postgres_server_url(name)
    return f"sqlite:{directory / 'keysmith.sqlite'}"


def keysmith_bin() -> str:
    if not KEYSMITH_BIN or not Path(KEYSMITH_BIN).exists():
        pytest.fail("KEYSMITH_BIN must name a built keysmith binary (scripts/test sets it)")
    return KEYSMITH_BIN


LISTENING = re.compile(r"Keysmith \S+ is listening on ([0-9.]+):(\d+)")
ADMIN_KEY = re.compile(r"sk-admin-[A-Za-z0-9]+")


class Server:
    """`keysmith serve --port 0` on a database in `directory`; stdout and stderr are kept in files."""

    def __init__(
        self,
        directory: Path,
        env: dict | None = None,
        args: list[str] | None = None,
        open_files: int | None = None,
        scheme: str = "http",
        database: str | None = None,
    ):
        self.directory = directory
        self.database = directory / "keysmith.sqlite"
        self.database_url = database or database_url(directory)
        self.stdout_path = directory / "stdout.log"
        self.stderr_path = directory / "stderr.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYSMITH_")}
        environment.update(env or {})
        def limit_open_files():
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.process = subprocess.Popen(
            [keysmith_bin(), "serve", "--port", "0", "--database", self.database_url, *(args or [])],
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            env=environment,
            preexec_fn=limit_open_files,
        )
        deadline = time.time() + 60
        while True:
            match = LISTENING.search(self.stderr())
            if match:
                self.port = int(match.group(2))
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"keysmith exited early: {self.stderr()}")
            if time.time() > deadline:
                self.process.kill()
                raise RuntimeError(f"keysmith did not start: {self.stderr()}")
            time.sleep(0.05)
        keys = ADMIN_KEY.findall(self.stdout())
        self.admin_key = keys[0] if keys else None
        self.base_url = f"{scheme}://127.0.0.1:{self.port}/v1"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, key: str | None = None, **options) -> OpenAI:
        return OpenAI(admin_api_key=key or self.admin_key, base_url=self.base_url, max_retries=0, **options)

    def request(self, method: str, path: str, body=None, key: str | None = None, headers: dict | None = None):
        """Plain HTTP, for Keysmith's extensions and the data plane. Returns (status, headers, parsed body or text)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if key is not False:
            request.add_header("Authorization", f"Bearer {key or self.admin_key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, response_headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, response_headers, raw = error.code, error.headers, error.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, response_headers, parsed

    def request_root(self, method: str, path: str, key: str | None = None, headers: dict | None = None):
        """Like `request`, for paths outside /v1 (such as /healthz)."""
        saved = self.base_url
        self.base_url = self.base_url.removesuffix("/v1")
        try:
            return self.request(method, path, key=key, headers=headers)
        finally:
            self.base_url = saved

    def stop(self, expect_clean_exit: bool = True) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                # What it was doing when it hung: the end of its log, in the failure itself (CI keeps nothing else).
                tail = "\n".join(self.stderr().splitlines()[-40:])
                pytest.fail(f"keysmith did not shut down within 30 s of SIGTERM; the end of its log:\n{tail}")
        if expect_clean_exit:
            assert self.process.returncode == 0, self.stderr()
        return self.process.returncode


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("keysmith"))
    yield running
    running.stop()


def run_cli(*args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYSMITH_")}
    environment.update(env or {})
    return subprocess.run([keysmith_bin(), *args], capture_output=True, text=True, env=environment, timeout=timeout)


def assert_one_clear_line(result, *fragments):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keysmith: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr
    assert "Fatal error" not in result.stderr and "Stack dump" not in result.stderr
