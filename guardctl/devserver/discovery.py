"""The API's shape, from the real discovery documents in `guardctl/data`.

The same file feeds guardctl's resource table, so kubectl sees exactly the resources that
guardctl's rules reason about. The first group version listed for a group is its
preferred version (the file lists `autoscaling/v2` before `autoscaling/v1`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

# Reported by /version; kubectl only compares major/minor for its skew warning.
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-guardctl-dev",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    """One top-level resource of one group version (`apps/v1 deployments`)."""

    group: str
    version: str
    name: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def load_documents() -> list[dict[str, Any]]:
    """The `APIResourceList` documents shipped in `guardctl.data`."""
    text = resources.files("guardctl.data").joinpath("kubernetes-discovery.json").read_text()
    documents: list[dict[str, Any]] = json.loads(text)
    return documents


def _split_group_version(group_version: str) -> tuple[str, str]:
    group, _, version = group_version.rpartition("/")
    return group, version


class Discovery:
    """Answers discovery requests and resolves URL segments to resource types."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._documents = {doc["groupVersion"]: doc for doc in documents}
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        # group -> its versions, preferred first
        self._versions: dict[str, list[str]] = {}
        for doc in documents:
            group, version = _split_group_version(doc["groupVersion"])
            self._versions.setdefault(group, []).append(version)
            for res in doc["resources"]:
                if "/" not in res["name"]:  # subresources are served by name in the router
                    self._types[(group, version, res["name"])] = ResourceType(
                        group, version, res["name"], res["kind"], bool(res["namespaced"]),
                        frozenset(res["verbs"]),
                    )

    def group_versions(self) -> list[tuple[str, str]]:
        return [(group, version) for group, versions in self._versions.items()
                for version in versions]

    def types(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types.values() if (t.group, t.version) == (group, version)]

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        return self._types.get((group, version, resource))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The resource type that stores objects of `kind` in `api_version` (for seeding)."""
        group, version = _split_group_version(api_version)
        for rtype in self._types.values():
            if (rtype.group, rtype.version, rtype.kind) == (group, version, kind):
                return rtype
        return None

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """`/api/v1` or `/apis/GROUP/VERSION`: the `APIResourceList`, or None if unknown."""
        return self._documents.get(f"{group}/{version}" if group else version)

    def core_versions(self, server_address: str) -> dict[str, Any]:
        """`/api`: the legacy core group's `APIVersions`."""
        return {
            "kind": "APIVersions",
            "versions": self._versions.get("", []),
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def group(self, group: str) -> dict[str, Any] | None:
        """`/apis/GROUP`: one `APIGroup`, or None if unknown."""
        versions = self._versions.get(group)
        if not group or not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def group_list(self) -> dict[str, Any]:
        """`/apis`: every named group as an `APIGroupList`.

        Served as plain JSON even when kubectl asks for aggregated discovery
        (`as=APIGroupDiscoveryList`): client-go then falls back to per-group-version requests.
        """
        groups = [self.group(name) for name in self._versions if name]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
