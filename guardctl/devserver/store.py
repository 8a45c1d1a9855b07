"""A thread-safe in-memory object store with the bookkeeping the API server does on writes.

Objects are kept per (group, resource, namespace, name) across versions, like etcd keys.
Every write sets `resourceVersion` from one counter; create sets `uid`,
`creationTimestamp` and `generation`; an update that changes more than metadata/status
bumps `generation`. A stale `resourceVersion` in an update is a 409 Conflict.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from guardctl.devserver.discovery import ResourceType
from guardctl.devserver.errors import (
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)

Key = tuple[str, str, str, str]  # group, resource, namespace ("" if cluster-scoped), name
Object = dict[str, Any]
Clock = Callable[[], float]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# RBAC objects only need to be a valid path segment ("system:controller:foo" is fine).
_PATH_SEGMENT = re.compile(r"^[^/%]+$")
_GENERATED_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the API server's alphabet


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC with second precision, the form `metav1.Time` serializes to."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name_problem(rtype: ResourceType, name: str) -> str | None:
    if rtype.group == "rbac.authorization.k8s.io":
        ok = bool(_PATH_SEGMENT.match(name)) and name not in (".", "..")
        return None if ok else "may not contain '/' or '%'"
    if rtype.name == "namespaces":
        ok = len(name) <= 63 and bool(_DNS_LABEL.match(name))
        return None if ok else "a lowercase RFC 1123 label must consist of lower case " \
            "alphanumeric characters or '-'"
    if len(name) <= 253 and _DNS_SUBDOMAIN.match(name):
        return None
    return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric " \
        "characters, '-' or '.'"


def _spec_changed(old: Object, new: Object) -> bool:
    ignored = ("metadata", "status")
    return {k: v for k, v in old.items() if k not in ignored} != {
        k: v for k, v in new.items() if k not in ignored
    }


def _fold_string_data(obj: Object) -> None:
    """Secrets: `stringData` is write-only; the API server folds it into base64 `data`."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


