"""Just enough OpenAPI v3 for kubectl to validate on the server instead of on the client.

kubectl's default `--validate=strict` looks in `/openapi/v3/<group-version>` for a PATCH
operation of the object's kind that accepts the `fieldValidation` query parameter; when it
finds one it sends `fieldValidation=Strict` and skips client-side schema validation, which
would otherwise need full schemas ("failed to download openapi"). So each document lists,
for every patchable resource, that one operation and no schemas. `kubectl explain` finds
no schema and says so.
"""

from __future__ import annotations

from typing import Any

from guardctl.devserver.discovery import Discovery


def _prefix(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(discovery: Discovery) -> dict[str, Any]:
    """`/openapi/v3`: where each group version's document is."""
    return {"paths": {
        _prefix(g, v): {"serverRelativeURL": f"/openapi/v3/{_prefix(g, v)}?hash=guardctl"}
        for g, v in discovery.group_versions()
    }}


def document(discovery: Discovery, group: str, version: str) -> dict[str, Any] | None:
    """`/openapi/v3/api/v1` or `/openapi/v3/apis/GROUP/VERSION`, or None if unknown."""
    if (group, version) not in discovery.group_versions():
        return None
    paths: dict[str, Any] = {}
    for rtype in discovery.types(group, version):
        if "patch" not in rtype.verbs:
            continue
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        paths[f"/{_prefix(group, version)}{scope}/{rtype.name}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                "kind": rtype.kind},
            "parameters": [{"name": "fieldValidation", "in": "query",
                            "schema": {"type": "string"}}],
        }}
    return {"openapi": "3.0.0",
            "info": {"title": "guardctl devserver", "version": version},
            "paths": paths, "components": {"schemas": {}}}
