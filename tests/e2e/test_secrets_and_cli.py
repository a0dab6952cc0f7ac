"""What must never happen to a key's plaintext, and the command-line tool's contract."""

import hashlib
import hmac
import re
import socket
import sqlite3
import subprocess
import time

import openai
import pytest

from conftest import ENGINE, Server, assert_one_clear_line, database_url, postgres_server_url, psql, run_cli


def database_bytes(server: Server) -> bytes:
    """Everything the database holds, as bytes: SQLite's files, or a pg_dump of the PostgreSQL database."""
    if ENGINE == "postgres":
        url = server.database_url.partition("?")[0]
        return subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True).stdout
    data = b""
    for suffix in ("", "-wal", "-shm"):
        path = server.database.with_name(server.database.name + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def database_rows(server: Server, sql: str) -> list[tuple]:
    if ENGINE == "postgres":
        name = server.database_url.partition("?")[0].rsplit("/", 1)[1]
        return [tuple(line.split("|")) for line in psql(sql, database=name).splitlines()]
    connection = sqlite3.connect(server.database)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_no_plaintext_in_the_database_or_the_log(tmp_path):
    # Trace logging: the most the server ever logs.
    server = Server(tmp_path, env={"KEYSMITH_LOG_LEVEL": "trace"})
    try:
        bootstrap = server.admin_key
        assert bootstrap, server.stdout()
        admin = server.client().admin.organization
        plaintexts = [bootstrap]

        project = admin.projects.create(name="secrets")
        account = admin.projects.service_accounts.create(project.id, name="bot")
        plaintexts.append(account.api_key.value)
        plaintexts.append(admin.projects.service_accounts.api_keys.create(account.id, project_id=project.id).value)
        plaintexts.append(admin.admin_api_keys.create(name="second admin").value)
        status, _, user = server.request("POST", "/organization/users", {"email": "s@example.com"})
        admin.projects.users.create(project.id, user_id=user["id"], role="member")
        status, _, key = server.request(
            "POST", f"/organization/projects/{project.id}/api_keys", {"name": "k", "user_id": user["id"]}
        )
        assert status == 200
        plaintexts.append(key["value"])
        status, _, rotated = server.request(
            "POST", f"/organization/projects/{project.id}/api_keys/{key['id']}/rotate", {"grace_period_seconds": 60}
        )
        assert status == 200
        plaintexts.append(rotated["value"])
        # Use every key where it works and where it is refused, so that anything logged about keys is in the log.
        for value in plaintexts:
            server.request_root("GET", "/v1/auth/check", key=value)
            server.request_root(
                "GET", "/v1/auth/check", key=value, headers={"X-Original-Method": "POST", "X-Original-URI": "/v1/x"}
            )
            server.request("POST", "/keys/verify", {"key": value})
            try:
                server.client(key=value).admin.organization.projects.list()
            except (openai.PermissionDeniedError, openai.AuthenticationError):
                pass
    finally:
        server.stop()

    stored = database_bytes(server)
    log = server.stderr()
    assert "listening on" in log, "the log was captured"
    for value in plaintexts:
        assert value.encode() not in stored, "a plaintext key is in the database"
        assert value not in log, "a plaintext key is in the server's log"
        # Not even the random part without its prefix.
        assert value.split("-")[-1].encode() not in stored

    # What the database holds instead: HMAC-SHA-256 of each key under the server secret.
    secret = bytes.fromhex(database_rows(server, "SELECT value FROM keysmith_settings WHERE name = 'hmac_secret'")[0][0])
    hashes = {
        row[0]
        for row in database_rows(
            server,
            "SELECT secret_hash FROM api_keys UNION SELECT previous_secret_hash FROM api_keys"
            " UNION SELECT secret_hash FROM admin_keys",
        )
    }
    assert {hmac.new(secret, value.encode(), hashlib.sha256).hexdigest() for value in plaintexts} <= hashes

    # The bootstrap key is printed once, on standard output only.
    assert server.stdout().count(bootstrap) == 1
    assert "will not be shown again" in server.stdout()
    # What to do next: the lines that point the SDKs at this server (its port is 0 here, so the notice says PORT).
    assert f"export OPENAI_ADMIN_KEY={bootstrap}" in server.stdout()
    assert "export OPENAI_BASE_URL=http://127.0.0.1:PORT/v1" in server.stdout()


def test_bootstrap_key_is_printed_only_on_first_start(tmp_path):
    first = Server(tmp_path)
    first.stop()
    assert first.admin_key
    second = Server(tmp_path)
    try:
        assert second.admin_key is None
        assert second.stdout() == ""
        # The first start's key still works after a restart.
        assert second.client(key=first.admin_key).admin.organization.projects.list().data == []
    finally:
        second.stop()


def test_admin_keys_create_prints_only_the_key(tmp_path):
    database = database_url(tmp_path)
    result = run_cli("admin-keys", "create", "--name", "recovery", "--database", database)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    assert key.startswith("sk-admin-")
    assert key not in result.stderr
    # Two runs, two different keys.
    again = run_cli("admin-keys", "create", "--name", "recovery 2", "--database", database)
    assert again.returncode == 0 and again.stdout.strip() != key


def test_cli_key_works_against_the_server_and_organizations_are_separate(tmp_path):
    database = database_url(tmp_path)
    first = run_cli("admin-keys", "create", "--name", "ops", "--database", database)
    assert first.returncode == 0, first.stderr
    organization = run_cli("organizations", "create", "--name", "Tenant B", "--database", database)
    assert organization.returncode == 0, organization.stderr
    organization_id = organization.stdout.strip()
    assert organization_id.startswith("org-") and "\n" not in organization_id
    tenant_key = run_cli("admin-keys", "create", "--name", "b", "--organization", organization_id, "--database", database)
    assert tenant_key.returncode == 0, tenant_key.stderr

    server = Server(tmp_path)  # the same database
    try:
        assert server.admin_key is None, "a database with an organization is not bootstrapped again"
        default_admin = server.client(key=first.stdout.strip()).admin.organization
        tenant_admin = server.client(key=tenant_key.stdout.strip()).admin.organization
        project = default_admin.projects.create(name="default tenant's")
        assert [p.id for p in default_admin.projects.list()] == [project.id]
        assert list(tenant_admin.projects.list()) == []
        with pytest.raises(openai.NotFoundError):
            tenant_admin.projects.retrieve(project.id)
        # The audit log says which changes the offline command made, and each tenant sees only its own.
        made_offline = [event for event in default_admin.audit_logs.list() if event.type == "tenant.admin_api_key.created"]
        assert len(made_offline) == 1
        assert made_offline[0].actor.type == "session"
        assert made_offline[0].actor.session.user.id == "keysmith-cli"
        assert made_offline[0].actor.session.user_agent == "keysmith admin-keys create"
        assert [event.type for event in tenant_admin.audit_logs.list()] == ["tenant.admin_api_key.created"]
        assert [event.actor.type for event in default_admin.audit_logs.list(event_types=["project.created"])] == ["api_key"]
    finally:
        server.stop()

    unknown = run_cli("admin-keys", "create", "--name", "x", "--organization", "org-missing", "--database", database)
    assert unknown.returncode != 0
    assert unknown.stdout == ""
    assert "org-missing" in unknown.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["serve", "--help"],
        ["admin-keys", "--help"],
        ["admin-keys", "create", "--help"],
        ["organizations", "--help"],
        ["organizations", "create", "--help"],
        ["projects", "--help"],
        ["keys", "--help"],
        ["keys", "create", "--help"],
        ["invites", "create", "--help"],
        ["migrate", "--help"],
        ["backup", "--help"],
    ],
)
def test_every_command_has_help_that_reads_well_at_80_columns(arguments):
    result = run_cli(*arguments, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "USAGE" in result.stdout.upper()
    lines = result.stdout.splitlines()
    # ArgumentParser wraps everything but the synopsis to the terminal's width; paragraphs wrap whole, so no line
    # ends mid-phrase only to be followed by a stub (the top-level help once broke "and API" / "keys) so that").
    for line in lines:
        if not line.startswith("USAGE:"):
            assert len(line) <= 80, line
    for before, after in zip(lines, lines[1:]):
        if before.strip() and after.strip() and not before.startswith("USAGE:"):
            assert len(before) >= 40 or before.rstrip().endswith((".", ":", ")")) or after.startswith(" "), (before, after)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", result.stdout)


def test_bad_database_url_is_one_clear_line():
    result = run_cli("serve", "--port", "0", "--database", "mysql://nope")
    assert_one_clear_line(result, "mysql://nope")


def test_unreachable_postgres_is_one_clear_line_and_hides_the_password():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_cli("serve", "--port", "0", "--database", f"postgres://keysmith:hunter2@127.0.0.1:{port}/keysmith", timeout=30)
    assert_one_clear_line(result, "database is unavailable", f"127.0.0.1:{port}")
    assert "hunter2" not in result.stderr
    bad = run_cli("serve", "--port", "0", "--database", "postgres://keysmith:hunter2@127.0.0.1/keysmith?sslmode=sometimes")
    assert_one_clear_line(bad, "sslmode")
    assert "hunter2" not in bad.stderr


@pytest.mark.postgres_only
def test_migrate_applies_without_serving_and_refuses_a_newer_database(tmp_path):
    database = database_url(tmp_path)
    first = run_cli("migrate", "--database", database)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [
        "0001_create_schema", "0002_add_key_rotation", "0003_create_change_log", "0004_users_invites_audit_log", "0005_index_audit_log_times",
        "0006_order_change_log_by_transaction", "0007_record_model_usage", "0008_project_model_permissions", "0009_project_rate_limits",
    ]
    again = run_cli("migrate", "--database", database)
    assert again.returncode == 0 and again.stdout == ""
    # A newer Keysmith migrated it: this one refuses to migrate or serve it.
    name = database.partition("?")[0].rsplit("/", 1)[1]
    psql("INSERT INTO keysmith_migrations (name, applied_at) VALUES ('9999_from_the_future', 0)", database=name)
    newer = run_cli("migrate", "--database", database)
    assert_one_clear_line(newer, "9999_from_the_future", "newer Keysmith")
    serve = run_cli("serve", "--port", "0", "--database", database)
    assert_one_clear_line(serve, "9999_from_the_future")


@pytest.mark.sqlite_only
def test_unreadable_database_is_one_clear_line(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 400)
    result = run_cli("serve", "--port", "0", "--database", f"sqlite:{garbage}")
    assert_one_clear_line(result, str(garbage))
    missing = run_cli("serve", "--port", "0", "--database", "sqlite:///nonexistent-folder/k.sqlite")
    assert_one_clear_line(missing, "/nonexistent-folder/k.sqlite")


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--database", f"sqlite:{tmp_path / 'k.sqlite'}")
    assert_one_clear_line(result, "in use")


@pytest.mark.sqlite_only
def test_environment_configures_serve(tmp_path):
    server = Server(
        tmp_path,
        env={"KEYSMITH_HOST": "127.0.0.1", "KEYSMITH_DATABASE_URL": "sqlite::memory:"},
    )
    try:
        # --database on the command line wins over KEYSMITH_DATABASE_URL; the file exists.
        assert server.database.exists()
    finally:
        server.stop()


def test_short_secret_is_refused(tmp_path):
    result = run_cli("serve", "--port", "0", "--database", f"sqlite:{tmp_path / 'k.sqlite'}", env={"KEYSMITH_SECRET": "short"})
    assert_one_clear_line(result, "KEYSMITH_SECRET")


@pytest.mark.parametrize("how", [{"args": ["--no-bootstrap-admin-key"]}, {"env": {"KEYSMITH_BOOTSTRAP_ADMIN_KEY": "false"}}])
def test_a_first_start_without_an_admin_key_prints_none_and_the_cli_makes_the_first(tmp_path, how):
    server = Server(tmp_path, **how)
    try:
        assert server.admin_key is None
        assert "sk-admin-" not in server.stdout() + server.stderr()
        made = run_cli("admin-keys", "create", "--name", "ops", "--database", server.database_url)
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        # The running server applies the offline command's key from the change log.
        deadline = time.time() + 5
        while server.request("GET", "/organization/projects", key=key)[0] != 200:
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        server.stop()


def test_a_bad_bootstrap_setting_is_one_clear_line(tmp_path):
    result = run_cli("serve", "--port", "0", "--database", database_url(tmp_path), env={"KEYSMITH_BOOTSTRAP_ADMIN_KEY": "maybe"})
    assert_one_clear_line(result, "KEYSMITH_BOOTSTRAP_ADMIN_KEY")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_the_commands(shell):
    result = run_cli("--generate-completion-script", shell)
    assert result.returncode == 0, result.stderr
    for command in (
        "serve", "migrate", "backup", "admin-keys", "organizations", "projects", "keys", "service-accounts",
        "project-users", "users", "invites", "audit-logs", "verify",
    ):
        assert command in result.stdout
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=result.stdout, text=True).returncode == 0
