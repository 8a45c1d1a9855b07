"""`meta.k8s.io/v1 Table` responses, the server-side printing `kubectl get` asks for.

Column layouts are data (tables.yaml); the few cells that need logic (READY 1/1, PORT(S),
AGE...) are named functions in the CELLS registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

Object = Mapping[str, Any]
Cell = Callable[[Object, float], Any]

NONE = "<none>"


def human_duration(seconds: float) -> str:
    """Age the way kubectl shows it (`45s`, `7m30s`, `5h`, `3d4h`, `400d`, `2y30d`)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _age(obj: Object, now: float) -> str:
    created = _get(obj, "metadata.creationTimestamp")
    if not isinstance(created, str):
        return NONE
    then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return human_duration(now - then.timestamp())


def _pod_ready(obj: Object, _now: float) -> str:
    statuses = _get(obj, "status.containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(_get(obj, 'spec.containers') or [])}"


def _pod_status(obj: Object, _now: float) -> str:
    for status in _get(obj, "status.containerStatuses") or []:
        waiting = _get(status, "state.waiting.reason")
        if waiting:
            return str(waiting)
    return str(_get(obj, "status.reason") or _get(obj, "status.phase") or "Pending")


def _pod_restarts(obj: Object, _now: float) -> int:
    return sum(int(s.get("restartCount", 0)) for s in _get(obj, "status.containerStatuses") or [])


def _replicas_ready(obj: Object, _now: float) -> str:
    return f"{_get(obj, 'status.readyReplicas') or 0}/{_get(obj, 'spec.replicas') or 0}"


def _template_field(field: str) -> Cell:
    def cell(obj: Object, _now: float) -> str:
        containers = _get(obj, "spec.template.spec.containers") or []
        return ",".join(str(c.get(field, "")) for c in containers) or NONE
    return cell


def _pairs(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or NONE


def _service_ports(obj: Object, _now: float) -> str:
    ports = []
    for port in _get(obj, "spec.ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        ports.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or NONE


def _external_ips(obj: Object, _now: float) -> str:
    ingress = _get(obj, "status.loadBalancer.ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress] + list(
        _get(obj, "spec.externalIPs") or [])
    if ips:
        return ",".join(str(ip) for ip in ips)
    return "<pending>" if _get(obj, "spec.type") == "LoadBalancer" else NONE


def _node_status(obj: Object, _now: float) -> str:
    for condition in _get(obj, "status.conditions") or []:
        if condition.get("type") == "Ready":
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "Unknown"


def _node_roles(obj: Object, _now: float) -> str:
    prefix = "node-role.kubernetes.io/"
    labels = _get(obj, "metadata.labels") or {}
    return ",".join(sorted(k[len(prefix):] for k in labels if k.startswith(prefix))) or NONE


def _node_internal_ip(obj: Object, _now: float) -> str:
    for address in _get(obj, "status.addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return NONE


CELLS: dict[str, Cell] = {
    "name": lambda obj, _now: str(_get(obj, "metadata.name")),
    "age": _age,
    "none": lambda _obj, _now: NONE,
    "pod_ready": _pod_ready,
    "pod_status": _pod_status,
    "pod_restarts": _pod_restarts,
    "replicas_ready": _replicas_ready,
    "template_containers": _template_field("name"),
    "template_images": _template_field("image"),
    "label_selector": lambda obj, _now: _pairs(_get(obj, "spec.selector.matchLabels")),
    "service_selector": lambda obj, _now: _pairs(_get(obj, "spec.selector")),
    "service_ports": _service_ports,
    "external_ips": _external_ips,
    "data_count": lambda obj, _now: len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
    "secret_count": lambda obj, _now: len(obj.get("secrets") or []),
    "node_status": _node_status,
    "node_roles": _node_roles,
    "node_internal_ip": _node_internal_ip,
}


@lru_cache(maxsize=1)
def layouts() -> dict[str, list[dict[str, Any]]]:
    """tables.yaml, checked once: every column names a known cell function or a path."""
    text = resources.files("guardctl.devserver").joinpath("tables.yaml").read_text()
    data: dict[str, list[dict[str, Any]]] = yaml.safe_load(text)
    for key, columns in data.items():
        for column in columns:
            if column.get("value") not in CELLS and "path" not in column:
                raise ValueError(f"tables.yaml {key}: column {column.get('name')} has no cell")
    return data


def _cell(column: Mapping[str, Any], obj: Object, now: float) -> Any:
    if "value" in column:
        return CELLS[column["value"]](obj, now)
    value = _get(obj, column["path"])
    return column.get("default", NONE) if value is None else value


def _row_object(obj: Object, include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(group: str, resource: str, objects: Sequence[Object], resource_version: str,
          now: float, include_object: str = "Metadata") -> dict[str, Any]:
    """A `Table` of `objects`; `include_object` is the request's `includeObject` policy."""
    all_layouts = layouts()
    columns = all_layouts.get(f"{group}/{resource}", all_layouts["default"])
    definitions = [
        {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
         "description": c.get("description", c["name"]), "priority": c.get("priority", 0)}
        for c in columns
    ]
    rows = [{"cells": [_cell(c, obj, now) for c in columns],
             "object": _row_object(obj, include_object)} for obj in objects]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