class Store:
    """Every object the devserver holds. All public methods are atomic under one lock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._objects: dict[Key, Object] = {}
        self._version = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reads

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Object:
        with self._lock:
            return self._output(rtype, self._existing(rtype, namespace, name))

    def list(self, rtype: ResourceType, namespace: str | None,
             predicate: Callable[[Object], bool]) -> tuple[list[Object], str]:
        """Objects of `rtype` (in `namespace`, or all when None) matching, and the list RV."""
        with self._lock:
            items = [self._output(rtype, obj) for key, obj in sorted(self._objects.items())
                     if key[:2] == (rtype.group, rtype.name)
                     and (namespace is None or key[2] == namespace) and predicate(obj)]
            return items, str(self._version)

    # ------------------------------------------------------------------ writes

    def create(self, rtype: ResourceType, namespace: str, obj: Object,
               dry_run: bool = False, created_at: float | None = None) -> Object:
        """Create (POST); `created_at` backdates `creationTimestamp` (seeding only: the
        API server ignores a client's value)."""
        with self._lock:
            return self._create(rtype, namespace, copy.deepcopy(obj), dry_run, created_at)

    def update(self, rtype: ResourceType, namespace: str, name: str, obj: Object,
               dry_run: bool = False) -> Object:
        """Replace an object (PUT); a `resourceVersion` in `obj` must match the stored one."""
        with self._lock:
            return self._update(rtype, namespace, name, copy.deepcopy(obj), dry_run)

    def modify(self, rtype: ResourceType, namespace: str, name: str,
               change: Callable[[Object | None], Object], dry_run: bool = False) -> Object:
        """Read-modify-write (PATCH). `change` gets None when the object does not exist
        (server-side apply creates); it raises to refuse."""
        with self._lock:
            current = self._objects.get(self._key(rtype, namespace, name))
            new = change(copy.deepcopy(current) if current is not None else None)
            if current is None:
                new.setdefault("metadata", {})["name"] = name
                return self._create(rtype, namespace, new, dry_run)
            new.setdefault("metadata", {}).pop("resourceVersion", None)
            return self._update(rtype, namespace, name, new, dry_run)

    def delete(self, rtype: ResourceType, namespace: str, name: str,
               dry_run: bool = False) -> Object:
        """Delete and return the object; deleting a namespace deletes everything in it."""
        with self._lock:
            key = self._key(rtype, namespace, name)
            obj = self._existing(rtype, namespace, name)
            if not dry_run:
                del self._objects[key]
                if (rtype.group, rtype.name) == ("", "namespaces"):
                    for inner in [k for k in self._objects if k[2] == name]:
                        del self._objects[inner]
                self._version += 1
            return self._output(rtype, obj)

    # ------------------------------------------------------------------ helpers

    def _key(self, rtype: ResourceType, namespace: str, name: str) -> Key:
        return (rtype.group, rtype.name, namespace if rtype.namespaced else "", name)

    def _existing(self, rtype: ResourceType, namespace: str, name: str) -> Object:
        obj = self._objects.get(self._key(rtype, namespace, name))
        if obj is None:
            raise not_found(rtype.name, rtype.group, name)
        return obj

    def _output(self, rtype: ResourceType, obj: Object) -> Object:
        out = copy.deepcopy(obj)
        # Stored once per group; report it in the version that was asked for.
        out["apiVersion"] = rtype.api_version
        return out

    def _require_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if not rtype.namespaced:
            return
        if not namespace:
            raise bad_request("the namespace of the object is required")
        if ("", "namespaces", "", namespace) not in self._objects:
            raise not_found("namespaces", "", namespace)

    def _checked_name(self, rtype: ResourceType, obj: Object) -> str:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(secrets.choice(_GENERATED_SUFFIX_CHARS) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(rtype.kind, rtype.group, "", "metadata.name",
                          "Required value: name or generateName is required")
        problem = _name_problem(rtype, name)
        if problem:
            raise invalid(rtype.kind, rtype.group, name, "metadata.name",
                          f'Invalid value: "{name}": {problem}')
        return name

    def _prepare(self, rtype: ResourceType, namespace: str, obj: Object) -> Object:
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        body_ns = meta.get("namespace")
        if rtype.namespaced:
            if body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if rtype.kind == "Secret":
            _fold_string_data(obj)
        if rtype.kind == "Namespace":
            obj.setdefault("status", {"phase": "Active"})
        return obj

    def _create(self, rtype: ResourceType, namespace: str, obj: Object, dry_run: bool,
                created_at: float | None = None) -> Object:
        obj = self._prepare(rtype, namespace, obj)
        name = self._checked_name(rtype, obj)
        self._require_namespace(rtype, namespace)
        key = self._key(rtype, namespace, name)
        if key in self._objects:
            raise already_exists(rtype.name, rtype.group, name)
        meta = obj["metadata"]
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp(self._clock() if created_at is None else created_at)
        meta["generation"] = 1
        return self._store(rtype, key, obj, dry_run)

    def _update(self, rtype: ResourceType, namespace: str, name: str, obj: Object,
                dry_run: bool) -> Object:
        old = self._existing(rtype, namespace, name)
        obj = self._prepare(rtype, namespace, obj)
        meta = obj["metadata"]
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the "
                              f"name on the URL ({name})")
        wanted = meta.get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(rtype.name, rtype.group, name)
        meta["name"] = name
        for field in ("uid", "creationTimestamp"):
            meta[field] = old["metadata"][field]
        meta["generation"] = old["metadata"].get("generation", 1) + (
            1 if _spec_changed(old, obj) else 0
        )
        return self._store(rtype, self._key(rtype, namespace, name), obj, dry_run)

    def _store(self, rtype: ResourceType, key: Key, obj: Object, dry_run: bool) -> Object:
        if not dry_run:
            self._version += 1
            obj["metadata"]["resourceVersion"] = str(self._version)
            self._objects[key] = obj
        return self._output(rtype, obj)
