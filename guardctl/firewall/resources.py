"""The Kubernetes resource table: resolve a resource word the way kubectl does.

The table (`data/resources.json`, built by `scripts/gen_resources.py` from the discovery
documents guardctl ships) lists every resource once per API group, in the API server's
order: core first. kubectl prefers the first group that knows a name, so `events` and
`ev` are the core Event, not events.k8s.io; the table's order is that preference.

    >>> lookup("deploy").qualified
    'deployments.apps'
    >>> lookup("Namespace").resource
    'namespaces'
"""

import json
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import NamedTuple

from guardctl.bundled import data_text
from guardctl.model import ResourceRef


class ResourceInfo(NamedTuple):
    """One API resource of one group, with every name kubectl accepts for it."""

    resource: str  # plural, e.g. "deployments"
    singular: str  # "" for the few resources discovery gives none (metrics.k8s.io)
    short_names: tuple[str, ...]
    kind: str
    group: str  # "" for the core group
    version: str  # the preferred version
    versions: tuple[str, ...]
    namespaced: bool
    subresources: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """`resource.group` (`deployments.apps`), or the bare plural for the core group."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def api_version(self) -> str:
        """The preferred `group/version` (`apps/v1`), or `v1` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def ref(self, name: str | None = None, subresource: str | None = None) -> ResourceRef:
        return ResourceRef(
            resource=self.resource,
            group=self.group,
            kind=self.kind,
            namespaced=self.namespaced,
            name=name,
            subresource=subresource,
        )


class _Table(NamedTuple):
    resources: tuple[ResourceInfo, ...]
    categories: dict[str, tuple[ResourceInfo, ...]]


def _info(entry: dict[str, object]) -> ResourceInfo:
    def words(key: str) -> tuple[str, ...]:
        value = entry[key]
        assert isinstance(value, list)
        return tuple(str(v) for v in value)

    return ResourceInfo(
        resource=str(entry["plural"]),
        singular=str(entry["singular"]),
        short_names=words("short"),
        kind=str(entry["kind"]),
        group=str(entry["group"]),
        version=str(entry["version"]),
        versions=words("versions"),
        namespaced=bool(entry["namespaced"]),
        subresources=words("subresources"),
    )


@cache
def _table() -> _Table:
    text = data_text("resources.json")
    data = json.loads(text)
    infos = tuple(_info(entry) for entry in data["resources"])
    by_qualified = {info.qualified: info for info in infos}
    categories = {
        name: tuple(by_qualified[q] for q in members)
        for name, members in data["categories"].items()
    }
    return _Table(infos, categories)


def all_resources() -> tuple[ResourceInfo, ...]:
    """Every resource of the table, in kubectl's order of preference."""
    return _table().resources


def _candidates(group: str | None, version: str | None) -> Iterator[ResourceInfo]:
    for info in _table().resources:
        if group is not None and info.group != group:
            continue
        if version is not None and version not in info.versions:
            continue
        yield info


def _find(word: str, group: str | None, version: str | None) -> ResourceInfo | None:
    """First match by full name, then by short name, then by Kind (kubectl's order)."""
    tests = (
        lambda i: word in (i.resource, i.singular),
        lambda i: word in i.short_names,
        lambda i: word == i.kind.lower(),
    )
    for test in tests:
        for info in _candidates(group, version):
            if test(info):
                return info
    return None


@lru_cache(maxsize=4096)
def lookup(word: str) -> ResourceInfo | None:
    """Resolve a resource word as kubectl does; None when the table does not know it.

    Accepts the plural, singular, short names and Kind (case-insensitive), and the
    qualified forms `resource.group` (`deployments.apps`) and `resource.version.group`
    (`deployment.v1.apps`; `pods.v1.` for the core group).
    """
    word = word.lower()
    if not word or "/" in word or "," in word:
        return None
    if word.count(".") >= 2:
        # kubectl first reads three or more parts as resource.version.group ...
        resource, version, group = word.split(".", 2)
        found = _find(resource, group, version)
        if found is not None:
            return found
    # ... and then as resource.group, the group being everything after the first dot
    resource, dot, group = word.partition(".")
    return _find(resource, group if dot else None, None)


@lru_cache(maxsize=4096)
def by_kind(kind: str, api_version: str = "") -> ResourceInfo | None:
    """The resource of a manifest object's `kind` (exact, as the API server requires).

    With `api_version` (`apps/v1`, `v1`) only that group and version count, so an
    object of a version the server does not serve resolves to None.
    """
    group: str | None = None
    version: str | None = None
    if api_version:
        group, _, version = api_version.rpartition("/")
    for info in _candidates(group, version):
        if info.kind == kind:
            return info
    return None


def by_plural(resource: str, group: str, version: str | None = None) -> ResourceInfo | None:
    """The resource an API path names (`/apis/GROUP/VERSION/RESOURCE`)."""
    for info in _candidates(group, version):
        if info.resource == resource:
            return info
    return None


def category(name: str) -> tuple[ResourceInfo, ...] | None:
    """The resources of a category (`all`, as in `kubectl get all`); None if not one."""
    return _table().categories.get(name.lower())
