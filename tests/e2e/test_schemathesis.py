"""Schemathesis against the live server with the project's openapi.yaml and an admin key: generated requests for
every operation under /v1, a fixed seed and a bounded number of examples. No 5xx, no response that violates its
schema or content type, no undocumented status code."""

import os
import subprocess
import sys
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(shared_server, tmp_path):
    binary = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(binary),
            "run",
            str(SPEC),
            "--url",
            shared_server.base_url,
            "--header",
            f"Authorization: Bearer {shared_server.admin_key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20261127",
            "--max-examples",
            "20",
            "--workers",
            "1",
            # /healthz, /readyz and /metrics live outside /v1 (their own `servers`), which --url replaces; the
            # operations tests cover them.
            "--exclude-path-regex",
            "^/(healthz|readyz|metrics)$",
            "--report-dir",
            str(tmp_path),
            # Nothing carried over between runs (examples or replayed crashes): the same seed, the same run.
            "--generation-database",
            "none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
