"""Keysmith's benchmarks: seed a real release server over HTTP, then measure it with wrk beside GET /healthz."""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")
ADMIN_KEY = re.compile(r"sk-admin-[A-Za-z0-9]+")


class Server:
    def __init__(self, binary: str, directory: Path):
        self.stderr_path = directory / "stderr.log"
        self.stdout_path = directory / "stdout.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYSMITH_")}
        environment["KEYSMITH_LOG_LEVEL"] = "warning"
        self.process = subprocess.Popen(
            [binary, "serve", "--port", "0", "--database", f"sqlite:{directory / 'bench.sqlite'}"],
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            env=environment,
        )
        deadline = time.time() + 60
        # The listening line is an info log; at warning level find the port from the kernel instead.
        while True:
            self.port = self._listening_port()
            if self.port:
                break
            if self.process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"keysmith did not start: {self.stderr_path.read_text()}")
            time.sleep(0.05)
        self.admin_key = ADMIN_KEY.search(self.stdout_path.read_text()).group(0)

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


def seed_list(server: Server, keys: int) -> dict:
    """One project, 10 members, `keys` user keys created through the API, 8 connections at a time."""
    client = Client(server.port, server.admin_key)
    project = client.call("POST", "/organization/projects", {"name": "bench"})["id"]
    members = []
    for index in range(10):
        user = client.call("POST", "/organization/users", {"email": f"bench{index}@example.com", "name": f"Bench {index}"})
        client.call("POST", f"/organization/projects/{project}/users", {"user_id": user["id"], "role": "member"})
        members.append(user["id"])

    ids: list[str] = []
    lock = threading.Lock()
    started = time.time()

    def worker(worker_index: int, count: int):
        connection = Client(server.port, server.admin_key)
        made = []
        for index in range(count):
            body = {"name": f"bench key {worker_index}-{index}", "user_id": members[index % len(members)]}
            made.append(connection.call("POST", f"/organization/projects/{project}/api_keys", body)["id"])
        with lock:
            ids.extend(made)

    threads = [threading.Thread(target=worker, args=(i, keys // 8 + (1 if i < keys % 8 else 0))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - started
    ids.sort()  # ids sort in creation order
    print(f"==> seeded {len(ids):,} keys through the API in {elapsed:.1f} s ({len(ids) / elapsed:,.0f} keys/s)", flush=True)
    return {"project": project, "ids": ids}


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url: str, headers: dict, duration: int, connections: int, script: str | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    command.append(url)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        raise SystemExit(f"wrk saw error responses for {url}:\n{output}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))}
    for percentile in ("50", "99"):
        result[f"p{percentile}"] = parse_latency(re.search(rf"\s{percentile}%\s+(\S+)", output).group(1))
    return result


def measure(scenarios: list[tuple[str, str, dict, str | None]], port: int, duration: int, connections: int) -> dict:
    results = {}
    for name, path, headers, script in scenarios:
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, headers, 2, connections, script)  # warm-up
        results[name] = wrk(url, headers, duration, connections, script)
        r = results[name]
        print(f"    {name:<34} {r['rps']:>10,.0f} req/s   p50 {r['p50']:7.3f} ms   p99 {r['p99']:7.3f} ms", flush=True)
    return results


def table(results: dict, baseline: str) -> str:
    lines = [
        "| scenario | requests/s | p50 (ms) | p99 (ms) | throughput vs `/healthz` |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = r["rps"] / results[baseline]["rps"]
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {ratio:.0%} |")
    return "\n".join(lines)


def run_list(args, server: Server):
    seeded = seed_list(server, args.keys)
    project, ids = seeded["project"], seeded["ids"]
    deep = ids[min(len(ids) - 1, int(len(ids) * 0.9) - 1)]
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    base = f"/v1/organization/projects/{project}/api_keys"
    print(f"==> wrk -t1 -c{args.connections} -d{args.duration}s each (after a 2 s warm-up); deep page after key #{ids.index(deep) + 1:,}")
    results = measure(
        [
            ("GET /healthz", "/healthz", {}, None),
            ("list limit=20, first page", f"{base}?limit=20", auth, None),
            ("list limit=20, deep page", f"{base}?limit=20&after={deep}", auth, None),
            ("list limit=100, first page", f"{base}?limit=100", auth, None),
            ("list limit=100, deep page", f"{base}?limit=100&after={deep}", auth, None),
        ],
        server.port,
        args.duration,
        args.connections,
    )
    print()
    print(table(results, "GET /healthz"))
    print()
    health = results["GET /healthz"]
    checks = []
    for limit in (20, 100):
        first, deep_page = results[f"list limit={limit}, first page"], results[f"list limit={limit}, deep page"]
        ratio = deep_page["p50"] / first["p50"]
        checks.append((f"limit={limit}: deep page p50 / first page p50 = {ratio:.2f} (target <= 1.25)", ratio <= 1.25))
    share = results["list limit=20, first page"]["rps"] / health["rps"]
    checks.append((f"limit=20 first page throughput / /healthz = {share:.0%} (target >= 20%)", share >= 0.20))
    share_deep = results["list limit=20, deep page"]["rps"] / health["rps"]
    checks.append((f"limit=20 deep page throughput / /healthz = {share_deep:.0%} (target >= 20%)", share_deep >= 0.20))
    for text, met in checks:
        print(f"{'met ' if met else 'MISSED'}  {text}")
    return all(met for _, met in checks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["list"])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    print(f"==> {os.cpu_count()} cores; {subprocess.run(['uname', '-srm'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="keysmith-bench-") as directory:
        server = Server(args.bin, Path(directory))
        try:
            met = {"list": run_list}[args.scenario](args, server)
        finally:
            server.stop()
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
