"""Writes openai-response-schemas.yaml: the official spec's schemas for the admin API responses Keysmith serves,
with every schema they reference, so that the suites can check responses against OpenAI's own definitions on a
machine that has only this repository.

    python3 tests/e2e/extract_official_schemas.py path/to/openai-admin-subset.yaml (or openai's openapi.yaml)
"""

import sys
from pathlib import Path

import yaml

ROOTS = [
    "Project", "ProjectListResponse", "ProjectApiKey", "ProjectApiKeyListResponse", "ProjectApiKeyDeleteResponse",
    "ProjectServiceAccount", "ProjectServiceAccountListResponse", "ProjectServiceAccountCreateResponse",
    "ProjectServiceAccountDeleteResponse", "ProjectUser", "ProjectUserListResponse", "ProjectUserDeleteResponse",
    "User", "UserListResponse", "UserDeleteResponse", "Invite", "InviteListResponse", "InviteDeleteResponse",
    "AuditLog", "ListAuditLogsResponse", "AdminApiKey", "ApiKeyList", "ProjectModelPermissions",
    "ProjectModelPermissionsDeleteResponse", "ProjectRateLimit", "ProjectRateLimitListResponse",
]  # fmt: skip


def references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                yield value.rsplit("/", 1)[1]
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def without_metadata(node):
    if isinstance(node, dict):
        return {key: without_metadata(value) for key, value in node.items() if key != "x-oaiMeta"}
    if isinstance(node, list):
        return [without_metadata(value) for value in node]
    return node


def main():
    source = yaml.safe_load(Path(sys.argv[1]).read_text())
    schemas = source["components"]["schemas"]
    needed, pending = set(), list(ROOTS)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(references(schemas[name]))
    document = {
        "info": {
            "title": "OpenAI's schemas for the admin API responses Keysmith serves",
            "description": "Written by tests/e2e/extract_official_schemas.py from the official spec; do not edit by hand.",
            "license": source["info"].get("license"),
            "x-source": source["info"].get("x-source"),
        },
        "components": {"schemas": {name: without_metadata(schemas[name]) for name in sorted(needed)}},
    }
    output = Path(__file__).with_name("openai-response-schemas.yaml")
    output.write_text(yaml.safe_dump(document, sort_keys=False, width=120))
    print(f"wrote {len(needed)} schemas to {output}")


if __name__ == "__main__":
    main()
