"""Backups taken while the server writes, and a crash in the middle of writes: nothing acknowledged is lost, nothing
half-made is left."""

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import Server, assert_one_clear_line, run_cli


class KeyMaker(threading.Thread):
    """Creates user keys (and, every fifth, a service account with its key) as fast as one connection can, keeping
    every key whose creation was acknowledged with 200, until told to stop or the server goes away."""

    def __init__(self, base_url: str, admin_key: str, project: str, user: str):
        super().__init__(daemon=True)
        self.base_url, self.admin_key, self.project, self.user = base_url, admin_key, project, user
        self.acknowledged: dict[str, str] = {}  # key id -> plaintext
        self.accounts: set[str] = set()
        self.stop = threading.Event()

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            f"{self.base_url}/organization/projects/{self.project}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            return json.loads(response.read())

    def run(self):
        count = 0
        while not self.stop.is_set():
            count += 1
            try:
                if count % 5 == 0:
                    account = self.post("/service_accounts", {"name": f"bot {count}"})
                    self.accounts.add(account["id"])
                    self.acknowledged[account["api_key"]["id"]] = account["api_key"]["value"]
                else:
                    key = self.post("/api_keys", {"name": f"key {count}", "user_id": self.user})
                    self.acknowledged[key["id"]] = key["value"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return


def setup_project(server: Server) -> tuple[str, str]:
    admin = server.client().admin.organization
    project = admin.projects.create(name="durable")
    status, _, user = server.request("POST", "/organization/users", {"email": "durable@example.com"})
    assert status == 200
    admin.projects.users.create(project.id, user_id=user["id"], role="member")
    return project.id, user["id"]


def all_keys(server: Server, admin_key: str, project: str) -> list:
    return list(server.client(key=admin_key).admin.organization.projects.api_keys.list(project, owner_project_access="any", limit=100))


def check(server: Server, key: str) -> int:
    return server.request_root("GET", "/v1/auth/check", key=key)[0]


@pytest.mark.sqlite_only
def test_backup_while_keys_are_created_restores_every_key(tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    server = Server(live)
    admin_key = server.admin_key
    try:
        project, user = setup_project(server)
        makers = [KeyMaker(server.base_url, admin_key, project, user) for _ in range(3)]
        for maker in makers:
            maker.start()
        time.sleep(1.0)
        backup = tmp_path / "backup.sqlite"
        result = run_cli("backup", "--database", f"sqlite:{server.database}", "--to", str(backup))
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        time.sleep(0.5)
        for maker in makers:
            maker.stop.set()
            maker.join()
    finally:
        server.stop()
    created = {key_id: value for maker in makers for key_id, value in maker.acknowledged.items()}
    assert len(created) > 50
    # One file, consistent on its own: no -wal beside it.
    assert not (tmp_path / "backup.sqlite-wal").exists()
    connection = sqlite3.connect(backup)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()

    # Restore: the backup becomes a new server's database.
    restored_directory = tmp_path / "restored"
    restored_directory.mkdir()
    shutil.copy(backup, restored_directory / "keysmith.sqlite")
    restored = Server(restored_directory)
    try:
        assert restored.admin_key is None, "a restored database is not bootstrapped again"
        keys = all_keys(restored, admin_key, project)
        assert 0 < len(keys) <= len(created)
        for key in keys:
            assert key.id in created, "the backup holds only keys that were created"
            assert check(restored, created[key.id]) == 200, key.id
    finally:
        restored.stop()

    # The copy is never written over, and only SQLite files can be copied this way.
    again = run_cli("backup", "--database", f"sqlite:{live / 'keysmith.sqlite'}", "--to", str(backup))
    assert_one_clear_line(again, "already exists")
    memory = run_cli("backup", "--database", "sqlite::memory:", "--to", str(tmp_path / "x.sqlite"))
    assert_one_clear_line(memory, "sqlite:PATH")


def test_kill_9_loses_no_acknowledged_key_and_leaves_nothing_half_made(tmp_path):
    server = Server(tmp_path)
    admin_key = server.admin_key
    project, user = setup_project(server)
    makers = [KeyMaker(server.base_url, admin_key, project, user) for _ in range(4)]
    for maker in makers:
        maker.start()
    time.sleep(1.5)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    for maker in makers:
        maker.join(timeout=30)
    acknowledged = {key_id: value for maker in makers for key_id, value in maker.acknowledged.items()}
    accounts = set().union(*(maker.accounts for maker in makers))
    assert len(acknowledged) > 50

    if server.database_url.startswith("sqlite"):
        connection = sqlite3.connect(server.database)
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.close()

    restarted = Server(tmp_path)
    try:
        keys = all_keys(restarted, admin_key, project)
        listed = {key.id for key in keys}
        missing = set(acknowledged) - listed
        assert not missing, f"{len(missing)} acknowledged keys were lost"
        for key_id, value in acknowledged.items():
            assert check(restarted, value) == 200, key_id
        # A key whose response the crash cut off is whole or absent: each listed key has its owner.
        for key in keys:
            assert key.owner.type in ("user", "service_account")
            assert (key.owner.user or key.owner.service_account) is not None
        # Every service account that exists has the key it was created with.
        admin = restarted.client(key=admin_key).admin.organization
        owners = {key.owner.service_account.id for key in keys if key.owner.type == "service_account"}
        for account in admin.projects.service_accounts.list(project, limit=100):
            assert account.id in owners, f"service account {account.id} lost its key"
        assert accounts <= {account.id for account in admin.projects.service_accounts.list(project, limit=100)}
    finally:
        restarted.stop()
