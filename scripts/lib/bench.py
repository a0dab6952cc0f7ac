"""Keysmith's benchmarks: seed a real release server over HTTP, then measure it with wrk beside GET /healthz."""

import argparse
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
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

    ids: list[str] = []
    values: list[str] = []
    lock = threading.Lock()
    started = time.time()

    def worker(worker_index: int, count: int):
        connection = Client(server.port, server.admin_key)
        made, secrets = [], []
        for index in range(count):
            body = {"name": f"bench key {worker_index}-{index}", "user_id": members[index % len(members)]}
            created = connection.call("POST", f"/organization/projects/{project}/api_keys", body)
            made.append(created["id"])
            secrets.append(created["value"])
        with lock:
            ids.extend(made)
            values.extend(secrets)

    threads = [threading.Thread(target=worker, args=(i, keys // 8 + (1 if i < keys % 8 else 0))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - started
    ids.sort()  # ids sort in creation order
    print(f"==> seeded {len(ids):,} keys through the API in {elapsed:.1f} s ({len(ids) / elapsed:,.0f} keys/s)", flush=True)
    return {"project": project, "ids": ids, "values": values}


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
    result = {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))}
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
) -> dict:
    """Runs the scenarios in interleaved rounds (each after a 2 s warm-up) and reports, per scenario, the median of
    each figure over the rounds: a burst of noise from other work on the machine then hits every scenario alike
    and moves no median far. Scenarios named in `expect_status` may answer with errors (401s)."""
    runs: dict[str, list[dict]] = {name: [] for name, *_ in scenarios}
    for round_index in range(rounds):
        for name, path, headers, script in scenarios:
            url = f"http://127.0.0.1:{port}{path}"
            allow = name in expect_status
            wrk(url, headers, 2, connections, script, allow)  # warm-up
            result = wrk(url, headers, duration, connections, script, allow)
            runs[name].append(result)
            print(
                f"    round {round_index + 1}: {name:<36} {result['rps']:>10,.0f} req/s   "
                f"p50 {result['p50']:7.3f} ms   p99 {result['p99']:7.3f} ms",
                flush=True,
            )
    return {
        name: {metric: statistics.median(result[metric] for result in results) for metric in ("rps", "p50", "p99")}
        for name, results in runs.items()
    }


def table(results: dict, baseline: str) -> str:
    lines = [
        f"| scenario | requests/s | p50 (ms) | p99 (ms) | throughput vs {baseline} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        ratio = r["rps"] / results[baseline]["rps"]
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {ratio:.0%} |")
    return "\n".join(lines)


def run_list(args, server: Server):
    seeded = seed_keys(server, args.keys)
    project, ids = seeded["project"], seeded["ids"]
    deep = ids[min(len(ids) - 1, int(len(ids) * 0.9) - 1)]
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    base = f"/v1/organization/projects/{project}/api_keys"
    print(
        f"==> wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds (medians of each figure reported); "
        f"deep page after key #{ids.index(deep) + 1:,}"
    )
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
        args.rounds,
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


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def well_formed_unknown_key() -> str:
    """A key with Keysmith's format and a valid checksum that was never issued: it passes the checksum and costs
    a lookup, unlike a malformed key."""
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


def run_verify(args, server: Server):
    seeded = seed_keys(server, args.keys)
    valid = seeded["values"][: args.cycle]
    directory = Path(tempfile.mkdtemp(prefix="keysmith-bench-lua-"))
    script = directory / "cycle.lua"
    script.write_text(LUA_CYCLE)
    valid_file = directory / "valid.txt"
    valid_file.write_text("\n".join(valid) + "\n")
    mixed = [key for pair in zip(valid[: args.cycle // 2], [well_formed_unknown_key() for _ in range(args.cycle // 2)]) for key in pair]
    mixed_file = directory / "mixed.txt"
    mixed_file.write_text("\n".join(mixed) + "\n")
    print(
        f"==> wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} interleaved rounds (medians of each figure reported); "
        f"cycling through {len(valid):,} valid keys, then {len(mixed) // 2:,} valid + {len(mixed) // 2:,} well-formed unknown keys"
    )
    # The baseline runs the same Lua script (and so sends the same headers): wrk's per-request Lua work shares the
    # machine's two cores with the server, and would otherwise count against the check alone.
    results = measure(
        [
            ("GET /healthz", "/healthz", {}, None),
            ("GET /healthz, same Lua script", "/healthz", {}, f"{script} {valid_file}"),
            ("check, valid keys", "/v1/auth/check", {}, f"{script} {valid_file}"),
            ("check, half unknown keys", "/v1/auth/check", {}, f"{script} {mixed_file}"),
        ],
        server.port,
        args.duration,
        args.connections,
        args.rounds,
        expect_status={"check, half unknown keys"},
    )
    print()
    print(table(results, "GET /healthz, same Lua script"))
    print()
    plain = results["GET /healthz"]
    print(
        f"(against plain /healthz: valid keys {results['check, valid keys']['rps'] / plain['rps']:.0%}, "
        f"half unknown {results['check, half unknown keys']['rps'] / plain['rps']:.0%})"
    )
    health = results["GET /healthz, same Lua script"]
    valid_result, mixed_result = results["check, valid keys"], results["check, half unknown keys"]
    checks = [
        (f"valid keys: throughput / /healthz = {valid_result['rps'] / health['rps']:.0%} (target >= 80%)", valid_result["rps"] / health["rps"] >= 0.80),
        (f"valid keys: p99 = {valid_result['p99']:.2f} ms at {args.connections} connections (target <= 5 ms)", valid_result["p99"] <= 5.0),
        (f"half unknown: throughput / /healthz = {mixed_result['rps'] / health['rps']:.0%} (target >= 70%)", mixed_result["rps"] / health["rps"] >= 0.70),
    ]
    for text, met in checks:
        print(f"{'met ' if met else 'MISSED'}  {text}")
    return all(met for _, met in checks)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["list", "verify"])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cycle", type=int, default=10_000, help="verify: how many keys the wrk script cycles through")
    args = parser.parse_args()
    print(f"==> {os.cpu_count()} cores; {subprocess.run(['uname', '-srm'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="keysmith-bench-") as directory:
        server = Server(args.bin, Path(directory))
        try:
            met = {"list": run_list, "verify": run_verify}[args.scenario](args, server)
        finally:
            server.stop()
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
