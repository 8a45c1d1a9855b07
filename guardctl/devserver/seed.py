"""Fill a Store with the starting cluster described in seed.yaml."""

from __future__ import annotations

import copy
from importlib import resources
from string import Template
from typing import Any

import yaml

from guardctl.devserver.discovery import Discovery
from guardctl.devserver.store import Store

# pod (namespace, name) -> container -> log lines
Logs = dict[tuple[str, str], dict[str, list[str]]]

# Seeded objects look a day old, so AGE columns read like a live cluster's.
SEED_AGE_SECONDS = 26 * 3600


def load_seed() -> dict[str, Any]:
    text = resources.files("guardctl.devserver").joinpath("seed.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _substitute(node: Any, values: dict[str, str]) -> Any:
    """Replace ${name} in every string of a YAML tree (unknown names are left alone)."""
    if isinstance(node, str):
        return Template(node).safe_substitute(values)
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    return node


def _objects_and_logs(data: dict[str, Any]) -> tuple[list[dict[str, Any]], Logs]:
    objects: list[dict[str, Any]] = []
    for name in data["namespaces"]:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": name}})
    objects.extend(copy.deepcopy(data["objects"]))
    logs: Logs = {}
    template = data["per_namespace"]
    for namespace, extra in template["in"].items():
        values = {"ns": namespace, **{k: str(v) for k, v in extra.items()}}
        objects.extend(_substitute(template["objects"], values))
        for pod, containers in _substitute(template["logs"], values).items():
            logs[(namespace, pod)] = containers
    return objects, logs


def seed(store: Store, discovery: Discovery, now: float) -> Logs:
    """Create every seed object in `store`; return the pods' log lines."""
    objects, logs = _objects_and_logs(load_seed())
    for obj in objects:
        rtype = discovery.by_kind(obj["apiVersion"], obj["kind"])
        if rtype is None:
            raise ValueError(f"seed.yaml: unknown kind {obj['apiVersion']} {obj['kind']}")
        store.create(rtype, obj["metadata"].get("namespace", ""), obj,
                     created_at=now - SEED_AGE_SECONDS)
    return logs
