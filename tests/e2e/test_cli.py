"""The remote `keysmith` commands, run as an operator would against a real server: tables for people, `--json` for
scripts (the API's own objects), and the documented exit codes (0, 1 API error, 2 usage, 3 cannot connect)."""

import json
import os
import re
import shlex
import socket
import subprocess

import pytest

from conftest import Server, keysmith_bin, run_cli


def cli(server, *args, stdin=None, env=None):
    """Runs `keysmith ARGS` against `server`, configured as the docs say: KEYSMITH_URL and KEYSMITH_ADMIN_KEY."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KEYSMITH_", "OPENAI_"))}
    environment.update({"KEYSMITH_URL": server.base_url, "KEYSMITH_ADMIN_KEY": server.admin_key, "COLUMNS": "200"})
    environment.update(env or {})
    return subprocess.run([keysmith_bin(), *args], input=stdin, capture_output=True, text=True, env=environment, timeout=60)


def ok(result):
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def table(text):
    """A table's rows as lists of cells: columns are separated by two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def fields(text):
    """A `field  value` listing as a dict."""
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) if "  " in line.strip() else (line.strip(), "") for line in text.splitlines() if line.strip())


def check(server, key):
    """A gateway's check of a chat completion (the scoped keys here hold api.model.request): a scoped key is only let
    through on a check that says what the original request is."""
    original = {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"}
    status, _, _ = server.request_root("GET", "/v1/auth/check", key=key, headers=original)
    return status


def test_a_key_from_project_to_revocation(server):
    project = fields(ok(cli(server, "projects", "create", "--name", "Gateway")))
    assert project["name"] == "Gateway" and project["status"] == "active" and project["created"] == "just now"
    project_id = project["id"]

    user = fields(ok(cli(server, "users", "create", "--email", "ada@example.com", "--name", "Ada")))
    assert user["email"] == "ada@example.com" and user["role"] == "reader"
    member = fields(ok(cli(server, "project-users", "add", "--project", project_id, "--user", "ada@example.com")))
    assert member["id"] == user["id"] and member["role"] == "member"

    created = cli(
        server, "keys", "create", "--project", project_id, "--user", "ada@example.com", "--name", "laptop",
        "--scopes", "api.model.request,files.read", "--expires-in", "30d",
    )
    shown = fields(ok(created))
    plaintext = shown["key"]
    assert plaintext.startswith("sk-proj-")
    assert shown["owner"] == "ada@example.com" and shown["scopes"] == "api.model.request,files.read"
    assert shown["expires"] == "in 30 days" and shown["last used"] == "never"
    # The plaintext appears once, on standard output, with a one-line warning on standard error.
    assert created.stdout.count(plaintext) == 1 and plaintext not in created.stderr
    assert created.stderr.strip() == "keysmith: store this key now: it is shown only this once."
    assert check(server, plaintext) == 200

    # The table: a header and one row, the key redacted and short, times as people read them.
    rows = table(ok(cli(server, "keys", "list", "--project", project_id)))
    assert rows[0] == ["ID", "NAME", "KEY", "OWNER", "SCOPES", "LAST USED", "EXPIRES", "CREATED"]
    assert len(rows) == 2
    assert rows[1][0] == shown["id"] and rows[1][1] == "laptop"
    assert rows[1][2] == "sk-proj-…" + plaintext[-4:]
    assert rows[1][5:] == ["never", "in 30 days", "just now"]
    # --json: the API's own objects, exactly as the list endpoint gives them, as one JSON document.
    listed = json.loads(ok(cli(server, "keys", "list", "--project", project_id, "--json")))
    _, _, api = server.request("GET", f"/organization/projects/{project_id}/api_keys")
    assert listed == api["data"]
    assert plaintext not in json.dumps(listed)

    # Rotation with a grace period: a new secret, printed once; the old one keeps verifying for now.
    rotated = cli(server, "keys", "rotate", shown["id"], "--project", project_id, "--grace", "1h", "--json")
    body = json.loads(ok(rotated))
    assert body["id"] == shown["id"] and body["value"] != plaintext and body["previous_secret_expires_at"] is not None
    assert "store this key now" in rotated.stderr
    assert check(server, body["value"]) == 200 and check(server, plaintext) == 200

    # verify reads the key from standard input with "-": valid is 0, anything else 1.
    verified = fields(ok(cli(server, "verify", "-", stdin=body["value"] + "\n")))
    assert verified["valid"] == "yes" and verified["code"] == "valid" and verified["id"] == shown["id"]

    updated = fields(ok(cli(server, "keys", "update", shown["id"], "--project", project_id, "--scopes", "")))
    assert updated["scopes"] == "all"

    deleted = ok(cli(server, "keys", "delete", shown["id"], "--project", project_id))
    assert fields(deleted) == {"deleted": shown["id"]}
    assert check(server, body["value"]) == 401 and check(server, plaintext) == 401
    refused = cli(server, "verify", "-", stdin=body["value"])
    assert refused.returncode == 1
    assert fields(refused.stdout)["code"] == "revoked"
    assert refused.stderr.strip() == "keysmith: error: the key is not valid: revoked"

    # The audit log says who did it.
    entries = table(ok(cli(server, "audit-logs", "list", "--type", "api_key.deleted", "--since", "1h")))
    assert entries[0] == ["WHEN", "TYPE", "ACTOR", "RESOURCE", "PROJECT"]
    assert len(entries) == 2 and entries[1][1] == "api_key.deleted" and entries[1][3] == shown["id"]


def test_objects_in_json_are_the_apis(server):
    project = json.loads(ok(cli(server, "projects", "create", "--name", "P", "--external-key-id", "ext-1", "--json")))
    _, _, api = server.request("GET", f"/organization/projects/{project['id']}")
    assert project == api
    assert json.loads(ok(cli(server, "projects", "show", project["id"], "--json"))) == api
    renamed = json.loads(ok(cli(server, "projects", "rename", project["id"], "--name", "Q", "--json")))
    assert renamed["name"] == "Q"

    account = json.loads(ok(cli(server, "service-accounts", "create", "--project", project["id"], "--name", "bot", "--json")))
    assert account["object"] == "organization.project.service_account"
    assert account["api_key"]["value"].startswith("sk-svcacct-")
    accounts = json.loads(ok(cli(server, "service-accounts", "list", "--project", project["id"], "--json")))
    assert [a["id"] for a in accounts] == [account["id"]] and "api_key" not in accounts[0]
    assert json.loads(ok(cli(server, "service-accounts", "show", account["id"], "--project", project["id"], "--json")))["name"] == "bot"
    assert check(server, account["api_key"]["value"]) == 200
    renamed_account = fields(ok(cli(server, "service-accounts", "update", account["id"], "--project", project["id"], "--name", "robot", "--role", "owner")))
    assert renamed_account["name"] == "robot" and renamed_account["role"] == "owner"
    added = cli(server, "service-accounts", "add-key", account["id"], "--project", project["id"], "--name", "second", "--scopes", "api.model.request")
    second = fields(ok(added))
    assert second["key"].startswith("sk-svcacct-") and second["scopes"] == "api.model.request"
    assert "store this key now" in added.stderr
    assert check(server, second["key"]) == 200
    ok(cli(server, "service-accounts", "delete", account["id"], "--project", project["id"]))
    assert check(server, account["api_key"]["value"]) == 401 and check(server, second["key"]) == 401

    archived = json.loads(ok(cli(server, "projects", "archive", project["id"], "--json")))
    assert archived["status"] == "archived"
    assert json.loads(ok(cli(server, "projects", "list", "--json"))) == []
    assert [p["id"] for p in json.loads(ok(cli(server, "projects", "list", "--archived", "--json")))] == [project["id"]]


def test_people_invites_and_admin_keys(server):
    project = json.loads(ok(cli(server, "projects", "create", "--name", "P", "--json")))
    invite = fields(ok(cli(server, "invites", "create", "--email", "lin@example.com", "--project", f"{project['id']}:owner")))
    assert invite["status"] == "pending" and invite["projects"] == f"{project['id']} (owner)"
    rows = table(ok(cli(server, "invites", "list")))
    assert rows[1][:4] == [invite["id"], "lin@example.com", "reader", "pending"]
    user = fields(ok(cli(server, "invites", "accept", invite["id"], "--name", "Lin")))
    assert user["email"] == "lin@example.com" and user["name"] == "Lin"
    assert fields(ok(cli(server, "invites", "show", invite["id"])))["status"] == "accepted"
    members = table(ok(cli(server, "project-users", "list", "--project", project["id"])))
    assert members[1][:4] == [user["id"], "lin@example.com", "Lin", "owner"]

    assert fields(ok(cli(server, "users", "update", "lin@example.com", "--role", "owner")))["role"] == "owner"
    assert fields(ok(cli(server, "users", "show", user["id"])))["role"] == "owner"
    assert [row[1] for row in table(ok(cli(server, "users", "list", "--email", "lin@example.com")))[1:]] == ["lin@example.com"]
    ok(cli(server, "project-users", "remove", "--project", project["id"], "--user", user["id"]))
    # The organization keeps an owner: the rule's message comes through as it is, with its code and param.
    refused = cli(server, "users", "delete", "lin@example.com")
    assert refused.returncode == 1 and "last owner" in refused.stderr and "(400, last_owner, param user_id)" in refused.stderr
    ok(cli(server, "users", "create", "--email", "boss@example.com", "--role", "owner"))
    assert fields(ok(cli(server, "users", "delete", "lin@example.com"))) == {"deleted": user["id"]}

    other = fields(ok(cli(server, "invites", "create", "--email", "max@example.com", "--no-project")))
    assert other["projects"] == "none"
    ok(cli(server, "invites", "delete", other["id"]))

    # Admin keys through the API: create (printed once), list, delete; the new key works on its own.
    admin = fields(ok(cli(server, "admin-keys", "create", "--name", "ops", "--expires-in", "90d")))
    assert admin["key"].startswith("sk-admin-") and admin["expires"] == "in 3 months"
    listed = table(ok(cli(server, "admin-keys", "list")))
    assert [row[1] for row in listed[1:]] == ["Bootstrap admin key", "ops"]
    assert ok(cli(server, "projects", "list", env={"KEYSMITH_ADMIN_KEY": admin["key"]}))
    ok(cli(server, "admin-keys", "delete", admin["id"]))
    gone = cli(server, "projects", "list", env={"KEYSMITH_ADMIN_KEY": admin["key"]})
    assert gone.returncode == 1 and "invalid_api_key" in gone.stderr


def test_lists_show_a_page_and_say_when_more_follow(server):
    for index in range(23):
        status, _, _ = server.request("POST", "/organization/projects", {"name": f"P{index:02}"})
        assert status == 200
    first = cli(server, "projects", "list")
    assert len(table(ok(first))) == 21
    assert first.stderr.strip() == "(more follow: --all lists every one)"
    every = cli(server, "projects", "list", "--all")
    assert [row[1] for row in table(ok(every))[1:]] == [f"P{index:02}" for index in range(23)]
    assert every.stderr == ""
    assert len(json.loads(ok(cli(server, "projects", "list", "--all", "--json")))) == 23


def test_exit_codes(server, tmp_path):
    # 1: an error the API answered, its message on standard error, nothing on standard output.
    missing = cli(server, "projects", "show", "proj_missing")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == "keysmith: error: No such project: proj_missing (404)"
    bad = cli(server, "projects", "create", "--name", "")
    assert bad.returncode == 1 and "param name" in bad.stderr

    # 2: usage errors, before any request.
    for arguments, env in [
        (["projects", "list", "--bogus"], {}),
        (["keys", "create", "--project", "p", "--user", "u", "--expires-in", "soon"], {}),
        (["keys", "update", "key_x", "--project", "p"], {}),
        (["projects", "list"], {"KEYSMITH_ADMIN_KEY": ""}),
        (["projects", "list", "--url", "ftp://example.com"], {}),
        (["admin-keys", "create", "--name", "x", "--organization", "org-1"], {}),
    ]:
        result = cli(server, *arguments, env=env)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stdout == ""
    no_key = cli(server, "projects", "list", env={"KEYSMITH_ADMIN_KEY": ""})
    assert "KEYSMITH_ADMIN_KEY" in no_key.stderr

    # 3: nothing listens there; the message names the URL tried.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = cli(server, "projects", "list", env={"KEYSMITH_URL": f"http://127.0.0.1:{port}"})
    assert down.returncode == 3
    assert down.stderr.strip().startswith(f"keysmith: error: cannot connect to Keysmith at http://127.0.0.1:{port}")

    assert cli(server, "projects", "list", "--help").returncode == 0


def test_url_and_admin_key_from_the_openai_variables_and_flags(server):
    openai_env = {"KEYSMITH_URL": "", "KEYSMITH_ADMIN_KEY": "", "OPENAI_BASE_URL": server.base_url, "OPENAI_ADMIN_KEY": server.admin_key}
    assert table(ok(cli(server, "projects", "list", env=openai_env)))[0] == ["ID", "NAME", "STATUS", "CREATED"]
    # Flags win over the environment.
    flagged = cli(
        server, "projects", "list", "--url", server.base_url.removesuffix("/v1"), "--admin-key", server.admin_key,
        env={"KEYSMITH_URL": "http://127.0.0.1:1", "KEYSMITH_ADMIN_KEY": "sk-admin-wrong"},
    )
    ok(flagged)


def test_the_first_start_names_a_command_that_works(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(tmp_path, args=["--port", str(port)])
    try:
        notice = server.stdout()
        exports = dict(re.findall(r"export (OPENAI_BASE_URL|OPENAI_ADMIN_KEY)=(\S+)", notice))
        assert exports["OPENAI_BASE_URL"] == f"http://127.0.0.1:{port}/v1"
        command = re.search(r"^\s+(\S*keysmith projects list)$", notice, re.MULTILINE)
        assert command, notice
        result = run_cli(*shlex.split(command.group(1))[1:], env=exports)
        assert table(ok(result))[0] == ["ID", "NAME", "STATUS", "CREATED"]
    finally:
        server.stop()


REMOTE_COMMANDS = [
    ["projects", "list"], ["projects", "create"], ["projects", "show"], ["projects", "rename"], ["projects", "archive"],
    ["keys", "list"], ["keys", "create"], ["keys", "show"], ["keys", "update"], ["keys", "rotate"], ["keys", "delete"],
    ["service-accounts", "list"], ["service-accounts", "create"], ["service-accounts", "show"], ["service-accounts", "update"],
    ["service-accounts", "add-key"], ["service-accounts", "delete"],
    ["project-users", "list"], ["project-users", "add"], ["project-users", "remove"],
    ["users", "list"], ["users", "create"], ["users", "show"], ["users", "update"], ["users", "delete"],
    ["invites", "list"], ["invites", "create"], ["invites", "show"], ["invites", "delete"], ["invites", "accept"],
    ["admin-keys", "list"], ["admin-keys", "create"], ["admin-keys", "delete"],
    ["audit-logs", "list"], ["verify"],
]


@pytest.mark.parametrize("command", REMOTE_COMMANDS, ids=" ".join)
def test_every_remote_command_has_help_with_the_connection_options(command):
    result = run_cli(*command, "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    for option in ("--url", "--admin-key", "--json"):
        assert option in result.stdout, (command, result.stdout)
    for line in result.stdout.splitlines():
        if not line.startswith("USAGE:"):
            assert len(line) <= 80, line
