"""Turn an API path into what it names: discovery, or a resource collection/object/subresource."""

from __future__ import annotations

from dataclasses import dataclass

from guardctl.devserver.discovery import Discovery, ResourceType
from guardctl.devserver.errors import path_not_found


@dataclass(frozen=True)
class Target:
    """A resource URL: `/apis/apps/v1/namespaces/dev/deployments/web/scale`."""

    rtype: ResourceType
    namespace: str | None  # None: no namespace in the URL (cluster-scoped or all namespaces)
    name: str | None = None
    subresource: str | None = None


@dataclass(frozen=True)
class DiscoveryPath:
    """`/api`, `/apis`, `/apis/GROUP` or `/api[s]/GROUP/VERSION`; None means "not given"."""

    root: str  # "api" or "apis"
    group: str | None = None
    version: str | None = None


def _split_namespace(discovery: Discovery, group: str, version: str,
                     rest: list[str]) -> tuple[str | None, list[str]]:
    """`namespaces/NS/pods/...` names a namespaced resource; `namespaces/NS[/status]` the
    namespace itself."""
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = discovery.lookup(group, version, rest[2])
        if inner is not None and inner.namespaced:
            return rest[1], rest[2:]
    return None, rest


def route(discovery: Discovery, path: str) -> Target | DiscoveryPath:
    """Resolve `path`; unknown paths raise a 404 ApiError."""
    parts = [part for part in path.split("/") if part]
    if not parts or parts[0] not in ("api", "apis"):
        raise path_not_found()
    root, parts = parts[0], parts[1:]
    if root == "api":
        group, version_and_rest = "", parts
    else:
        if len(parts) < 2:
            return DiscoveryPath(root, parts[0] if parts else None)
        group, version_and_rest = parts[0], parts[1:]
    if not version_and_rest:
        return DiscoveryPath(root)
    version, rest = version_and_rest[0], version_and_rest[1:]
    if not rest:
        return DiscoveryPath(root, group, version)
    namespace, rest = _split_namespace(discovery, group, version, rest)
    rtype = discovery.lookup(group, version, rest[0])
    if rtype is None or len(rest) > 3:
        raise path_not_found()
    name = rest[1] if len(rest) > 1 else None
    if rtype.namespaced and name is not None and namespace is None:
        raise path_not_found()  # a namespaced object needs its namespace in the URL
    return Target(rtype, namespace, name, rest[2] if len(rest) > 2 else None)
