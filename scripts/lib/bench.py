"""Keysmith's benchmarks: seed a real release server over HTTP, then measure it with wrk beside GET /healthz."""

import argparse
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

LISTENING = re.compile(r"Keysmith \S+ is listening on ([0-9.]+):(\d+)")
ADMIN_KEY = re.compile(r"sk-admin-[A-Za-z0-9]+")


class Server:
    def __init__(
        self,
        binary: str,
        directory: Path,
        database: str | None = None,
        admin_key: str | None = None,
        settings: dict[str, str] | None = None,
    ):
        """`database` is a database URL (default: a new SQLite file in `directory`); `settings` are extra KEYSMITH_
        environment variables."""
        self.binary = binary
        directory.mkdir(parents=True, exist_ok=True)
        self.stderr_path = directory / "stderr.log"
        self.stdout_path = directory / "stdout.log"
        self.database = database or f"sqlite:{directory / 'bench.sqlite'}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYSMITH_")}
        environment["KEYSMITH_LOG_LEVEL"] = "warning"
        environment.update(settings or {})
        started = time.time()
        self.process = subprocess.Popen(
            [binary, "serve", "--port", "0", "--database", self.database],
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            env=environment,
        )
        deadline = time.time() + 600
        # The listening line is an info log; at warning level find the port from the kernel instead.
        while True:
            self.port = self._listening_port()
            if self.port:
                break
            if self.process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"keysmith did not start: {self.stderr_path.read_text()}")
            time.sleep(0.02)
        self.startup_seconds = time.time() - started
        self.admin_key = admin_key or ADMIN_KEY.search(self.stdout_path.read_text()).group(0)

    def rss_mb(self) -> float:
        """Resident memory now, in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def metric(self, name: str) -> float:
        """One sample of /metrics, by its full name with labels."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {self.admin_key}"})
        text = connection.getresponse().read().decode()
        connection.close()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise SystemExit(f"{name} is not in /metrics")

    def statement_totals(self) -> tuple[float, float]:
        """Database statements run so far, and the seconds spent in them."""
        name = DatabaseTime.STATEMENTS
        return self.metric(f"{name}_count"), self.metric(f"{name}_sum")

    def _listening_port(self):
        try:
            output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        except FileNotFoundError:
            output = ""
        for line in output.splitlines():
            if f"pid={self.process.pid}," in line:
                return int(line.split()[3].rsplit(":", 1)[1])
        match = LISTENING.search(self.stderr_path.read_text())
        return int(match.group(2)) if match else None

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def new_postgres_database() -> str:
    """A new, empty database on the cluster scripts/bench started (KEYSMITH_TEST_POSTGRES_URL); its URL."""
    base = os.environ.get("KEYSMITH_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("no PostgreSQL cluster: run the benchmark through scripts/bench, which starts one")
    name = f"keysmith_bench_{secrets.token_hex(6)}"
    subprocess.run(["psql", "-X", "-q", "-d", base, "-c", f"CREATE DATABASE {name}"], check=True)
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


ENGINES = ("sqlite", "sqlite-normal", "postgres")


def start_servers(args, directory: Path) -> dict[str, Server]:
    """One server per engine in --database, each on a database of its own: `sqlite` (synchronous FULL, the default),
    `sqlite-normal` (the URL's ?synchronous=normal), `postgres`."""
    servers = {}
    for engine in args.database.split(","):
        if engine not in ENGINES:
            raise SystemExit(f"--database: {engine} is not one of {', '.join(ENGINES)}")
        if engine == "postgres":
            database = new_postgres_database()
        elif engine == "sqlite-normal":
            database = f"sqlite:{directory / engine / 'bench.sqlite'}?synchronous=normal"
        else:
            database = None
        servers[engine] = Server(args.bin, directory / engine, database=database)
    return servers


class Labels:
    """Scenario names: as they are with one engine, prefixed with the engine's name when several run side by side."""

    def __init__(self, engines):
        self.engines = list(engines)

    def __call__(self, engine: str, name: str) -> str:
        return name if len(self.engines) == 1 else f"{engine}: {name}"


class DatabaseTime:
    """Statements and time in them, as the server's /metrics counts them, during each measured run: how much of a
    request is the database's round trips. An `around` for measure()."""

    STATEMENTS = "keysmith_database_statement_duration_seconds"

    def __init__(self, server_for):
        self.server_for = server_for  # scenario name -> Server
        self.runs: dict[str, list[tuple[float, float, float, float]]] = {}  # statements, seconds in them, CPU

    def __call__(self, name):
        tracker = self

        class Around:
            def __enter__(self):
                self.server = tracker.server_for(name)
                self.before = (*self.server.statement_totals(), cpu_seconds(self.server.process.pid), postgres_cpu_seconds())

            def __exit__(self, *exc):
                after = (*self.server.statement_totals(), cpu_seconds(self.server.process.pid), postgres_cpu_seconds())
                tracker.runs.setdefault(name, []).append(tuple(a - b for a, b in zip(after, self.before)))

        return Around()

    def per_request(self, name: str, result: dict, duration: int, connections: int) -> dict:
        """Statements and database time per request (medians of the rounds), and that time's share of a request's
        mean latency (connections / throughput, by Little's law)."""
        requests = result["rps"] * duration
        statements = statistics.median(run[0] for run in self.runs[name]) / requests
        seconds = statistics.median(run[1] for run in self.runs[name]) / requests
        latency = connections / result["rps"]
        keysmith_cpu = statistics.median(run[2] for run in self.runs[name]) / requests
        postgres_cpu = statistics.median(run[3] for run in self.runs[name]) / requests
        return {
            "statements": statements,
            "ms": seconds * 1e3,
            "share": seconds / latency,
            "keysmith_cpu_us": keysmith_cpu * 1e6,
            "postgres_cpu_us": postgres_cpu * 1e6,
        }


class Client:
    """A keep-alive HTTP/1.1 connection for seeding."""

    def __init__(self, port: int, key: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None):
        self.connection.request(method, "/v1" + path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path} -> {response.status} {data[:300]!r}")
        return json.loads(data)


def in_workers(total: int, work, workers: int = 8) -> float:
    """Runs `work(worker_index, count)` on `workers` threads that share `total` items; returns the seconds taken."""
    started = time.time()
    threads = [
        threading.Thread(target=work, args=(i, total // workers + (1 if i < total % workers else 0))) for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.time() - started


def seed_keys(server: Server, keys: int) -> dict:
    """One project, 10 members, `keys` user keys created through the API, 8 connections at a time.
    Returns the project, the key ids in creation order, and the plaintexts (which only the seeder ever sees)."""
    client = Client(server.port, server.admin_key)
    project = client.call("POST", "/organization/projects", {"name": "bench"})["id"]
    members = []
    for index in range(10):
        user = client.call("POST", "/organization/users", {"email": f"bench{index}@example.com", "name": f"Bench {index}"})
        client.call("POST", f"/organization/projects/{project}/users", {"user_id": user["id"], "role": "member"})
        members.append(user["id"])

    pairs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def worker(worker_index: int, count: int):
        connection = Client(server.port, server.admin_key)
        made = []
        for index in range(count):
            body = {"name": f"bench key {worker_index}-{index}", "user_id": members[index % len(members)]}
            created = connection.call("POST", f"/organization/projects/{project}/api_keys", body)
            made.append((created["id"], created["value"]))
        with lock:
            pairs.extend(made)

    elapsed = in_workers(keys, worker)
    pairs.sort()  # ids sort in creation order
    print(f"==> seeded {len(pairs):,} keys through the API in {elapsed:.1f} s ({len(pairs) / elapsed:,.0f} keys/s)", flush=True)
    return {"project": project, "ids": [p[0] for p in pairs], "values": [p[1] for p in pairs]}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url: str, headers: dict, duration: int, connections: int, script: str | None = None, allow_errors: bool = False) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    script_args = []
    if script:
        script_path, *script_args = script.split(" ")
        command += ["-s", script_path]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output and not allow_errors:
        raise SystemExit(f"wrk saw error responses for {url}:\n{output}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1)), "output": output}
    for percentile in ("50", "99"):
        result[f"p{percentile}"] = parse_latency(re.search(rf"\s{percentile}%\s+(\S+)", output).group(1))
    return result


def measure(
    scenarios: list[tuple[str, str, dict, str | None]],
    port: int,
    duration: int,
    connections: int,
    rounds: int,
    expect_status: set[str] = frozenset(),
    around=None,
) -> dict:
    """Runs the scenarios in interleaved rounds (each after a 2 s warm-up) and reports, per scenario, the median of
    each figure over the rounds: a burst of noise from other work on the machine then hits every scenario alike
    and moves no median far. Scenarios named in `expect_status` may answer with errors (401s)."""
    runs: dict[str, list[dict]] = {name: [] for name, *_ in scenarios}
    for round_index in range(rounds):
        for name, path, headers, script in scenarios:
            url = path if path.startswith("http") else f"http://127.0.0.1:{port}{path}"
            allow = name in expect_status
            wrk(url, headers, 2, connections, script, allow)  # warm-up
            if around:
                with around(name):
                    result = wrk(url, headers, duration, connections, script, allow)
            else:
                result = wrk(url, headers, duration, connections, script, allow)
            runs[name].append(result)
            print(
                f"    round {round_index + 1}: {name:<36} {result['rps']:>10,.0f} req/s   "
                f"p50 {result['p50']:7.3f} ms   p99 {result['p99']:7.3f} ms",
                flush=True,
            )
    return {
        name: {metric: statistics.median(result[metric] for result in results) for metric in ("rps", "p50", "p99")}
        | {"rounds": [result["rps"] for result in results], "p50_rounds": [result["p50"] for result in results]}
        for name, results in runs.items()
    }


def paired_ratio(results: dict, name: str, baseline: str) -> float:
    """The median over the rounds of one scenario's throughput over another's in the same round: the two ran
    seconds apart, so the noise that moves whole rounds cancels out."""
    return statistics.median(a / b for a, b in zip(results[name]["rounds"], results[baseline]["rounds"]))


def table(results: dict, baseline: str) -> str:
    lines = [
        f"| scenario | requests/s | p50 (ms) | p99 (ms) | throughput vs {baseline} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = r["rps"] / results[baseline]["rps"]
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {ratio:.0%} |")
    return "\n".join(lines)


def key_count(server: Server) -> int:
    """How many project keys the server's database holds."""
    if server.database.startswith("postgres"):
        output = subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-d", server.database, "-c", "SELECT count(*) FROM api_keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return int(output.strip())
    import sqlite3

    path = server.database.removeprefix("sqlite:").split("?")[0]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT count(*) FROM api_keys").fetchone()[0]


def analyze(server: Server):
    """PostgreSQL plans from the statistics autovacuum gathers, within a minute of a table's growth by default; a
    benchmark that measures seconds after seeding 100,000 keys would measure the plans for the empty tables it
    started with. ANALYZE now, as autovacuum would shortly."""
    if server.database.startswith("postgres"):
        subprocess.run(["psql", "-X", "-q", "-d", server.database, "-c", "ANALYZE"], check=True)


def seeded_servers(servers: dict[str, Server], seed):
    """Seeds each server with `seed(server)` and ANALYZEs it; returns the labels, what each seeding returned, the
    server whose /healthz is the baseline, and the scenario list starting with that baseline."""
    seeded = {engine: seed(server) for engine, server in servers.items()}
    for server in servers.values():
        analyze(server)
    first_server = next(iter(servers.values()))
    scenarios = [("GET /healthz", f"http://127.0.0.1:{first_server.port}/healthz", {}, None)]
    return Labels(servers), seeded, first_server, scenarios


def run_list(args, servers: dict[str, Server]) -> bool:
    label, seeded, first_server, scenarios = seeded_servers(servers, lambda server: seed_keys(server, args.keys))
    owners = {}
    for engine, server in servers.items():
        project, ids = seeded[engine]["project"], seeded[engine]["ids"]
        deep = ids[min(len(ids) - 1, int(len(ids) * 0.9) - 1)]
        auth = {"Authorization": f"Bearer {server.admin_key}"}
        base = f"http://127.0.0.1:{server.port}/v1/organization/projects/{project}/api_keys"
        for limit in (20, 100):
            for page, query in (("first page", ""), ("deep page", f"&after={deep}")):
                name = label(engine, f"list limit={limit}, {page}")
                scenarios.append((name, f"{base}?limit={limit}{query}", auth, None))
                owners[name] = server
    print(
        f"==> wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds (medians of each figure reported); "
        f"deep page after key #{int(args.keys * 0.9):,}"
    )
    database_time = DatabaseTime(lambda name: owners.get(name, first_server))
    results = measure(scenarios, first_server.port, args.duration, args.connections, args.rounds, around=database_time)
    print()
    print(table(results, "GET /healthz"))
    print()
    print("The database's share: statements and the time in them per request, as the server times them (waiting for a")
    print("connection included), against a request's mean latency (connections / throughput):")
    print()
    print(
        "| scenario | statements per request | database time per request | share of the request's latency "
        "| Keysmith CPU per request | PostgreSQL CPU per request |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in owners:
        figures = database_time.per_request(name, results[name], args.duration, args.connections)
        postgres_cpu = f"{figures['postgres_cpu_us']:.0f} µs" if "postgres" in name or args.database == "postgres" else "–"
        print(
            f"| {name} | {figures['statements']:.1f} | {figures['ms']:.3f} ms | {figures['share']:.0%} "
            f"| {figures['keysmith_cpu_us']:.0f} µs | {postgres_cpu} |"
        )
    print()
    health = results["GET /healthz"]
    checks = []
    for engine in servers:
        for limit in (20, 100):
            first, deep_page = results[label(engine, f"list limit={limit}, first page")], results[label(engine, f"list limit={limit}, deep page")]
            ratio = deep_page["p50"] / first["p50"]
            checks.append((f"{engine}, limit={limit}: deep page p50 / first page p50 = {ratio:.2f} (target <= 1.25)", ratio <= 1.25))
        for page in ("first page", "deep page"):
            share = results[label(engine, f"list limit=20, {page}")]["rps"] / health["rps"]
            if engine == "sqlite":
                checks.append((f"sqlite, limit=20 {page} throughput / /healthz = {share:.0%} (target >= 20%)", share >= 0.20))
            else:
                print(f"        {engine}, limit=20 {page} throughput / /healthz = {share:.0%} (reported; the target is SQLite's)")
    if "sqlite" in servers and "postgres" in servers:
        for page in ("first page", "deep page"):
            ratio = paired_ratio(results, label("postgres", f"list limit=20, {page}"), label("sqlite", f"list limit=20, {page}"))
            print(f"        postgres / sqlite, limit=20 {page}: {ratio:.0%} of SQLite's throughput (reported)")
    return judge(checks)


def seed_events(server: Server, events: int) -> dict:
    """`events` audit events made through the API, 8 connections at a time: renames of 50 projects
    (`project.updated`, about 90%) and new users (`user.added`, about 10%). Returns the projects."""
    client = Client(server.port, server.admin_key)
    projects = [client.call("POST", "/organization/projects", {"name": f"audited {index}"})["id"] for index in range(50)]

    def worker(worker_index: int, count: int):
        connection = Client(server.port, server.admin_key)
        for index in range(count):
            if index % 10 == 9:
                connection.call("POST", "/organization/users", {"email": f"audit{worker_index}-{index}@example.com"})
            else:
                project = projects[(worker_index * 7 + index) % len(projects)]
                connection.call("POST", f"/organization/projects/{project}", {"name": f"renamed {worker_index}-{index}"})

    elapsed = in_workers(events - len(projects) - 1, worker)
    print(f"==> {events:,} audit events made through the API in {elapsed:.1f} s", flush=True)
    return {"projects": projects}


def run_audit(args, servers: dict[str, Server]) -> bool:
    """The audit log: newest page and a page 90% down, unfiltered and filtered (by event type: about 10% of events;
    by project: about 2%; by time: a range holding none of the log and one holding all of it). A page filtered by
    type or project must cost at most 1.25x the unfiltered page at the same depth (keyset paging on indexes); one
    filtered by time at most 2x, whatever the range (one more statement, the probe of the time index; before that
    index, a range holding none of the newest events walked the whole log)."""
    label, seeded, first_server, scenarios = seeded_servers(servers, lambda server: seed_events(server, args.events))
    owners = {}
    for engine, server in servers.items():
        auth = {"Authorization": f"Bearer {server.admin_key}"}
        base = f"http://127.0.0.1:{server.port}/v1/organization/audit_logs?limit=20"
        client = Client(server.port, server.admin_key)
        project = seeded[engine]["projects"][0]
        newest = client.call("GET", "/organization/audit_logs?limit=1")["data"][0]["effective_at"]
        filters = {
            "unfiltered": "",
            "event_types[]=user.added": "&event_types[]=user.added",
            "project_ids[]=one of 50": f"&project_ids[]={project}",
            # A range holding none of the log (a narrow one, read through the time index), and one holding all of it
            # (a wide one, read by walking the log).
            "effective_at[gt]=the future": f"&effective_at[gt]={newest + 3600}",
            "effective_at[gt]=before all": "&effective_at[gt]=0",
        }
        for name, query in filters.items():
            # The cursor 90% down this filter's own list.
            ids, after = [], None
            while True:
                page = client.call("GET", f"/organization/audit_logs?limit=100{query}" + (f"&after={after}" if after else ""))
                ids.extend(item["id"] for item in page["data"])
                if not page["has_more"]:
                    break
                after = page["last_id"]
            pages = [("newest page", "")] + ([("page 90% down", f"&after={ids[int(len(ids) * 0.9)]}")] if ids else [])
            for page_name, extra in pages:
                scenario = label(engine, f"audit logs, {name}, {page_name}")
                scenarios.append((scenario, base + query + extra, auth, None))
                owners[scenario] = server
            print(f"==> [{engine}] {name}: {len(ids):,} events")
    print(f"==> wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds (medians)")
    database_time = DatabaseTime(lambda name: owners.get(name, first_server))
    results = measure(scenarios, first_server.port, args.duration, args.connections, args.rounds, around=database_time)
    print()
    print(table(results, "GET /healthz"))
    print()
    checks = []
    for engine in servers:
        for page_name in ("newest page", "page 90% down"):
            unfiltered = results[label(engine, f"audit logs, unfiltered, {page_name}")]["p50_rounds"]
            for name in ("event_types[]=user.added", "project_ids[]=one of 50", "effective_at[gt]=the future", "effective_at[gt]=before all"):
                if label(engine, f"audit logs, {name}, {page_name}") not in results:
                    continue
                filtered = results[label(engine, f"audit logs, {name}, {page_name}")]["p50_rounds"]
                # Median over the rounds of the two pages' p50s in the same round: noise moves whole rounds.
                ratio = statistics.median(a / b for a, b in zip(filtered, unfiltered))
                target = 2.0 if name.startswith("effective_at") else 1.25
                checks.append(
                    (
                        f"{engine}: {name}, {page_name}: p50 {ratio:.2f}x the unfiltered {page_name}'s (target <= {target}x)",
                        ratio <= target,
                    )
                )
        deep = statistics.median(
            a / b
            for a, b in zip(
                results[label(engine, "audit logs, unfiltered, page 90% down")]["p50_rounds"],
                results[label(engine, "audit logs, unfiltered, newest page")]["p50_rounds"],
            )
        )
        print(f"        {engine}: unfiltered page 90% down: p50 {deep:.2f}x the newest page's (reported)")
    return judge(checks)


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def well_formed_unknown_key() -> str:
    """A key with Keysmith's format and a valid checksum that was never issued: it passes the checksum, unlike a
    malformed key, so it reaches the lookup."""
    body = "sk-proj-" + "".join(secrets.choice(BASE62) for _ in range(43))
    checksum = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        checksum, digit = divmod(checksum, 62)
        digits = BASE62[digit] + digits
    return body + digits


LUA_CYCLE = """
local keys = {}
local next_key = 0
init = function(args)
  for line in io.lines(args[1]) do keys[#keys + 1] = line end
end
request = function()
  next_key = next_key % #keys + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. keys[next_key]})
end
"""

# Sends each key of the file once, then stops; counts 5xx answers. wrk's main thread sleeps out the duration even
# when its one thread has stopped, so the script marks when it sent its first request and had its last answer (files
# beside args[2]), and wrk_once() times the run from those and then interrupts wrk.
LUA_ONCE = """
local keys = {}
local sent = 0
local marker
answered = 0
server_errors = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  for line in io.lines(args[1]) do keys[#keys + 1] = line end
  marker = args[2]
end
request = function()
  if sent == 0 then io.open(marker .. ".started", "w"):close() end
  sent = sent + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. keys[(sent - 1) % #keys + 1]})
end
response = function(status, headers, body)
  answered = answered + 1
  if status >= 500 then server_errors = server_errors + 1 end
  if answered == #keys then
    io.open(marker .. ".done", "w"):close()
    wrk.thread:stop()
  end
end
done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("lua: answered=%d server_errors=%d\\n", thread:get("answered"), thread:get("server_errors")))
  end
end
"""


def wrk_once(url: str, script: Path, keys_file: Path, count: int, connections: int) -> dict:
    """Sends each of the `count` keys in `keys_file` once (LUA_ONCE); requests/s is count over the time from the
    first request to the last answer."""
    marker = keys_file.with_suffix(".marker")
    for suffix in (".started", ".done"):
        Path(str(marker) + suffix).unlink(missing_ok=True)
    command = ["wrk", "-t1", f"-c{connections}", "-d600s", "--latency", "-s", str(script), url, "--", str(keys_file), str(marker)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    started = done = None
    deadline = time.monotonic() + 600
    while done is None and time.monotonic() < deadline and process.poll() is None:
        now = time.monotonic()
        if started is None and Path(str(marker) + ".started").exists():
            started = now
        if Path(str(marker) + ".done").exists():
            done = now
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    if started is None or done is None:
        raise SystemExit(f"wrk did not finish sending {count:,} keys:\n{output}")
    result = {"rps": count / (done - started), "elapsed": done - started, "output": output}
    for percentile in ("50", "99"):
        result[f"p{percentile}"] = parse_latency(re.search(rf"\s{percentile}%\s+(\S+)", output).group(1))
    return result


def write_lines(directory: Path, name: str, lines: list[str]) -> Path:
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def judge(checks: list[tuple[str, bool]]) -> bool:
    for text, met in checks:
        print(f"{'met ' if met else 'MISSED'}  {text}")
    return all(met for _, met in checks)


def verify_base(args, servers: dict[str, Server], seeded: dict, directory: Path, script: Path) -> bool:
    label = Labels(servers)
    first_server = next(iter(servers.values()))
    scenarios = [("GET /healthz", f"http://127.0.0.1:{first_server.port}/healthz", {}, None)]
    for engine, server in servers.items():
        valid = seeded[engine]["values"][: args.cycle]
        valid_file = write_lines(directory, f"valid-{engine}.txt", valid)
        unknown = [well_formed_unknown_key() for _ in range(args.cycle // 2)]
        mixed = [key for pair in zip(valid[: args.cycle // 2], unknown) for key in pair]
        mixed_file = write_lines(directory, f"mixed-{engine}.txt", mixed)
        root = f"http://127.0.0.1:{server.port}"
        # The baseline runs the same Lua script (and so sends the same headers): wrk's per-request Lua work shares
        # the machine's two cores with the server, and would otherwise count against the check alone.
        scenarios += [
            (label(engine, "GET /healthz, same Lua script"), f"{root}/healthz", {}, f"{script} {valid_file}"),
            (label(engine, "check, valid keys"), f"{root}/v1/auth/check", {}, f"{script} {valid_file}"),
            (label(engine, "check, half unknown keys"), f"{root}/v1/auth/check", {}, f"{script} {mixed_file}"),
        ]
    print(
        f"==> checks: wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds (medians); "
        f"cycling through {args.cycle:,} valid keys, then {args.cycle // 2:,} valid + {args.cycle // 2:,} well-formed unknown keys"
    )
    results = measure(
        scenarios,
        first_server.port,
        args.duration,
        args.connections,
        args.rounds,
        expect_status={label(engine, "check, half unknown keys") for engine in servers},
    )
    print()
    print(table(results, label(next(iter(servers)), "GET /healthz, same Lua script")))
    print()
    plain = results["GET /healthz"]
    checks = []
    for engine in servers:
        valid_result, mixed_result = results[label(engine, "check, valid keys")], results[label(engine, "check, half unknown keys")]
        health = results[label(engine, "GET /healthz, same Lua script")]
        print(
            f"({engine}, against plain /healthz: valid keys {valid_result['rps'] / plain['rps']:.0%}, "
            f"half unknown {mixed_result['rps'] / plain['rps']:.0%})"
        )
        checks += [
            (f"{engine}, valid keys: throughput / /healthz = {valid_result['rps'] / health['rps']:.0%} (target >= 80%)", valid_result["rps"] / health["rps"] >= 0.80),
            (f"{engine}, valid keys: p99 = {valid_result['p99']:.2f} ms at {args.connections} connections (target <= 5 ms)", valid_result["p99"] <= 5.0),
            (f"{engine}, half unknown: throughput / /healthz = {mixed_result['rps'] / health['rps']:.0%} (target >= 70%)", mixed_result["rps"] / health["rps"] >= 0.70),
        ]
    if "sqlite" in servers and "postgres" in servers:
        ratio = paired_ratio(results, label("postgres", "check, valid keys"), label("sqlite", "check, valid keys"))
        print(
            "(the two servers' own /healthz, same script, postgres / sqlite: "
            f"{paired_ratio(results, label('postgres', 'GET /healthz, same Lua script'), label('sqlite', 'GET /healthz, same Lua script')):.0%})"
        )
        checks.append(
            (f"valid keys: PostgreSQL's throughput / SQLite's = {ratio:.0%}, median of the rounds' ratios (target >= 90%)", ratio >= 0.90)
        )
    print()
    return judge(checks)


def verify_flood(args, server: Server, seeded: dict, directory: Path, script: Path) -> bool:
    """300,000 distinct forged keys, each sent once, beside /healthz driven by the same script over the same keys."""
    once = directory / "once.lua"
    once.write_text(LUA_ONCE)
    statements = "keysmith_database_statement_duration_seconds_count"
    print(f"==> forged-key flood: {args.flood:,} distinct well-formed never-issued keys, each sent once; {args.flood_rounds} rounds")
    rounds = []
    for round_index in range(args.flood_rounds):
        forged_file = write_lines(directory, "forged.txt", [well_formed_unknown_key() for _ in range(args.flood)])
        wrk(f"http://127.0.0.1:{server.port}/healthz", {}, 2, args.connections)  # warm-up
        baseline = wrk_once(f"http://127.0.0.1:{server.port}/healthz", once, forged_file, args.flood, args.connections)
        forged_file = write_lines(directory, "forged.txt", [well_formed_unknown_key() for _ in range(args.flood)])
        rss_before = server.rss_mb()
        statements_before = server.metric(statements)
        peak = [rss_before]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], server.rss_mb())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        flood = wrk_once(f"http://127.0.0.1:{server.port}/v1/auth/check", once, forged_file, args.flood, args.connections)
        elapsed = flood["elapsed"]
        stop.set()
        sampler.join()
        reads = server.metric(statements) - statements_before
        counts = re.search(r"lua: answered=(\d+) server_errors=(\d+)", flood["output"])
        answered, server_errors = int(counts.group(1)), int(counts.group(2))
        # Right after the flood: valid keys, still answered from memory.
        valid_file = write_lines(directory, "valid.txt", seeded["values"][: args.cycle])
        statements_before_valid = server.metric(statements)
        after = wrk(f"http://127.0.0.1:{server.port}/v1/auth/check", {}, args.duration, args.connections, f"{script} {valid_file}")
        valid_reads = server.metric(statements) - statements_before_valid
        rounds.append(
            {
                "baseline": baseline["rps"],
                "flood": flood["rps"],
                "ratio": flood["rps"] / baseline["rps"],
                "p99": flood["p99"],
                "answered": answered,
                "server_errors": server_errors,
                "reads": reads,
                "elapsed": elapsed,
                "rss_growth": peak[0] - rss_before,
                "rss_before": rss_before,
                "valid_after": after["rps"],
                "valid_reads": valid_reads,
            }
        )
        r = rounds[-1]
        print(
            f"    round {round_index + 1}: /healthz (same script, same count) {r['baseline']:,.0f} req/s; flood {r['flood']:,.0f} req/s "
            f"({r['ratio']:.0%}), p99 {r['p99']:.2f} ms, {answered:,} answered, {server_errors} 5xx, "
            f"{reads:.0f} statements in {elapsed:.1f} s, RSS {rss_before:.0f} MiB +{r['rss_growth']:.1f} MiB; "
            f"then valid keys {after['rps']:,.0f} req/s with {valid_reads:.0f} statements in {args.duration} s",
            flush=True,
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print()
    print("| figure | median of rounds |")
    print("|---|---:|")
    print(f"| /healthz, same script over the same number of keys | {median['baseline']:,.0f} req/s |")
    print(f"| check, forged keys | {median['flood']:,.0f} req/s ({median['ratio']:.0%}), p99 {median['p99']:.2f} ms |")
    print(f"| database statements during the flood (the change feed's polls included) | {median['reads']:.0f} in {median['elapsed']:.1f} s |")
    print(f"| resident memory growth during the flood | {median['rss_growth']:.1f} MiB (from {median['rss_before']:.0f} MiB) |")
    print(f"| valid keys right after, statements meanwhile | {median['valid_after']:,.0f} req/s, {median['valid_reads']:.0f} |")
    print()
    worst_5xx = max(r["server_errors"] for r in rounds)
    # The feed polls the change log 4 times a second; anything beyond that would be per-key reads.
    poll_allowance = max(r["elapsed"] for r in rounds) * 4 * 2 + 10
    return judge(
        [
            (f"flood: throughput / /healthz = {median['ratio']:.0%} (target >= 50%)", median["ratio"] >= 0.50),
            (f"flood: {worst_5xx} 5xx answers (target 0)", worst_5xx == 0),
            (
                f"flood: at most {max(r['reads'] for r in rounds):.0f} database statements per {args.flood:,} forged keys, "
                f"the change feed's polls (target: no read per forged key)",
                max(r["reads"] for r in rounds) <= poll_allowance,
            ),
            (f"flood: resident memory grew {max(r['rss_growth'] for r in rounds):.1f} MiB (target <= 200 MB)", max(r["rss_growth"] for r in rounds) <= 200),
            (
                f"valid keys after the flood: {max(r['valid_reads'] for r in rounds):.0f} statements in {args.duration} s (from memory: polls only)",
                max(r["valid_reads"] for r in rounds) <= args.duration * 4 * 2 + 10,
            ),
        ]
    )


class Rotator:
    """Rotates keys through the admin API on a fixed schedule (open loop) until stopped.

    Rotation n is due at start + n / rate whatever the earlier ones took, and up to `workers` run at once, as an
    admin client sending 50 requests a second would: a sequential client measures its own round trips instead (under
    full CPU load a PostgreSQL rotation takes longer than 20 ms, so one at a time cannot reach 50 a second)."""

    def __init__(self, server: Server, project: str, ids: list[str], per_second: float, workers: int = 8):
        self.server, self.project, self.ids, self.per_second = server, project, ids, per_second
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.issued = 0
        self.done = 0
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(workers)]

    def start(self):
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def join(self):
        for thread in self.threads:
            thread.join()

    def work(self):
        client = Client(self.server.port, self.server.admin_key)
        while not self.stop.is_set():
            with self.lock:
                n = self.issued
                self.issued += 1
            delay = self.started + n / self.per_second - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            key = self.ids[n % len(self.ids)]
            began = time.monotonic()
            client.call("POST", f"/organization/projects/{self.project}/api_keys/{key}/rotate", {})
            with self.lock:
                self.done += 1
                self.latencies.append((time.monotonic() - began) * 1000)


def verify_writes(args, server: Server, seeded: dict, directory: Path, script: Path) -> bool:
    """Valid-key checks with and without another client rotating keys at 50 per second, interleaved."""
    valid_file = write_lines(directory, "valid.txt", seeded["values"][: args.cycle])
    # Rotate keys the checks do not use, so that every check stays valid.
    pool = seeded["ids"][args.cycle :]
    rates, latencies = [], []

    class Around:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.rotator = None
            if "rotating" in self.name:
                self.rotator = Rotator(server, seeded["project"], pool, args.rotations)
                self.started = time.monotonic()
                self.rotator.start()

        def __exit__(self, *exc):
            if self.rotator:
                self.rotator.stop.set()
                self.rotator.join()
                rates.append(self.rotator.done / (time.monotonic() - self.started))
                latencies.extend(self.rotator.latencies)

    print(f"==> checks during admin writes: valid keys, alone and while another client rotates keys at {args.rotations:.0f}/s")
    results = measure(
        [
            ("check, valid keys", "/v1/auth/check", {}, f"{script} {valid_file}"),
            (f"check, valid keys, rotating {args.rotations:.0f}/s", "/v1/auth/check", {}, f"{script} {valid_file}"),
        ],
        server.port,
        args.duration,
        args.connections,
        args.rounds,
        around=Around,
    )
    print()
    print(table(results, "check, valid keys"))
    latencies.sort()
    print(
        f"(rotations achieved: median {statistics.median(rates):.1f}/s; each rotation's response time p50 "
        f"{latencies[len(latencies) // 2]:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms)"
    )
    print()
    alone, rotating = results["check, valid keys"], results[f"check, valid keys, rotating {args.rotations:.0f}/s"]
    ratio = rotating["p99"] / alone["p99"]
    return judge(
        [
            (f"checks during writes: p99 {rotating['p99']:.2f} ms vs {alone['p99']:.2f} ms alone = {ratio:.2f}x (target <= 1.5x)", ratio <= 1.5),
            (f"rotations ran at {statistics.median(rates):.1f}/s (asked {args.rotations:.0f}/s)", statistics.median(rates) >= args.rotations * 0.9),
        ]
    )


NGINX_CONFIG = """
daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{upstreams}
    # The baseline's auth server: answers 200 at once, in the same nginx worker, on loopback TCP and on a Unix socket.
    server {{
        listen 127.0.0.1:{noop};
        listen unix:{root}/noop.sock;
        location / {{ return 200; }}
    }}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""

# One auth server: its keepalive upstream, and a location that serves the static file behind auth_request to it, as
# docs/gateways.md's recipe does.
NGINX_UPSTREAM = """
    upstream {name} {{
        server {address};
        keepalive 64;
    }}
"""

NGINX_AUTH_LOCATIONS = """
        location /{name}/ {{
            auth_request /_{name};
            auth_request_set $keysmith_project $upstream_http_x_keysmith_project_id;
            auth_request_set $keysmith_key $upstream_http_x_keysmith_key_id;
            alias {root}/static/;
        }}
        location = /_{name} {{
            internal;
            proxy_pass http://{name}/v1/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
"""


def nginx_config(root: Path, port: int, noop: int, auth_servers: dict[str, int | str]) -> str:
    """nginx listening on `port`, with /NAME/model.json behind auth_request to each of `auth_servers` (name: a
    loopback port, or the path of a Unix socket); `noop` is the port of nginx's own no-op auth server, which
    `auth_servers` may name (its Unix socket is {root}/noop.sock)."""

    def address(upstream: int | str) -> str:
        return f"unix:{upstream}" if isinstance(upstream, str) else f"127.0.0.1:{upstream}"

    return NGINX_CONFIG.format(
        root=root,
        port=port,
        noop=noop,
        upstreams="".join(NGINX_UPSTREAM.format(name=name, address=address(upstream)) for name, upstream in auth_servers.items()),
        locations="".join(NGINX_AUTH_LOCATIONS.format(name=name, root=root) for name in auth_servers),
    )


def verify_nginx(args, server: Server, seeded: dict, directory: Path, script: Path) -> bool:
    """What a gateway pays: nginx (one worker) serving a static file behind auth_request to Keysmith, against the
    same nginx with auth_request to a no-op upstream: an nginx server of its own that answers 200 at once. Beside
    them, a second Keysmith on the same database with checks answered through Hummingbird's router
    (KEYSMITH_CHECKS_ON_EVENT_LOOP=false), to show what answering them on the event loop is worth."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    root = directory / "nginx"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "static"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "static" / "model.json").write_text('{"object":"model"}\n')
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    port, noop = ports
    through_router = Server(
        server.binary,
        directory / "through-router",
        database=server.database,
        admin_key=server.admin_key,
        settings={"KEYSMITH_CHECKS_ON_EVENT_LOOP": "false"},
    )
    # Over Unix sockets: a Keysmith on the same database serving on one too (--unix-socket), and nginx's no-op server.
    # (Unix socket paths are short: at most 107 bytes.)
    socket_directory = Path(tempfile.mkdtemp(prefix="ks-bench-"))
    on_socket = Server(
        server.binary,
        directory / "on-socket",
        database=server.database,
        admin_key=server.admin_key,
        settings={"KEYSMITH_UNIX_SOCKET": str(socket_directory / "keysmith.sock")},
    )
    deadline = time.time() + 20
    while not (socket_directory / "keysmith.sock").exists():
        if time.time() > deadline:
            raise SystemExit("keysmith did not open its Unix socket")
        time.sleep(0.02)
    # keysmith_router: the same build with KEYSMITH_CHECKS_ON_EVENT_LOOP=false, every check through Hummingbird's router.
    (root / "nginx.conf").write_text(
        nginx_config(
            root,
            port,
            noop,
            {
                "keysmith": server.port,
                "keysmith_router": through_router.port,
                "noop": noop,
                "keysmith_unix": str(socket_directory / "keysmith.sock"),
                "noop_unix": str(root / "noop.sock"),
            },
        )
    )
    process = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf")], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"nginx did not start: {process.stderr.read().decode()}")
                time.sleep(0.05)
        valid_file = write_lines(directory, "valid.txt", seeded["values"][: args.cycle])
        print("==> gateway: nginx (1 worker) serving a static file with auth_request to Keysmith, or to a no-op upstream")
        # CPU seconds each process spent during each measured run: where the time goes.
        spent: dict[str, list[dict]] = {}

        class Around:
            def __init__(self, name):
                self.name = name

            def __enter__(self):
                self.pid = (through_router if "router" in self.name else on_socket if "Unix" in self.name else server).process.pid
                self.before = (cpu_seconds(process.pid), cpu_seconds(self.pid), children_cpu_seconds())

            def __exit__(self, *exc):
                after = (cpu_seconds(process.pid), cpu_seconds(self.pid), children_cpu_seconds())
                nginx, keysmith, wrk_cpu = (a - b for a, b in zip(after, self.before))
                spent.setdefault(self.name, []).append({"nginx": nginx, "keysmith": keysmith, "wrk": wrk_cpu})

        results = measure(
            [
                ("nginx, auth_request to a no-op upstream", f"http://127.0.0.1:{port}/noop/model.json", {}, f"{script} {valid_file}"),
                ("nginx, auth_request to Keysmith", f"http://127.0.0.1:{port}/keysmith/model.json", {}, f"{script} {valid_file}"),
                (
                    "nginx, auth_request to Keysmith, checks through the router",
                    f"http://127.0.0.1:{port}/keysmith_router/model.json",
                    {},
                    f"{script} {valid_file}",
                ),
                ("nginx, auth_request to a no-op upstream, Unix socket", f"http://127.0.0.1:{port}/noop_unix/model.json", {}, f"{script} {valid_file}"),
                ("nginx, auth_request to Keysmith, Unix socket", f"http://127.0.0.1:{port}/keysmith_unix/model.json", {}, f"{script} {valid_file}"),
            ],
            server.port,
            args.duration,
            args.connections,
            args.rounds,
            around=Around,
        )
    finally:
        process.terminate()
        process.wait(timeout=20)
        through_router.stop()
        on_socket.stop()
        shutil.rmtree(socket_directory, ignore_errors=True)
    print()
    print(table(results, "nginx, auth_request to a no-op upstream"))
    print()
    print("CPU time per request, by process (medians of the rounds; the machine has 2 cores, 2,000,000 µs per second):")
    print()
    print("| scenario | wrk | nginx | Keysmith | all |")
    print("|---|---:|---:|---:|---:|")
    for name, rounds in spent.items():
        requests = results[name]["rps"] * args.duration
        per = {part: statistics.median(r[part] for r in rounds) / requests * 1e6 for part in ("wrk", "nginx", "keysmith")}
        print(f"| {name} | {per['wrk']:.1f} µs | {per['nginx']:.1f} µs | {per['keysmith']:.1f} µs | {sum(per.values()):.1f} µs |")
    print()
    rps = {name: result["rps"] for name, result in results.items()}
    tcp = rps["nginx, auth_request to Keysmith"] / rps["nginx, auth_request to a no-op upstream"]
    unix = rps["nginx, auth_request to Keysmith, Unix socket"] / rps["nginx, auth_request to a no-op upstream, Unix socket"]
    best = max(rps["nginx, auth_request to Keysmith"], rps["nginx, auth_request to Keysmith, Unix socket"]) / max(
        rps["nginx, auth_request to a no-op upstream"], rps["nginx, auth_request to a no-op upstream, Unix socket"]
    )
    before = rps["nginx, auth_request to Keysmith, checks through the router"] / rps["nginx, auth_request to a no-op upstream"]
    print(f"(over TCP: {tcp:.0%} of the no-op upstream; over Unix sockets: {unix:.0%}; checks through the router, TCP: {before:.0%})")
    return judge([(f"nginx with Keysmith / nginx with a no-op upstream, each over its best transport = {best:.0%} (target >= 85%)", best >= 0.85)])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time the benchmark's PostgreSQL cluster has used so far: the postmaster's and its live children's
    (Keysmith's pooled connections stay open, so their backends live through a measured run)."""
    data = os.environ.get("KEYSMITH_TEST_POSTGRES_DATA")
    if not data:
        return 0.0
    postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_verify(args, servers: dict[str, Server]) -> bool:
    seeded = {engine: seed_keys(server, args.keys) for engine, server in servers.items()}
    directory = Path(tempfile.mkdtemp(prefix="keysmith-bench-lua-"))
    script = directory / "cycle.lua"
    script.write_text(LUA_CYCLE)
    parts = {"flood": verify_flood, "writes": verify_writes, "nginx": verify_nginx}
    met = True
    for name in args.parts.split(","):
        print()
        if name == "checks":
            # Every engine in the same interleaved rounds, so that their figures compare.
            met = verify_base(args, servers, seeded, directory, script) and met
            continue
        for engine, server in servers.items():
            if len(servers) > 1:
                print(f"==> [{engine}]")
            met = parts[name](args, server, seeded[engine], directory, script) and met
    return met


LUA_CREATE = """
local members = {}
local project
local made = 0
init = function(args)
  project = args[1]
  for index = 2, #args do members[#members + 1] = args[index] end
  -- Beside the Authorization header given with -H: a headers table passed to wrk.format would replace them all.
  wrk.headers["Content-Type"] = "application/json"
end
request = function()
  made = made + 1
  local body = '{"name":"bench ' .. made .. '","user_id":"' .. members[made % #members + 1] .. '"}'
  return wrk.format("POST", "/v1/organization/projects/" .. project .. "/api_keys", nil, body)
end
"""


def run_create(args, servers: dict[str, Server]) -> bool:
    """Key creations through the API, --connections at once (16 unless given), on each engine in the same rounds,
    beside GET /healthz: what a write costs, its transaction, its fsync and its change feed's catch-up included."""
    directory = Path(tempfile.mkdtemp(prefix="keysmith-bench-lua-"))
    script = directory / "create.lua"
    script.write_text(LUA_CREATE)
    label = Labels(servers)
    first_server = next(iter(servers.values()))
    scenarios = [("GET /healthz", f"http://127.0.0.1:{first_server.port}/healthz", {}, None)]
    for engine, server in servers.items():
        client = Client(server.port, server.admin_key)
        project = client.call("POST", "/organization/projects", {"name": "bench"})["id"]
        members = []
        for index in range(10):
            user = client.call("POST", "/organization/users", {"email": f"create{index}@example.com"})["id"]
            client.call("POST", f"/organization/projects/{project}/users", {"user_id": user, "role": "member"})
            members.append(user)
        analyze(server)
        scenarios.append(
            (
                label(engine, "POST /api_keys (create a key)"),
                f"http://127.0.0.1:{server.port}/v1/organization/projects/{project}/api_keys",
                {"Authorization": f"Bearer {server.admin_key}"},
                f"{script} {project} {' '.join(members)}",
            )
        )
    connections = args.connections if args.connections != 64 else 16
    print(f"==> key creations through the API, {connections} connections, {args.rounds} rounds of {args.duration} s", flush=True)
    # After each round of creations: how many keys the server's database holds, and the server's resident memory.
    memory: dict[str, list[tuple[int, float]]] = {engine: [] for engine in servers}

    class Around:
        def __init__(self, name):
            self.engine = next((engine for engine in servers if name == label(engine, "POST /api_keys (create a key)")), None)

        def __enter__(self):
            pass

        def __exit__(self, *exc):
            if self.engine:
                server = servers[self.engine]
                memory[self.engine].append((key_count(server), server.rss_mb()))

    results = measure(scenarios, first_server.port, args.duration, connections, args.rounds, around=Around)
    print()
    print(table(results, "GET /healthz"))
    for name in results:
        if name != "GET /healthz":
            print(f"{name}: {results[name]['rps']:,.0f} keys/s (rounds: {', '.join(f'{r:,.0f}' for r in results[name]['rounds'])})")
    print()
    print("Resident memory after each round of creations (keys in the database: MiB):")
    for engine, samples in memory.items():
        if samples:
            first, last = samples[0], samples[-1]
            print(
                f"  {engine}: {', '.join(f'{keys:,}: {rss:.0f}' for keys, rss in samples)}; "
                f"after {last[0]:,} keys {last[1] / first[1]:.2f}x what it was after {first[0]:,}"
            )
    if "sqlite" in servers and "sqlite-normal" in servers:
        ratio = paired_ratio(results, label("sqlite", "POST /api_keys (create a key)"), label("sqlite-normal", "POST /api_keys (create a key)"))
        print(f"sqlite (synchronous FULL) / sqlite-normal (NORMAL), paired by round: {ratio:.0%}")
    return True



# The gateway benchmark's upstream: nginx answering a fixed chat completion (with usage) at once, so that the upstream
# is not what is measured; beside it, nginx's own proxy_pass to it with keepalive, the proxy to compare with.
GATEWAY_NGINX_CONFIG = """
daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream model {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{upstream};
        keepalive_requests 1000000;
        location /v1/chat/completions {{
            default_type application/json;
            return 200 '{completion}';
        }}
        location /v1/models {{
            default_type application/json;
            return 200 '{{"object":"list","data":[{{"id":"bench-model","object":"model","created":1,"owned_by":"bench"}}]}}';
        }}
    }}
    server {{
        listen 127.0.0.1:{proxy};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

GATEWAY_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    },
    separators=(",", ":"),
)

GATEWAY_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_ports(count: int) -> list[int]:
    ports = []
    for _ in range(count):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return ports


def wait_for_port(port: int, process: subprocess.Popen, what: str):
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{what} did not start")
            time.sleep(0.05)



# The stream benchmark's upstream: a minimal OpenAI-style server in its own process (asyncio, HTTP/1.1 with
# keep-alive), streaming `bench_events` chat completion chunks `bench_gap_ms` apart, each its own HTTP chunk.
STREAM_UPSTREAM = r"""
import asyncio, json, sys

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            events, gap = body.get("bench_events", 100), body.get("bench_gap_ms", 0) / 1000
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for index in range(events):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "bench-model",
                         "choices": [{"index": 0, "delta": {"content": "w%d " % index}, "finish_reason": None}]}
                data = ("data: " + json.dumps(chunk) + "\n\n").encode()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                if gap:
                    await asyncio.sleep(gap)
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def stream_once(port: int, key: str | None, events: int) -> tuple[float, float]:
    """One streamed chat completion over a new connection: seconds to its first event and to its last ([DONE])."""
    body = json.dumps({"model": "bench-model", "messages": [], "stream": True, "stream_options": {"include_usage": True},
                       "bench_events": events}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    connection.sendall(head.encode() + b"\r\n" + body)
    first = None
    received = b""
    while True:
        data = connection.recv(65536)
        if not data:
            break
        received += data
        if first is None and b"data: " in received:
            first = time.perf_counter() - started
        if b"data: [DONE]" in received:
            break
    last = time.perf_counter() - started
    connection.close()
    return first, last


def run_gateway_streams(args, gateway: Server, key: str, directory: Path) -> list[tuple[str, bool]]:
    """Streams of 100 events, one at a time, directly from the streaming upstream and through Keysmith, alternately:
    time to the first event and to the last; then 1,000 streams at once through Keysmith, its memory per stream."""
    script = directory / "stream_upstream.py"
    script.write_text(STREAM_UPSTREAM)
    (port,) = free_ports(1)
    upstream = subprocess.Popen([sys.executable, str(script), str(port)])
    streams_gateway = None
    try:
        wait_for_port(port, upstream, "the streaming upstream")
        streams_gateway = Server(
            gateway.binary,
            directory / "stream-gateway",
            database=gateway.database,
            admin_key=gateway.admin_key,
            settings={"KEYSMITH_UPSTREAM": f"http://127.0.0.1:{port}/v1"},
        )
        timings: dict[str, list[tuple[float, float]]] = {"direct": [], "Keysmith": []}
        for _ in range(20):  # warm-up
            stream_once(port, None, 100)
            stream_once(streams_gateway.port, key, 100)
        for _ in range(args.streams):
            timings["direct"].append(stream_once(port, None, 100))
            timings["Keysmith"].append(stream_once(streams_gateway.port, key, 100))

        def percentile(values: list[float], fraction: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

        print(f"==> streams of 100 events, one at a time, {args.streams} each (ms)")
        print("| | first event p50 | first event p99 | last event p50 | last event p99 |")
        print("|---|---:|---:|---:|---:|")
        figures = {}
        for name, values in timings.items():
            firsts, lasts = [v[0] for v in values], [v[1] for v in values]
            figures[name] = (percentile(firsts, 0.5), percentile(firsts, 0.99), percentile(lasts, 0.5), percentile(lasts, 0.99))
            print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in figures[name]) + " |")
        first_gap = figures["Keysmith"][1] - figures["direct"][1]
        last_gap = figures["Keysmith"][3] - figures["direct"][3]
        print(f"Keysmith adds {first_gap:.3f} ms to the first event's p99 and {last_gap:.3f} ms to the last's (target: 1 ms)")

        # 1,000 streams at once, each 30 events a second apart.
        rss_before = streams_gateway.rss_mb()
        count = args.concurrent_streams
        body = json.dumps({"model": "bench-model", "messages": [], "stream": True, "bench_events": 30, "bench_gap_ms": 1000}).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connections = []
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", streams_gateway.port))
            connection.sendall(request)
            connections.append(connection)
        started = 0
        deadline = time.time() + 60
        for connection in connections:
            # The answer's head and its first event may come in separate reads: read until the event (or the deadline).
            received = b""
            try:
                while b"data: " not in received:
                    connection.settimeout(max(0.1, deadline - time.time()))
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                pass
            if b"data: " in received:
                started += 1
        time.sleep(2)
        rss_during = streams_gateway.rss_mb()
        for connection in connections:
            connection.close()
        per_stream = (rss_during - rss_before) * 1024 / max(started, 1)
        print(f"==> {started} of {count} streams at once: Keysmith's memory {rss_before:.0f} MiB before, {rss_during:.0f} MiB "
              f"with them open: {per_stream:.0f} KiB a stream")
        return [
            ("Keysmith within 1 ms of direct at p99, to the first event", first_gap <= 1),
            ("Keysmith within 1 ms of direct at p99, to the last event", last_gap <= 1),
            (f"all {count} concurrent streams started", started == count),
        ]
    finally:
        if streams_gateway:
            streams_gateway.stop()
        upstream.terminate()
        upstream.wait(timeout=30)


def run_gateway(args, servers: dict[str, Server]) -> bool:
    """A small non-streamed chat completion from a fast upstream (nginx answering a fixed body with usage): directly,
    through nginx's proxy_pass, through Keysmith's gateway (each request verified, proxied, its usage metered), and,
    when LiteLLM's proxy is installed (--litellm: its venv's litellm command), through it with its master key; all in the same
    interleaved rounds, beside GET /healthz."""
    engine, server = next(iter(servers.items()))
    # The gateway runs on the same database, with --upstream; one process at a time on a SQLite file.
    server.stop()
    directory = Path(tempfile.mkdtemp(prefix="keysmith-gateway-bench-"))
    root = directory / "nginx"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / name).mkdir(parents=True, exist_ok=True)
    upstream, proxy, litellm_port = free_ports(3)
    (root / "nginx.conf").write_text(
        GATEWAY_NGINX_CONFIG.format(root=root, upstream=upstream, proxy=proxy, completion=GATEWAY_COMPLETION)
    )
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(root), "-c", str(root / "nginx.conf")])
    script = directory / "completion.lua"
    script.write_text(GATEWAY_WRK_SCRIPT)
    processes = [nginx]
    gateway = None
    try:
        wait_for_port(proxy, nginx, "nginx")
        gateway = Server(
            server.binary,
            directory / "gateway",
            database=server.database,
            admin_key=server.admin_key,
            settings={"KEYSMITH_UPSTREAM": f"http://127.0.0.1:{upstream}/v1"},
        )
        client = Client(gateway.port, gateway.admin_key)
        project = client.call("POST", "/organization/projects", {"name": "gateway bench"})["id"]
        key = client.call("POST", f"/organization/projects/{project}/service_accounts", {"name": "bench"})["api_key"]["value"]
        # A second project with an allow list and rate limits too high to refuse: what judging them costs.
        limited = client.call("POST", "/organization/projects", {"name": "gateway bench, limited"})["id"]
        limited_key = client.call("POST", f"/organization/projects/{limited}/service_accounts", {"name": "bench"})["api_key"]["value"]
        client.call("POST", f"/organization/projects/{limited}/model_permissions", {"mode": "allow_list", "model_ids": ["bench-model"]})
        client.call(
            "POST",
            f"/organization/projects/{limited}/rate_limits/rl-bench-model",
            {"max_requests_per_1_minute": 10**12, "max_tokens_per_1_minute": 10**12, "max_requests_per_1_day": 10**12},
        )
        check = f"http://127.0.0.1:{gateway.port}/v1/auth/check/v1/chat/completions"
        scenarios = [
            ("GET /healthz", f"http://127.0.0.1:{gateway.port}/healthz", {}, None),
            ("upstream directly", f"http://127.0.0.1:{upstream}/v1/chat/completions", {}, str(script)),
            ("nginx proxy_pass", f"http://127.0.0.1:{proxy}/v1/chat/completions", {}, str(script)),
            ("Keysmith gateway", f"http://127.0.0.1:{gateway.port}/v1/chat/completions", {"Authorization": f"Bearer {key}"}, str(script)),
            (
                "Keysmith gateway, limits and permissions",
                f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
                {"Authorization": f"Bearer {limited_key}"},
                str(script),
            ),
            ("check with the body (Envoy)", check, {"Authorization": f"Bearer {key}"}, str(script)),
            ("check with the body, limits and permissions", check, {"Authorization": f"Bearer {limited_key}"}, str(script)),
        ]
        if args.litellm:
            config = directory / "litellm.yaml"
            config.write_text(
                "model_list:\n  - model_name: bench-model\n    litellm_params:\n      model: openai/bench-model\n"
                f"      api_base: http://127.0.0.1:{upstream}/v1\n      api_key: upstream\n"
                "general_settings:\n  master_key: sk-litellm-bench\n"
            )
            log = open(directory / "litellm.log", "wb")
            litellm = subprocess.Popen(
                [args.litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(litellm_port), "--num_workers", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its prices from the package, not from GitHub (no network here).
                env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            )
            processes.append(litellm)
            wait_for_port(litellm_port, litellm, "LiteLLM's proxy")
            scenarios.append(
                ("LiteLLM proxy", f"http://127.0.0.1:{litellm_port}/v1/chat/completions", {"Authorization": "Bearer sk-litellm-bench"}, str(script))
            )
        print(f"==> a chat completion through each, {args.connections} connections, {args.rounds} rounds of {args.duration} s")
        rss_before = gateway.rss_mb()
        results = measure(scenarios, gateway.port, args.duration, args.connections, args.rounds)
        print()
        print(table(results, "nginx proxy_pass"))
        keysmith, nginx_proxy = results["Keysmith gateway"], results["nginx proxy_pass"]
        ratio = paired_ratio(results, "Keysmith gateway", "nginx proxy_pass")
        print(f"Keysmith / nginx proxy_pass throughput, paired by round: {ratio:.0%} (target 80%)")
        print(f"p99: Keysmith {keysmith['p99']:.3f} ms, nginx proxy_pass {nginx_proxy['p99']:.3f} ms (target: within 2 ms)")
        if "LiteLLM proxy" in results:
            print(f"LiteLLM proxy / nginx proxy_pass: {paired_ratio(results, 'LiteLLM proxy', 'nginx proxy_pass'):.0%}")
        print(f"Keysmith's resident memory: {rss_before:.0f} MiB before, {gateway.rss_mb():.0f} MiB after")
        limited_gateway = paired_ratio(results, "Keysmith gateway, limits and permissions", "Keysmith gateway")
        limited_check = paired_ratio(results, "check with the body, limits and permissions", "check with the body (Envoy)")
        print(f"with limits and permissions / without, paired by round: gateway {limited_gateway:.0%}, checks {limited_check:.0%} (target 90%)")
        checks = [
            ("Keysmith at least 80% of nginx proxy_pass's throughput", ratio >= 0.8),
            ("Keysmith's p99 within 2 ms of nginx proxy_pass's", keysmith["p99"] <= nginx_proxy["p99"] + 2),
            ("gateway requests with limits and permissions at least 90% of those without", limited_gateway >= 0.9),
            ("checks with limits and permissions at least 90% of those without", limited_check >= 0.9),
        ]
        gateway.stop()
        checks += run_gateway_streams(args, gateway, key, directory)
        gateway = None
        return judge(checks)
    finally:
        if gateway:
            gateway.stop()
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def run_scale(args, binary: str, seeder: str) -> bool:
    """Startup time, resident memory and valid-key throughput at each size, seeded through the domain layer
    (keysmith-bench-seed: one write transaction per key, as the API makes, without HTTP)."""
    rows = []
    for size in [int(size) for size in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="keysmith-scale-") as name:
            directory = Path(name)
            database = directory / "scale.sqlite"
            sample_file = directory / "sample.txt"
            print(f"==> seeding {size:,} keys through the domain layer", flush=True)
            started = time.time()
            seeded = subprocess.run(
                [seeder, f"sqlite:{database}", str(size), str(args.members), str(sample_file), str(args.cycle)],
                capture_output=True,
                text=True,
                check=True,
            )
            seed_seconds = time.time() - started
            admin_key = seeded.stdout.split()[0]
            valid_file = write_lines(directory, "valid.txt", [line.split()[1] for line in sample_file.read_text().splitlines()])
            script = directory / "cycle.lua"
            script.write_text(LUA_CYCLE)
            server = Server(binary, directory, database=f"sqlite:{database}", admin_key=admin_key)
            try:
                time.sleep(2)
                rss = server.rss_mb()
                results = measure(
                    [
                        ("GET /healthz, same Lua script", "/healthz", {}, f"{script} {valid_file}"),
                        ("check, valid keys", "/v1/auth/check", {}, f"{script} {valid_file}"),
                    ],
                    server.port,
                    args.duration,
                    args.connections,
                    args.rounds,
                )
                rows.append(
                    {
                        "keys": size,
                        "seed": seed_seconds,
                        "startup": server.startup_seconds,
                        "rss": rss,
                        "health": results["GET /healthz, same Lua script"]["rps"],
                        "valid": results["check, valid keys"]["rps"],
                        "p99": results["check, valid keys"]["p99"],
                    }
                )
            finally:
                server.stop()
    print()
    print("| keys | seeding | startup (spawn to listening) | resident memory | check, valid keys | vs /healthz, same script | p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['keys']:,} | {row['seed']:.0f} s | {row['startup']:.2f} s | {row['rss']:.0f} MiB | {row['valid']:,.0f} req/s | "
            f"{row['valid'] / row['health']:.0%} | {row['p99']:.2f} ms |"
        )
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        per_key = (large["rss"] - small["rss"]) * 1024 * 1024 / (large["keys"] - small["keys"])
        print(f"\nmemory per key: ({large['rss']:.0f} - {small['rss']:.0f}) MiB / {large['keys'] - small['keys']:,} keys = {per_key:.0f} bytes")
    return True


class Checker:
    """Asks a server about one key at a time, as fast as one keep-alive connection allows, in a thread of its own;
    notes when the answer first becomes the awaited status."""

    def __init__(self, server: Server):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.condition = threading.Condition()
        self.key = None
        self.awaited = None
        self.seen_at = None
        self.stopped = False
        self.checks = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def status(self, key: str) -> int:
        self.connection.request("GET", "/v1/auth/check", headers={"Authorization": f"Bearer {key}"})
        response = self.connection.getresponse()
        response.read()
        return response.status

    def run(self):
        while True:
            with self.condition:
                while not self.stopped and (self.key is None or self.seen_at is not None):
                    self.condition.wait()
                if self.stopped:
                    return
                key, awaited = self.key, self.awaited
            status = self.status(key)
            now = time.monotonic()
            with self.condition:
                self.checks += 1
                if status == awaited and self.key == key and self.seen_at is None:
                    self.seen_at = now
                    self.condition.notify_all()

    def watch(self, key: str, awaited: int):
        with self.condition:
            self.key, self.awaited, self.seen_at = key, awaited, None
            self.condition.notify_all()

    def wait(self, timeout: float) -> float | None:
        """When the awaited answer came (time.monotonic()), or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while self.seen_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.condition.wait(left)
            return self.seen_at

    def stop(self):
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
        self.thread.join()


def run_replicas(args) -> bool:
    """Two replicas on one PostgreSQL database. For each of --changes keys: created through A, the time until B
    verifies it; then revoked through A, the time from sending the revocation until B refuses the key. B is asked
    continuously, one request after another, from a thread of its own."""
    with tempfile.TemporaryDirectory(prefix="keysmith-bench-replicas-") as name:
        directory = Path(name)
        database = new_postgres_database()
        first = Server(args.bin, directory / "a", database=database)
        second = Server(args.bin, directory / "b", database=database, admin_key=first.admin_key)
        try:
            client = Client(first.port, first.admin_key)
            project = client.call("POST", "/organization/projects", {"name": "replicas"})["id"]
            user = client.call("POST", "/organization/users", {"email": "replica@example.com"})["id"]
            client.call("POST", f"/organization/projects/{project}/users", {"user_id": user, "role": "member"})
            checker = Checker(second)
            created, revoked, written = [], [], []
            print(f"==> {args.changes} keys: created through replica A, verified on B; then revoked through A, refused by B", flush=True)
            try:
                for index in range(args.changes):
                    key = client.call("POST", f"/organization/projects/{project}/api_keys", {"name": f"k{index}", "user_id": user})
                    answered = time.monotonic()
                    checker.watch(key["value"], 200)
                    seen = checker.wait(10)
                    if seen is None:
                        raise SystemExit(f"replica B did not verify key {key['id']} within 10 s")
                    created.append(max(0.0, seen - answered))
                    # The key now verifies on B; B keeps asking until it refuses it.
                    checker.watch(key["value"], 401)
                    sent = time.monotonic()
                    client.call("DELETE", f"/organization/projects/{project}/api_keys/{key['id']}")
                    written.append(time.monotonic() - sent)
                    refused = checker.wait(10)
                    if refused is None:
                        raise SystemExit(f"replica B still accepted revoked key {key['id']} after 10 s")
                    revoked.append(refused - sent)
            finally:
                checker.stop()
            statements = second.metric(f"{DatabaseTime.STATEMENTS}_count")
        finally:
            first.stop()
            second.stop()

    def row(name: str, values: list[float]) -> str:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return f"| {name} | {len(values)} | {statistics.median(values) * 1e3:.2f} ms | {p99 * 1e3:.2f} ms | {max(values) * 1e3:.2f} ms |"

    print()
    print("| measured on replica B | changes | p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|")
    print(row("revocation: from sending DELETE to A until B refuses the key", revoked))
    print(row("(of which A's DELETE request, to its response)", written))
    print(row("creation: from A's response until B verifies the key", created))
    print()
    print(f"(B answered {checker.checks:,} checks while {statements:,.0f} statements ran on B, its change feed's reads)")
    ordered = sorted(revoked)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return judge(
        [
            (f"revocations: p99 {p99 * 1e3:.1f} ms from A to B (target <= 100 ms)", p99 <= 0.100),
            (f"every change applied on B within 1 s (slowest {max(revoked + created) * 1e3:.1f} ms)", max(revoked + created) <= 1.0),
        ]
    )


def run_limits(args) -> bool:
    """Two replicas on one PostgreSQL database, one project limited to --limit requests a minute, --minutes of load at
    --rate requests a minute split 80/20 between them (checks as Envoy sends them, the body naming the model). Each
    answer's window comes from its x-ratelimit-reset-requests header, so that requests are counted in the window the
    replica judged them in."""
    with tempfile.TemporaryDirectory(prefix="keysmith-bench-limits-") as name:
        directory = Path(name)
        database = new_postgres_database()
        first = Server(args.bin, directory / "a", database=database)
        second = Server(args.bin, directory / "b", database=database, admin_key=first.admin_key)
        try:
            client = Client(first.port, first.admin_key)
            project = client.call("POST", "/organization/projects", {"name": "limits"})["id"]
            key = client.call("POST", f"/organization/projects/{project}/service_accounts", {"name": "bench"})["api_key"]["value"]
            client.call("POST", f"/organization/projects/{project}/rate_limits/rl-bench-model", {"max_requests_per_1_minute": args.limit})
            time.sleep(1)  # the second replica's change feed
            body = json.dumps({"model": "bench-model", "messages": []})
            answers: list[tuple[str, int, int]] = []  # replica, status, window
            lock = threading.Lock()

            def unit(value: str) -> float:
                total = 0.0
                for amount, suffix in re.findall(r"([0-9.]+)(ms|h|m|s)", value):
                    total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[suffix]
                return total

            def load(server: Server, label: str, per_minute: float, start: float, end: float):
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                interval = 60 / per_minute
                due = start
                while due < end:
                    pause = due - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    connection.request(
                        "POST", "/v1/auth/check/v1/chat/completions", body=body,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                    )
                    response = connection.getresponse()
                    response.read()
                    reset = response.getheader("x-ratelimit-reset-requests")
                    window = round((time.time() + unit(reset)) / 60) - 1 if reset else -1
                    with lock:
                        answers.append((label, response.status, window))
                    due += interval

            # Start on a minute's edge, so that every window measured is a whole one.
            start = (int(time.time()) // 60 + 1) * 60
            end = start + 60 * args.minutes
            print(f"==> {args.rate}/min for {args.minutes} min from {time.strftime('%H:%M:%S', time.gmtime(start))} UTC, 80/20 over two replicas, limit {args.limit}/min", flush=True)
            # Each replica's share from 4 clients, so that no client's pace is bound by one connection's latency.
            threads = [threading.Thread(target=load, args=(first, "A", args.rate * 0.8 / 4, start + index * 0.01, end)) for index in range(4)]
            threads += [threading.Thread(target=load, args=(second, "B", args.rate * 0.2 / 4, start + index * 0.013, end)) for index in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            first.stop()
            second.stop()
    # The minutes of the load; an answer to a request sent at its very end may fall in the next one.
    windows = [window for window in range(start // 60, end // 60)]
    late = sum(window >= end // 60 for _, _, window in answers)
    if late:
        print(f"({late} requests sent as the load ended were judged in the minute after it, left out)")
    print()
    print("| minute (UTC) | sent | admitted | by A | by B | refused (429) | other |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    admitted_per_window = []
    for window in windows:
        rows = [(label, status) for label, status, w in answers if w == window]
        admitted = sum(status == 200 for _, status in rows)
        admitted_per_window.append(admitted)
        print(
            f"| {time.strftime('%H:%M', time.gmtime(window * 60))} | {len(rows)} | {admitted} | "
            f"{sum(status == 200 and label == 'A' for label, status in rows)} | {sum(status == 200 and label == 'B' for label, status in rows)} | "
            f"{sum(status == 429 for _, status in rows)} | {sum(status not in (200, 429) for _, status in rows)} |"
        )
    unattributed = sum(window < 0 for _, _, window in answers)
    if unattributed:
        print(f"({unattributed} answers without x-ratelimit headers)")
    return judge(
        [
            (f"admitted per minute never above {args.limit} (most {max(admitted_per_window)})", max(admitted_per_window) <= args.limit),
            (
                f"admitted per minute at least {int(args.limit * 0.95)} (least {min(admitted_per_window)})",
                min(admitted_per_window) >= int(args.limit * 0.95),
            ),
            ("no answer but 200 and 429", all(status in (200, 429) for _, status, _ in answers)),
        ]
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["list", "verify", "scale", "replicas", "audit", "create", "gateway", "limits"])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--seeder", help="scale: the keysmith-bench-seed binary")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="list, verify, audit, create: the engine (sqlite, sqlite-normal, postgres), or several, comma-separated, "
        "side by side in the same rounds",
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cycle", type=int, default=10_000, help="verify: how many keys the wrk script cycles through")
    parser.add_argument("--parts", default="checks,flood,writes,nginx", help="verify: which parts to run")
    parser.add_argument("--flood", type=int, default=300_000, help="verify: forged keys in the flood")
    parser.add_argument("--flood-rounds", type=int, default=3)
    parser.add_argument("--rotations", type=float, default=50, help="verify: rotations per second during checks")
    parser.add_argument("--sizes", default="100000,1000000", help="scale: how many keys, comma-separated")
    parser.add_argument("--members", type=int, default=1_000, help="scale: project members the keys are spread over")
    parser.add_argument("--changes", type=int, default=300, help="replicas: keys created and revoked")
    parser.add_argument("--events", type=int, default=10_000, help="audit: events made through the API")
    parser.add_argument("--streams", type=int, default=300, help="gateway: sequential streams through each")
    parser.add_argument("--concurrent-streams", type=int, default=1000, help="gateway: streams open at once, for memory")
    parser.add_argument("--limit", type=int, default=600, help="limits: the project's requests per minute")
    parser.add_argument("--rate", type=float, default=2000, help="limits: requests per minute sent, over both replicas")
    parser.add_argument("--minutes", type=int, default=3, help="limits: minutes of load")
    parser.add_argument("--litellm", help="gateway: the litellm command of a venv with litellm[proxy], to measure its proxy beside")
    args = parser.parse_args()
    print(f"==> {os.cpu_count()} cores; {subprocess.run(['uname', '-srm'], capture_output=True, text=True).stdout.strip()}")
    if args.scenario == "scale":
        sys.exit(0 if run_scale(args, args.bin, args.seeder) else 1)
    if args.scenario == "replicas":
        sys.exit(0 if run_replicas(args) else 1)
    if args.scenario == "limits":
        sys.exit(0 if run_limits(args) else 1)
    with tempfile.TemporaryDirectory(prefix="keysmith-bench-") as directory:
        servers = start_servers(args, Path(directory))
        try:
            met = {"list": run_list, "verify": run_verify, "audit": run_audit, "create": run_create, "gateway": run_gateway}[
                args.scenario
            ](args, servers)
        finally:
            for server in servers.values():
                server.stop()
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
