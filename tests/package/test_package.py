"""What scripts/package made (dist/): a binary that needs no Swift toolchain, a tarball, and a Debian package that
installs, configures its system user, and removes cleanly. scripts/test runs scripts/package first."""

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
VERSION = re.search(r'current = "([^"]+)"', (ROOT / "Sources/KeysmithCore/Version.swift").read_text()).group(1)
# No toolchain on the library path, no PATH beyond the system's.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"}


def only(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in dist/, found {found} (run scripts/package)"
    return found[0]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tarball")
    with tarfile.open(only(f"keysmith-{VERSION}-linux-*.tar.gz")) as archive:
        archive.extractall(directory, filter="data")
    (inner,) = directory.iterdir()
    return inner


def test_the_tarball_holds_the_binary_unit_configuration_and_docs(unpacked):
    assert sorted(path.name for path in unpacked.iterdir()) == [
        "README.md",
        "keysmith",
        "keysmith.default",
        "keysmith.service",
        "openapi.yaml",
    ]
    assert os.access(unpacked / "keysmith", os.X_OK)


def test_the_binary_links_no_swift_library(unpacked):
    linked = subprocess.run(["ldd", str(unpacked / "keysmith")], capture_output=True, text=True, check=True).stdout
    assert "not found" not in linked, linked
    for library in ("libswift", "libFoundation", "libdispatch", "libBlocksRuntime", "lib_FoundationICU", "/swift"):
        assert library not in linked, linked


def test_the_binary_runs_and_serves_without_a_toolchain(unpacked, tmp_path):
    version = subprocess.run([str(unpacked / "keysmith"), "--version"], capture_output=True, text=True, env=CLEAN_ENV)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == VERSION

    stdout, stderr = (tmp_path / "stdout.log").open("w"), (tmp_path / "stderr.log").open("w")
    server = subprocess.Popen(
        [str(unpacked / "keysmith"), "serve", "--port", "0", "--database", f"sqlite:{tmp_path / 'k.sqlite'}"],
        stdout=stdout,
        stderr=stderr,
        env=CLEAN_ENV,
    )
    try:
        deadline = time.time() + 30
        port = None
        while port is None:
            match = re.search(r"is listening on ([0-9.]+):(\d+)", (tmp_path / "stderr.log").read_text())
            if match:
                port = int(match.group(2))
            elif server.poll() is not None or time.time() > deadline:
                raise AssertionError((tmp_path / "stderr.log").read_text())
            else:
                time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        # A write through the admin API: JSON decoding (Foundation, linked statically), the store, the response.
        key = re.search(r"sk-admin-[A-Za-z0-9]+", (tmp_path / "stdout.log").read_text()).group(0)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/organization/projects", data=b'{"name": "packaged"}', method="POST"
        )
        request.add_header("Authorization", f"Bearer {key}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["name"] == "packaged"
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dpkg") is None, reason="installing a package needs root and dpkg")
def test_the_debian_package_installs_configures_and_purges():
    package = only("keysmith_*.deb")
    fields = subprocess.run(["dpkg-deb", "--field", str(package), "Package", "Version"], capture_output=True, text=True, check=True)
    assert fields.stdout.split() == ["Package:", "keysmith", "Version:", VERSION]
    if subprocess.run(["dpkg", "-s", "keysmith"], capture_output=True).returncode == 0:
        pytest.fail("keysmith is installed on this machine already; this test would remove it")
    subprocess.run(["dpkg", "-i", str(package)], capture_output=True, text=True, check=True)
    try:
        assert subprocess.run(["/usr/bin/keysmith", "--version"], capture_output=True, text=True, env=CLEAN_ENV).stdout.strip() == VERSION
        user = subprocess.run(["getent", "passwd", "keysmith"], capture_output=True, text=True, check=True).stdout
        assert ":/var/lib/keysmith:" in user and user.rstrip().endswith("nologin")
        state = Path("/var/lib/keysmith")
        assert state.is_dir() and state.owner() == "keysmith" and oct(state.stat().st_mode & 0o777) == "0o750"
        assert "KEYSMITH_BOOTSTRAP_ADMIN_KEY=false" in Path("/etc/default/keysmith").read_text()
        unit = Path("/lib/systemd/system/keysmith.service")
        assert "User=keysmith" in unit.read_text()
        if shutil.which("systemd-analyze"):
            verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
            assert verified.returncode == 0, verified.stderr

        # As the service runs it (as the keysmith user, configured by /etc/default/keysmith), then the first admin key
        # made as the configuration file says.
        database = "sqlite:///var/lib/keysmith/keysmith.sqlite"
        made = subprocess.run(
            ["runuser", "-u", "keysmith", "--", "/usr/bin/keysmith", "admin-keys", "create", "--name", "ops", "--database", database],
            capture_output=True,
            text=True,
            env=CLEAN_ENV,
        )
        assert made.returncode == 0, made.stderr
        assert re.fullmatch(r"sk-admin-[A-Za-z0-9]+\n", made.stdout)
        assert (state / "keysmith.sqlite").owner() == "keysmith"
    finally:
        subprocess.run(["dpkg", "--purge", "keysmith"], capture_output=True, text=True, check=True)
    assert not Path("/usr/bin/keysmith").exists()
    assert not Path("/var/lib/keysmith").exists()
    assert subprocess.run(["getent", "passwd", "keysmith"], capture_output=True).returncode != 0
